"""`python -m dlm <step>`."""

from dlm.cli import main

raise SystemExit(main())
