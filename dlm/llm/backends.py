"""LLM backends shared by question writing and judging: chat completion to text, and option scoring.

- `openai`: any OpenAI-compatible server through the official SDK (OpenAI, vLLM's server, Ollama,
  llama.cpp). Async with a bounded number of requests in flight; the SDK retries connection
  errors, 408/409/429/5xx with exponential backoff and jitter, honouring Retry-After; timeouts.
- `hf`: local transformers models, batched generation with the model's chat template, and
  option scoring by log-probability.
- `vllm`: vLLM's offline engine, when installed (GPU machines).
- `template`: no model at all (question writing only; see dlm.judging.questions).

Replies are cached on disk, keyed by backend, model, endpoint (base URL without credentials),
messages and generation parameters, so reruns are free and deterministic. Only replies the caller
accepted are cached: errors, refusals and unparseable text never are. The API key is read from
OPENAI_API_KEY and is never part of a key, a cache entry or a log line.

Retries are deterministic: a malformed or refused reply is asked again with the same messages and
parameters (same seed), so a run with transient faults ends with the same results as one without.
Errors are classified: 401/403 (authentication, permission) and 400/404/422 (invalid request,
unknown model) stop the run at once with the server's message, and the first request of a batch
is sent alone, so such an error costs one request. Rate limits, server errors, timeouts and
connection errors are retried by the SDK with backoff up to `max_retries` (`--max-retries`); the
final message counts failures per cause. Usage (requests, tokens, failures by cause) counts what
was billed, failed requests included, and is appended to a ledger file after every batch, so it
accumulates across resumes and is recorded for failed runs. Before a batch is sent the ledger gets
an `in_flight` line, settled by the batch's usage line; a kill in between leaves it unsettled, and
the totals count those requests as `sent_outcome_unknown` (billed or not: the server knows).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dlm.errors import DLMError
from dlm.io import dumps_canonical, fsync_file, model_fingerprint, redact_url, sha256_text, write_text_atomic

DEFAULT_TIMEOUT = 60.0  # seconds per API request; the CLI's --timeout sets it
DEFAULT_MAX_RETRIES = 4  # SDK retries of one request on 429/5xx/timeouts/connection errors; --max-retries sets it
# Failure causes, in the order the final message lists them.
CAUSES = ("authentication", "invalid request", "rate limit", "server error", "timeout", "connection",
          "malformed reply", "refusal", "other", "not sent")
# USD per million tokens (input, output), for the usage report; unknown models report tokens only.
PRICES = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4.1-mini": (0.40, 1.60),
          "gpt-4.1": (2.00, 8.00)}


T = TypeVar("T")


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings; part of every cache key."""

    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    top_p: float = 1.0
    json_mode: bool = False


_COUNTS = ("requests", "cache_hits", "failures", "prompt_tokens", "completion_tokens", "batch_prompt_tokens",
           "batch_completion_tokens")
BATCH_DISCOUNT = 0.5  # the Batch API bills tokens at half the price


@dataclass
class Usage:
    """Token and request counts (cache hits cost nothing); `errors` counts failed attempts per cause."""

    requests: int = 0
    cache_hits: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    batch_prompt_tokens: int = 0  # of the tokens above, those sent through the Batch API (half price)
    batch_completion_tokens: int = 0
    model: str = ""
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, prompt: int, completion: int) -> None:
        self.requests += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion

    def error(self, cause: str) -> None:
        self.errors[cause] = self.errors.get(cause, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """The counters now (for `since`)."""
        return {**{k: getattr(self, k) for k in _COUNTS}, "errors": dict(self.errors)}

    def since(self, before: dict[str, Any]) -> dict[str, Any]:
        """What was counted after `before` was taken."""
        out: dict[str, Any] = {k: getattr(self, k) - before[k] for k in _COUNTS}
        out["errors"] = {c: n - before["errors"].get(c, 0) for c, n in self.errors.items()
                         if n != before["errors"].get(c, 0)}
        return out

    def report(self) -> dict[str, Any]:
        """Counts plus estimated cost in USD where the model's price is known."""
        return usage_report(asdict(self), self.model)


def usage_report(counts: dict[str, Any], model: str) -> dict[str, Any]:
    """`counts` with `cost_usd` added (None when the model's price is unknown); Batch API tokens at half price."""
    price = PRICES.get(model)
    cost = None
    if price:
        full = counts.get("prompt_tokens", 0) * price[0] + counts.get("completion_tokens", 0) * price[1]
        batch = counts.get("batch_prompt_tokens", 0) * price[0] + counts.get("batch_completion_tokens", 0) * price[1]
        cost = round((full - BATCH_DISCOUNT * batch) / 1e6, 6)
    return {**counts, "model": model, "cost_usd": cost}


class UsageLedger:
    """An append-only JSONL of usage deltas (one line per batch): totals survive kills and resumes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def sending(self, model: str, n_requests: int) -> str:
        """Record that a batch of `n_requests` is about to be sent; the ticket its usage line settles."""
        ticket = uuid.uuid4().hex[:16]
        self._append({"model": model, "in_flight": n_requests, "ticket": ticket})
        return ticket

    def record(self, model: str, delta: dict[str, Any], ticket: str | None = None) -> None:
        """Append one batch's usage (settling `ticket`), flushed to disk."""
        if ticket is None and not any(delta.get(k) for k in _COUNTS) and not delta.get("errors"):
            return
        self._append({"model": model, **delta, **({"settles": ticket} if ticket else {})})

    def _append(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(dumps_canonical(row) + "\n")
        fsync_file(self.path)

    def totals(self) -> dict[str, dict[str, Any]]:
        """model -> summed counts, errors per cause and estimated cost, over every run recorded."""
        sums: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return {}
        in_flight: dict[str, tuple[str, int]] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill: its batch was not cached either, and is asked again
            acc = sums.setdefault(row["model"], {**{k: 0 for k in _COUNTS}, "sent_outcome_unknown": 0, "errors": {}})
            if "in_flight" in row:
                in_flight[row["ticket"]] = (row["model"], row["in_flight"])
                continue
            in_flight.pop(row.get("settles", ""), None)
            for k in _COUNTS:
                acc[k] += row.get(k, 0)
            for c, n in row.get("errors", {}).items():
                acc["errors"][c] = acc["errors"].get(c, 0) + n
        for model, n in in_flight.values():  # sent by a run that was killed before their replies were counted
            sums[model]["sent_outcome_unknown"] += n
        return {m: usage_report(v, m) for m, v in sums.items()}


class LLMError(DLMError):
    """A backend failed in a way retries did not fix."""


def classify(exc: BaseException) -> str:
    """The failure cause of an exception raised by a request (one of CAUSES)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return "authentication"
    if status in (400, 404, 409, 413, 422):
        return "invalid request"
    if status == 429:
        return "rate limit"
    if status is not None and status >= 500:
        return "server error"
    return "other"


def _status(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return f", HTTP {status}" if status else ""


def server_message(exc: BaseException) -> str:
    """The server's own error message, shortened to one line."""
    body = getattr(exc, "body", None)
    msg = body.get("message") if isinstance(body, dict) else None
    return " ".join(str(msg or exc).split())[:300]


@dataclass
class Reply:
    """One chat completion: its text, or the refusal the model gave instead."""

    text: str
    refusal: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    malformed: str | None = None  # why a 200 response held no completion (an HTML page, torn JSON): asked again


class DiskCache:
    """JSON files under `root`, one per request key (sharded by the key's first two hex digits)."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root else None

    def key(self, backend: str, model: str, messages: list[dict], params: GenerationParams, **extra: Any) -> str:
        return sha256_text(dumps_canonical({"backend": backend, "model": model, "messages": messages,
                                            "params": asdict(params), **extra}))

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Any | None:
        if self.root is None:
            return None
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))["value"]
        except (OSError, ValueError, KeyError):
            return None  # absent or torn: ask again

    def put(self, key: str, value: Any) -> None:
        if self.root is not None:
            write_text_atomic(self._path(key), dumps_canonical({"value": value}))


@dataclass
class Backend:
    """Base class: `complete_many` runs chat completions, cached, with a validator deciding what to keep."""

    model: str
    cache: DiskCache = field(default_factory=lambda: DiskCache(None))
    usage: Usage = field(default_factory=Usage)
    name: str = "base"
    ledger: UsageLedger | None = None

    def __post_init__(self):
        self.usage.model = self.model
        # Cache keys name the weights, not just the path: a model retrained in place is asked again.
        self.identity = model_fingerprint(self.model) if self.name in ("hf", "vllm") else self.model
        # ... and the server: a reply from one endpoint is never served as another's.
        self.endpoint = redact_url(getattr(self, "base_url", None)) if self.name == "openai" else None

    def complete_many(self, requests: list[list[dict]], params: GenerationParams,
                      accept: Callable[[Reply], Any] | None = None, attempts: int = 3,
                      progress: str | None = None) -> list[Any]:
        """Answer each message list; `accept(reply)` returns the value to keep or raises ValueError.

        A refused or rejected reply is asked again, identically (same parameters and seed), up to
        `attempts` times, and is never cached; a request that failed after the SDK's retries is
        not asked again. Raises LLMError, counting failures per cause, when a request never succeeds.
        """
        accept = accept or (lambda r: r.text)
        results: list[Any] = [None] * len(requests)
        pending = []
        for i, messages in enumerate(requests):
            hit = self.cache.get(self._key(messages, params))
            if hit is not None:
                results[i] = hit
                self.usage.cache_hits += 1
            else:
                pending.append(i)
        failed: dict[str, int] = {}
        last_cause: dict[int, str] = {}
        for _ in range(attempts):
            if not pending:
                break
            before = self.usage.snapshot()
            ticket = self.ledger.sending(self.model, len(pending)) if self.ledger is not None else None
            try:
                replies = self._complete([requests[i] for i in pending], params, 0, progress)
            except Exception:
                self._record(before, ticket)  # what was counted before the failure; only a kill leaves it open
                raise
            still, fatal = [], None
            for i, reply in zip(pending, replies, strict=True):
                if isinstance(reply, NotSent):
                    failed["not sent"] = failed.get("not sent", 0) + 1
                    continue
                if isinstance(reply, BaseException):
                    cause = classify(reply)
                    self.usage.error(cause)
                    if cause in ("authentication", "invalid request"):
                        fatal = fatal or reply
                    failed[cause] = failed.get(cause, 0) + 1
                    continue
                value, cause = self._accept(reply, accept)
                if cause:
                    self.usage.error(cause)
                    last_cause[i] = cause
                    still.append(i)
                    continue
                results[i] = value
            self._record(before, ticket)
            for i in pending:  # cached after the ledger line: a kill in between asks again, never undercounts
                if results[i] is not None:
                    self.cache.put(self._key(requests[i], params), results[i])
            if fatal is not None:
                self.usage.failures += len(requests) - sum(r is not None for r in results)
                raise LLMError(f"{self.name} model {self.model}: the server refused the request "
                               f"({classify(fatal)}{_status(fatal)}: {server_message(fatal)}); fix the key, model "
                               "or URL it names: retrying would not help")
            pending = still
        for i in pending:
            failed[last_cause[i]] = failed.get(last_cause[i], 0) + 1
        n_failed = len(requests) - sum(r is not None for r in results)
        if n_failed:
            self.usage.failures += n_failed
            counts = ", ".join(f"{failed[c]} {c}" for c in CAUSES if failed.get(c))
            raise LLMError(f"{self.name} model {self.model}: {n_failed} request(s) failed ({counts}); malformed or "
                           f"refused replies were asked up to {attempts} times, rate limits, server errors and "
                           f"timeouts retried up to {self._retry_budget()} times; rerun to retry (finished work is "
                           "kept), or raise --max-retries")
        return results

    def _retry_budget(self) -> int:
        budget = getattr(self, "max_retries", 0)
        return DEFAULT_MAX_RETRIES if budget is None else budget

    def _key(self, messages: list[dict], params: GenerationParams) -> str:
        return self.cache.key(self.name, self.identity, messages, params, endpoint=self.endpoint)

    def _record(self, before: dict[str, Any], ticket: str | None = None) -> None:
        if self.ledger is not None:
            self.ledger.record(self.model, self.usage.since(before), ticket)

    @staticmethod
    def _accept(reply: Reply, accept: Callable[[Reply], Any]) -> tuple[Any, str | None]:
        """(value, None) for an accepted reply, else (None, cause)."""
        if reply.malformed:
            return None, "malformed reply"
        if reply.refusal:
            return None, "refusal"
        try:
            return accept(reply), None
        except (ValueError, KeyError, TypeError):
            return None, "malformed reply"

    def _complete(self, batch: list[list[dict]], params: GenerationParams, attempt: int,
                  progress: str | None) -> list[Reply | Exception]:
        raise NotImplementedError

    def score_options(self, conversations: list[list[dict]], options: list[str]) -> list[list[float]]:
        """Log-probability of each option as the assistant's next text, per conversation (local backends only)."""
        raise LLMError(f"the {self.name} backend cannot score options; use an hf judge")


class NotSent(Exception):
    """A request of a batch that was not sent because an earlier one failed for good."""
