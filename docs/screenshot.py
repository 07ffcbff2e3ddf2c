"""Make the README's picture of a report's first screen: `python docs/screenshot.py artifacts/runs/<run-id>`.

Rebuilds the run's report.html with the current `dlm.pipeline.report`, then takes a 1280×900 screenshot with
headless Chromium (`apt-get install chromium`) into docs/report.png (or --output).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Rebuild the run's report and screenshot its first screen."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder written by run_all.py (with manifest.json)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "report.png", help="PNG to write")
    parser.add_argument("--window-size", default="1280,900", help="width,height in pixels")
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("error: chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    if not (args.run_dir / "manifest.json").is_file():
        print(f"error: {args.run_dir} has no manifest.json: pass a run folder under artifacts/runs/", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from dlm.pipeline.report import build_report

    report = build_report(args.run_dir).resolve()
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={args.output.resolve()}", f"--window-size={args.window_size}", report.as_uri()],
                   check=True, capture_output=True, timeout=120)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
