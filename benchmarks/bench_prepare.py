"""Each preference mode on the paper-scale sample (soft: 2000 LEGACY panels). Target: <= 10 s, <= 2 GB each."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measure, paper_sample  # noqa: E402

CODE = """
import json, time
t = time.perf_counter()
from dlm.preferences.build import PrepareOptions, prepare
opts = PrepareOptions(mode={mode!r}, panel_config="configs/panel_config.yaml" if {mode!r} in ("hard", "soft") else None,
                      num_panel_samples=2000)
d = prepare({survey!r}, {utt!r}, {out!r}, opts)
print(json.dumps({{"seconds": round(time.perf_counter() - t, 3), "rows": d.counts["rows"]}}))
"""


def main() -> list[dict]:
    sample = paper_sample()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("full", "us_rep", "hard", "soft"):
            r = measure(CODE.format(mode=mode, survey=str(sample / "survey.jsonl"), utt=str(sample / "utterances.jsonl"),
                                    out=str(Path(tmp) / f"{mode}.jsonl")))
            results.append({"mode": mode, **r, "target_seconds": 10.0, "target_rss_mb": 2048})
            print(json.dumps(results[-1]))
    return results


if __name__ == "__main__":
    main()
