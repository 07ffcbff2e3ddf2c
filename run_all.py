"""Run notebooks 01 → 07 end to end with papermill: `python run_all.py [--profile demo|ci|real]`."""

from dlm.pipeline.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
