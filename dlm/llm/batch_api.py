"""The OpenAI Batch API as a backend: the same requests, replies, cache and records as the synchronous path.

`--openai-batch` (`dlm evaluate`, `dlm questions`; `openai_batch` in notebooks 05 and 06) sends
the requests a synchronous run would send as one JSONL file (`/v1/files`, purpose `batch`),
creates a batch (`/v1/batches`, `/v1/chat/completions`, 24 h window, half the token price),
polls it, downloads its output (and error) file and turns each line into the reply the
synchronous request would have given. Cache keys, accepted values, retries of malformed or
refused replies (as a new, smaller batch) and therefore the records written are those of the
synchronous path: a judgment or question file does not depend on which path made it.

Limits: the requests are split into batches of at most MAX_REQUESTS lines, MAX_BYTES of JSONL
and MAX_TOKENS enqueued tokens (prompt estimated at 4 characters a token, plus max_tokens), run
one after another so that no more than one batch's tokens are enqueued at a time. Lines answered
with a retryable error (429, 5xx, or not processed because the batch expired or was cancelled)
are asked again in a follow-up batch, up to the synchronous path's retry budget (--max-retries).

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
# OpenAI's own caps are 50,000 requests and 200 MB per batch; enqueued tokens depend on the model and
# usage tier (2M is gpt-4o-mini's at tier 1): raise them with --batch-max-tokens for a higher tier.
MAX_REQUESTS = 50_000
MAX_BYTES = 190 * 2**20
MAX_TOKENS = 2_000_000
CHARS_PER_TOKEN = 4  # an over-estimate for English under OpenAI's tokenizers: batches stay under the limit


class BatchRequestError(Exception):
    """One request of a batch that the API answered with an error (classified like a synchronous error)."""

    def __init__(self, message: str, status_code: int | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.body = {"message": message}
        # as the synchronous path retries: rate limits, server errors, timeouts; and lines never processed
        self.retryable = retryable if retryable is not None else (status_code in (408, 409, 429)
                                                                  or (status_code or 0) >= 500)


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
        out: list[Reply | BaseException] = [BatchRequestError("not processed") for _ in lines]
        todo, budget = list(range(len(lines))), self._retry_budget()
        for retry in range(budget + 1):
            for chunk in split_lines([lines[i] for i in todo]):
                out_chunk = self._run_batch(chunk)
                for line, reply in zip(chunk, out_chunk, strict=True):
                    out[int(line["custom_id"].rsplit("-", 1)[-1])] = reply
            todo = [i for i in todo if isinstance(out[i], BatchRequestError) and out[i].retryable]
            if not todo or retry == budget:
                break
            _say(f"{len(todo)} batch request(s) failed with retryable errors; asking them again in a follow-up batch "
                 f"(retry {retry + 1} of {budget})")
        return out

    def _run_batch(self, lines: list[dict]) -> list[Reply | BaseException]:
        """One batch of `lines` (created, or resumed by id), waited for; a reply or error per line, in order."""
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
            by_id = self._results(client, info)
            return [by_id.get(line["custom_id"]) or BatchRequestError(f"not processed: batch {info.status}",
                                                                      retryable=True) for line in lines]
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

    def _results(self, client, info) -> dict[str, Reply | BaseException]:
        if info.status == "failed" and not info.output_file_id:
            errors = "; ".join(f"{e.code}: {e.message}" for e in (getattr(info.errors, "data", None) or []))
            raise LLMError(f"OpenAI batch {info.id} failed validation ({errors or 'no reason given'}); fix the request "
                           "and rerun (a new batch is submitted)")
        out: dict[str, Reply | BaseException] = {}
        for file_id in (info.output_file_id, info.error_file_id):
            if not file_id:
                continue
            for raw in client.files.content(file_id).text.splitlines():
                if raw.strip():
                    line = json.loads(raw)
                    out[str(line.get("custom_id"))] = self._parse_line(line)
        return out

    def _parse_line(self, line: dict[str, Any]) -> Reply | BaseException:
        """The Reply or error of one line of a batch's output or error file; usage counted."""
        self.usage.requests += 1
        response = line.get("response") or {}
        body = response.get("body") or {}
        status = response.get("status_code")
        if line.get("error") or status != 200:
            err = line.get("error") or body.get("error") or {}
            # an error line without an HTTP status (e.g. batch_expired) was never processed: ask again
            return BatchRequestError(str(err.get("message") or err or "error"), status,
                                     retryable=True if status is None else None)
        usage = body.get("usage") or {}
        p, c = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        self.usage.prompt_tokens += p
        self.usage.completion_tokens += c
        self.usage.batch_prompt_tokens += p
        self.usage.batch_completion_tokens += c
        msg = (body.get("choices") or [{}])[0].get("message") or {}
        return Reply(text=msg.get("content") or "", refusal=msg.get("refusal"), prompt_tokens=p,
                            completion_tokens=c)


def split_lines(lines: list[dict]) -> list[list[dict]]:
    """`lines` in order, cut into batches within MAX_REQUESTS lines, MAX_BYTES bytes and MAX_TOKENS enqueued tokens."""
    chunks: list[list[dict]] = [[]]
    size = tokens = 0
    for line in lines:
        raw = len(json.dumps(line, ensure_ascii=False).encode("utf-8")) + 1
        body = line["body"]
        need = sum(len(str(m.get("content", ""))) for m in body["messages"]) // CHARS_PER_TOKEN + body["max_tokens"]
        if raw > MAX_BYTES or need > MAX_TOKENS:
            raise DLMError(f"one Batch API request is {raw} bytes / ~{need} tokens, over the per-batch limit "
                           f"({MAX_BYTES} bytes, {MAX_TOKENS} tokens): raise --batch-max-tokens or --batch-max-mb")
        if chunks[-1] and (len(chunks[-1]) >= MAX_REQUESTS or size + raw > MAX_BYTES or tokens + need > MAX_TOKENS):
            chunks.append([])
            size = tokens = 0
        chunks[-1].append(line)
        size, tokens = size + raw, tokens + need
    return [c for c in chunks if c]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_backend(kind: str, openai_batch: bool) -> None:
    """`--openai-batch` only with an OpenAI-compatible backend."""
    if openai_batch and kind != "openai":
        raise DLMError(f"--openai-batch needs the openai backend (the {kind} backend runs locally)")
