"""The OpenAI Batch API as a backend: the same requests, replies, cache and records as the synchronous path.

`--openai-batch` (`dlm evaluate`, `dlm questions`; `openai_batch` in notebooks 05 and 06) sends
the requests a synchronous run would send as one JSONL file (`/v1/files`, purpose `batch`),
creates a batch (`/v1/batches`, `/v1/chat/completions`, 24 h window, half the token price),
polls it, downloads its output (and error) file and turns each line into the reply the
synchronous request would have given. Cache keys, accepted values, retries of malformed or
refused replies (as a new, smaller batch) and therefore the records written are those of the
synchronous path: a judgment or question file does not depend on which path made it.

Resuming: the batch ids of each request set are kept in `<cache>/batches/<hash>.json` before the
first poll, so a run killed while its batch is pending resumes that batch (by id) instead of
submitting and paying again; a finished batch whose results were not yet cached is downloaded
again, free. The API key comes from OPENAI_API_KEY only; nothing written here holds it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlm.errors import DLMError
from dlm.io import dumps_canonical, sha256_text, write_json_atomic
from dlm.llm.backends import GenerationParams, LLMError, Reply, classify, server_message
from dlm.llm.openai_backend import OpenAIBackend, server_url

POLL_SECONDS = 30.0  # between status checks; the CLI's --batch-poll-seconds sets it
MAX_WAIT = 0.0  # seconds to wait for a batch before stopping (it is resumed by the next run); 0: until it ends
ENDPOINT = "/v1/chat/completions"
ENDED = ("completed", "expired", "cancelled", "failed")


class BatchRequestError(Exception):
    """One request of a batch that the API answered with an error (classified like a synchronous error)."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.body = {"message": message}


@dataclass
class OpenAIBatchBackend(OpenAIBackend):
    """OpenAIBackend whose requests go through the Batch API (name stays `openai`: same cache keys)."""

    poll_seconds: float | None = None  # None: POLL_SECONDS
    max_wait: float | None = None  # None: MAX_WAIT
    _consumed: set[str] = field(default_factory=set)

    def _state_dir(self) -> Path:
        if self.cache.root is None:
            raise LLMError("the Batch API needs a cache folder to keep batch ids (for resuming); none was given")
        return self.cache.root / "batches"

    def _sync_client(self):
        from openai import OpenAI

        self._client()  # the same key check and message as the synchronous path
        import os

        base_url, query = server_url(self.base_url)
        return OpenAI(api_key=os.environ.get("OPENAI_API_KEY") or "not-needed", base_url=base_url, default_query=query,
                      timeout=self.timeout or 120.0, max_retries=self._retry_budget())

    def request_body(self, messages: list[dict], params: GenerationParams) -> dict[str, Any]:
        """The chat-completion body the synchronous path sends for these messages."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": params.temperature,
                                "max_tokens": params.max_tokens, "top_p": params.top_p}
        if params.seed is not None:
            body["seed"] = params.seed
        if params.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def _complete(self, batch, params, attempt, progress) -> list[Reply | BaseException]:
        lines = [{"custom_id": f"request-{i}", "method": "POST", "url": ENDPOINT,
                  "body": self.request_body(messages, params)} for i, messages in enumerate(batch)]
        key = sha256_text(dumps_canonical({"endpoint": self.endpoint, "lines": lines}))[:32]
        state_path = self._state_dir() / f"{key}.json"
        client = self._sync_client()
        try:
            state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {"batches": []}
            last = state["batches"][-1]["id"] if state["batches"] else None
            if last and last not in self._consumed:
                batch_id = last
                _say(f"resuming OpenAI batch {batch_id} ({len(lines)} requests; id kept in {state_path})")
            else:
                batch_id = self._create(client, lines, key)
                state["batches"].append({"id": batch_id, "requests": len(lines), "created": int(time.time())})
                write_json_atomic(state_path, state)  # before the first poll: a kill from here on resumes it
                _say(f"submitted OpenAI batch {batch_id} ({len(lines)} requests; id kept in {state_path})")
            info = self._wait(client, batch_id)
            self._consumed.add(batch_id)
            return self._results(client, info, len(lines))
        except LLMError:
            raise
        except Exception as exc:  # the files/batches endpoints themselves failed (after the SDK's retries)
            self.usage.error(classify(exc))
            raise LLMError(f"OpenAI Batch API ({self.model}): {classify(exc)}: {server_message(exc)}; rerun to resume "
                           f"(batch ids are kept in {state_path.parent})") from None
        finally:
            client.close()

    def _create(self, client, lines: list[dict], key: str) -> str:
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
        uploaded = client.files.create(file=(f"dlm-{key[:12]}.jsonl", data, "application/jsonl"), purpose="batch")
        created = client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h",
                                        metadata={"dlm_requests": key[:16]})
        return created.id

    def _wait(self, client, batch_id: str):
        poll = self.poll_seconds if self.poll_seconds is not None else POLL_SECONDS
        limit = self.max_wait if self.max_wait is not None else MAX_WAIT
        start = time.monotonic()
        while True:
            info = client.batches.retrieve(batch_id)
            if info.status in ENDED:
                return info
            if limit and time.monotonic() - start >= limit:
                raise LLMError(f"OpenAI batch {batch_id} is still {info.status} after {limit:.0f} s; rerun the same "
                               "command later to resume it (it is not submitted again)")
            time.sleep(poll)

    def _results(self, client, info, n: int) -> list[Reply | BaseException]:
        if info.status == "failed" and not info.output_file_id:
            errors = "; ".join(f"{e.code}: {e.message}" for e in (getattr(info.errors, "data", None) or []))
            raise LLMError(f"OpenAI batch {info.id} failed validation ({errors or 'no reason given'}); fix the request "
                           "and rerun (a new batch is submitted)")
        out: list[Reply | BaseException] = [BatchRequestError(f"not processed: batch {info.status}") for _ in range(n)]
        for file_id in (info.output_file_id, info.error_file_id):
            if not file_id:
                continue
            for raw in client.files.content(file_id).text.splitlines():
                if raw.strip():
                    index, reply = self._parse_line(json.loads(raw))
                    if 0 <= index < n:
                        out[index] = reply
        return out

    def _parse_line(self, line: dict[str, Any]) -> tuple[int, Reply | BaseException]:
        """(request index, Reply or error) from one line of a batch's output or error file; usage counted."""
        index = int(str(line.get("custom_id", "request--1")).rsplit("-", 1)[-1])
        self.usage.requests += 1
        response = line.get("response") or {}
        body = response.get("body") or {}
        status = response.get("status_code")
        if line.get("error") or status != 200:
            err = line.get("error") or body.get("error") or {}
            return index, BatchRequestError(str(err.get("message") or err or "error"), status)
        usage = body.get("usage") or {}
        p, c = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        self.usage.prompt_tokens += p
        self.usage.completion_tokens += c
        self.usage.batch_prompt_tokens += p
        self.usage.batch_completion_tokens += c
        msg = (body.get("choices") or [{}])[0].get("message") or {}
        return index, Reply(text=msg.get("content") or "", refusal=msg.get("refusal"), prompt_tokens=p,
                            completion_tokens=c)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_backend(kind: str, openai_batch: bool) -> None:
    """`--openai-batch` only with an OpenAI-compatible backend."""
    if openai_batch and kind != "openai":
        raise DLMError(f"--openai-batch needs the openai backend (the {kind} backend runs locally)")
