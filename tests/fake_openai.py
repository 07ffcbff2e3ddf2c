"""An OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks, with injectable faults.

Question requests ("Write N different questions ...") get N distinct questions built from the
clause and the seed; judge requests (asking for [[A]]/[[B]]/[[C]]) get the verdict `judge`
chooses. `faults` maps a 1-based request number to 429 (with Retry-After), 500, 400, 401, 403,
404, timeout, nonjson or refusal; every other request succeeds after `latency` seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ("river apple justice lantern orbit meadow citizen harbour ledger violin canyon census ballot tidal "
         "granite orchard compass festival archive beacon pilgrim quarry saddle thimble velvet walnut zephyr "
         "anchor bakery cobalt dynamo ember falcon glacier hazel igloo jasmine kettle lagoon mosaic nectar "
         "oyster parcel quiver rafter sequoia tundra umbra vessel willow yonder").split()


class FakeOpenAI:
    """Start with `with FakeOpenAI(...) as server:`; `server.url` is the base URL (…/v1)."""

    def __init__(self, latency: float = 0.0, faults: dict[int, str] | None = None, judge: str = "first",
                 near_duplicates: bool = True):
        self.latency, self.faults, self.judge, self.near_duplicates = latency, faults or {}, judge, near_duplicates
        self.count = 0
        self.auth_headers: set[str] = set()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
            disable_nagle_algorithm = True  # headers and body go out at once (no delayed-ACK stalls)
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.count += 1
                    n = fake.count
                    fake.auth_headers.add(self.headers.get("Authorization", ""))
                fault = fake.faults.get(n)
                time.sleep(fake.latency)
                if fault == "429":
                    return self._send(429, {"error": {"message": "rate limited"}}, {"retry-after-ms": "20"})
                if fault == "500":
                    return self._send(500, {"error": {"message": "boom"}})
                if fault in ("400", "401", "403", "404"):
                    return self._send(int(fault), {"error": {"message": f"injected {fault}: Incorrect API key "
                                                             "provided" if fault == "401" else f"injected {fault}"}})
                if fault == "timeout":
                    time.sleep(3)
                    return self._send(200, fake.completion(body, "too late"))
                if fault == "nonjson":
                    return self._send(200, fake.completion(body, "Sorry, here is some prose without any list."))
                if fault == "refusal":
                    return self._send(200, fake.completion(body, None, refusal="I can't help with that."))
                return self._send(200, fake.completion(body, fake.reply(body)))

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def reply(self, body: dict) -> str:
        text = body["messages"][-1]["content"]
        m = re.search(r"Write (\d+) different questions", text)
        if m:
            return json.dumps({"questions": self.questions(text, int(m.group(1)), body.get("seed", 0))})
        verdict = {"first": "A", "second": "B", "tie": "C"}[self.judge]
        return f"Both answers were read carefully. [[{verdict}]]"

    def questions(self, prompt: str, n: int, seed: int) -> list[str]:
        principle = prompt.split("\n")[0]
        out = []
        for i in range(n):
            h = hashlib.sha256(f"{principle}|{seed}|{i}".encode()).digest()
            out.append("Why would " + " ".join(WORDS[b % len(WORDS)] for b in h[:7]) + " matter?")
        if self.near_duplicates and n > 2:
            out[-1] = out[0].replace("Why would", "Why should")  # a paraphrase: must be removed and topped up
        return out

    @staticmethod
    def completion(body: dict, content: str | None, refusal: str | None = None) -> dict:
        return {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content, "refusal": refusal}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}}
