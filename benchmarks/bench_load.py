"""Loading the paper-scale sample (survey, conversations, utterances; validated). Target: <= 3 s, <= 1.5 GB."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measure, paper_sample  # noqa: E402

CODE = """
import json, time
t = time.perf_counter()
from dlm.data.prism import load_prism
d = load_prism({path!r})
print(json.dumps({{"seconds": round(time.perf_counter() - t, 3), "rows": [len(d.survey), len(d.conversations), len(d.utterances)]}}))
"""


def main() -> dict:
    result = measure(CODE.format(path=str(paper_sample())))  # fresh process: peak RSS is the loader's alone
    result.update(target_seconds=3.0, target_rss_mb=1536)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
