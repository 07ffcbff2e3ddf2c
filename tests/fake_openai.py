"""An OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks, with injectable faults.

Question requests ("Write N different questions ...") get N distinct questions built from the
clause and the seed; judge requests (asking for [[A]]/[[B]]/[[C]]) get the verdict `judge`
chooses, or the answer among `good_answers` when one of the two is (a judge that knows the calibration
set), and listwise requests (asking for {"ranking": [...]}) the labels in display order ("first"),
reversed ("second") or all tied ("tie"). `faults` maps a 1-based request number to 429 (with
Retry-After), 500, 400, 401, 403, 404, timeout, nonjson, refusal, html200 (a proxy's HTML page with
status 200), badjson (a torn JSON body) or partial (a ranking that leaves out a label); every other
request succeeds after `latency` seconds. `shared_question` makes every clause's first question the
same text (a cross-clause duplicate). Requests' query strings are recorded in `queries`, chat
requests per model in `models`; routes ignore the query string.

The Batch API: `POST /v1/files` (multipart upload), `POST /v1/batches`, `GET /v1/batches/ID` and
`GET /v1/files/ID/content`. A batch stays `in_progress` while `hold_batches` is set; otherwise the
first status check processes every line as the chat endpoint would (`batch_faults` maps a 1-based
line number, counted over all batches, to 500, nonjson or refusal) and completes it, with an output
file and, for failed lines, an error file. `batches` lists every batch created.
"""

from __future__ import annotations

import email.parser
import email.policy
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
                 near_duplicates: bool = True, hold_batches: bool = False, batch_faults: dict[int, str] | None = None,
                 good_answers: set[str] | None = None, shared_question: bool = False):
        # Requests wait while `gate` is cleared (`server.gate.clear()`), so a test can hold a run in flight.
        self.gate = threading.Event()
        self.gate.set()
        self.latency, self.faults, self.judge, self.near_duplicates = latency, faults or {}, judge, near_duplicates
        self.good_answers, self.shared_question = good_answers or set(), shared_question
        self.queries: list[str] = []
        self.models: dict[str, int] = {}
        self.hold_batches, self.batch_faults = hold_batches, batch_faults or {}
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_lines = 0
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

            def route(self) -> str:
                path, _, query = self.path.partition("?")
                if query:
                    fake.queries.append(query)
                return path

            def do_GET(self):
                with fake.lock:
                    fake.auth_headers.add(self.headers.get("Authorization", ""))
                    path = self.route()
                    m = re.fullmatch(r"/v1/files/([^/]+)/content", path)
                    if m and m.group(1) in fake.files:
                        return self._send_bytes(200, fake.files[m.group(1)], "application/octet-stream")
                    m = re.fullmatch(r"/v1/batches/([^/?]+)", path)
                    if m and m.group(1) in fake.batches:
                        return self._send(200, fake.batch_status(m.group(1)))
                return self._send(404, {"error": {"message": f"no such object: {self.path}"}})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                with fake.lock:
                    path = self.route()
                if path.endswith("/files"):
                    with fake.lock:
                        return self._send(200, fake.upload(self.headers["Content-Type"], raw))
                if path.endswith("/batches"):
                    with fake.lock:
                        return self._send(200, fake.create_batch(json.loads(raw)))
                body = json.loads(raw)
                with fake.lock:
                    fake.count += 1
                    n = fake.count
                    fake.auth_headers.add(self.headers.get("Authorization", ""))
                    fake.models[body["model"]] = fake.models.get(body["model"], 0) + 1
                fault = fake.faults.get(n)
                fake.gate.wait()
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
                if fault == "html200":
                    return self._send_bytes(200, b"<html><body>502 Bad Gateway (proxy)</body></html>", "text/html")
                if fault == "badjson":
                    return self._send_bytes(200, json.dumps(fake.completion(body, "cut"))[:40].encode(),
                                            "application/json")
                if fault == "partial":
                    return self._send(200, fake.completion(body, json.dumps({"ranking": ["A"]})))
                return self._send(200, fake.completion(body, fake.reply(body)))

            def _send(self, status, payload, headers=None):
                return self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

            def _send_bytes(self, status, data, content_type, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    # ------------------------------------------------------------------ Batch API

    def upload(self, content_type: str, raw: bytes) -> dict:
        """Store a multipart-uploaded file; the file object the API returns."""
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        parts = {part.get_param("name", header="content-disposition"): part for part in msg.iter_parts()}
        data = parts["file"].get_payload(decode=True)
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = data
        return {"id": file_id, "object": "file", "bytes": len(data), "created_at": 0,
                "filename": parts["file"].get_filename(), "purpose": parts["purpose"].get_content().strip(),
                "status": "processed"}

    def create_batch(self, body: dict) -> dict:
        batch_id = f"batch_{len(self.batches) + 1}"
        self.batches[batch_id] = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"],
                                  "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                                  "status": "validating", "created_at": 0, "metadata": body.get("metadata")}
        return self.batches[batch_id]

    def batch_status(self, batch_id: str) -> dict:
        """The batch, processed on the first check after `hold_batches` is cleared."""
        batch = self.batches[batch_id]
        if batch["status"] == "completed":
            return batch
        if self.hold_batches:
            batch["status"] = "in_progress"
            return batch
        outputs, errors = [], []
        for line in self.files[batch["input_file_id"]].decode().splitlines():
            request = json.loads(line)
            self.batch_lines += 1
            fault = self.batch_faults.get(self.batch_lines)
            body = request["body"]
            if fault == "500":
                errors.append({"id": f"req_{self.batch_lines}", "custom_id": request["custom_id"],
                               "response": {"status_code": 500, "body": {"error": {"message": "boom"}}}, "error": None})
                continue
            content = {"nonjson": "Sorry, here is some prose without any list.", "refusal": None}.get(
                fault, self.reply(body))
            refusal = "I can't help with that." if fault == "refusal" else None
            outputs.append({"id": f"req_{self.batch_lines}", "custom_id": request["custom_id"], "error": None,
                            "response": {"status_code": 200, "request_id": f"r{self.batch_lines}",
                                         "body": self.completion(body, content, refusal)}})
        for kind, rows in (("output_file_id", outputs), ("error_file_id", errors)):
            if rows:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[kind] = file_id
        batch.update(status="completed", request_counts={"total": len(outputs) + len(errors),
                                                         "completed": len(outputs), "failed": len(errors)})
        return batch

    def reply(self, body: dict) -> str:
        text = body["messages"][-1]["content"]
        m = re.search(r"Write (\d+) different questions", text)
        if m:
            return json.dumps({"questions": self.questions(text, int(m.group(1)), body.get("seed", 0))})
        if '{"ranking"' in text:
            labels = re.findall(r"\[Answer ([A-Z])\]", text)
            ranking = {"first": labels, "second": labels[::-1], "tie": [labels]}[self.judge]
            return json.dumps({"ranking": ranking})
        verdict = {"first": "A", "second": "B", "tie": "C"}[self.judge]
        answers = re.findall(r"\[Answer ([AB])\]\n(.*?)\n\[End of Answer \1\]", text, re.S)
        verdict = next((letter for letter, answer in answers if answer in self.good_answers), verdict)
        return f"Both answers were read carefully. [[{verdict}]]"

    def questions(self, prompt: str, n: int, seed: int) -> list[str]:
        principle = prompt.split("\n")[0]
        out = []
        for i in range(n):
            h = hashlib.sha256(f"{principle}|{seed}|{i}".encode()).digest()
            out.append("Why would " + " ".join(WORDS[b % len(WORDS)] for b in h[:7]) + " matter?")
        if self.shared_question and n > 1:
            out[0] = "Why would anyone trust a census taken by lottery?"
        if self.near_duplicates and n > 2:
            out[-1] = out[0].replace("Why would", "Why should")  # a paraphrase: must be removed and topped up
        return out

    @staticmethod
    def completion(body: dict, content: str | None, refusal: str | None = None) -> dict:
        return {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content, "refusal": refusal}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}}
