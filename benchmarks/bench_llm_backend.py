"""300 chat requests through the openai backend, 16 in flight, against a local server with 200 ms latency.

Target: within 1.3x of the ideal 300 x 0.2 s / 16 = 3.75 s. Timed in-process; no cache.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_openai import FakeOpenAI  # noqa: E402

from dlm.llm.backends import GenerationParams  # noqa: E402
from dlm.llm.openai_backend import OpenAIBackend  # noqa: E402

N, IN_FLIGHT, LATENCY = 300, 16, float(os.environ.get("BENCH_LATENCY", 0.2))


def serve(queue: mp.Queue) -> None:
    """Run the server in its own process, so that it does not share the client's GIL."""
    with FakeOpenAI(latency=LATENCY) as server:
        queue.put(server.url)
        time.sleep(3600)


def main() -> dict:
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark")
    queue: mp.Queue = mp.Queue()
    proc = mp.Process(target=serve, args=(queue,), daemon=True)
    proc.start()
    try:
        backend = OpenAIBackend(model="bench", base_url=queue.get(timeout=30), max_in_flight=IN_FLIGHT)
        backend.complete_many([[{"role": "user", "content": "warm-up"}]], GenerationParams())  # imports, first connection
        requests = [[{"role": "user", "content": f"request {i}"}] for i in range(N)]
        t0 = time.perf_counter()
        replies = backend.complete_many(requests, GenerationParams())
        seconds = time.perf_counter() - t0
    finally:
        proc.terminate()
    ideal = N * LATENCY / IN_FLIGHT
    result = {"requests": len(replies), "in_flight": IN_FLIGHT, "latency_s": LATENCY, "seconds": round(seconds, 3),
              "ideal_seconds": ideal, "ratio_to_ideal": round(seconds / ideal, 3) if ideal else None, "target_ratio": 1.3}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
