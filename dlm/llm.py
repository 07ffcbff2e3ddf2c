"""LLM backends shared by question writing and judging: chat completion to text, and option scoring.

- `openai`: any OpenAI-compatible server through the official SDK (OpenAI, vLLM's server, Ollama,
  llama.cpp). Async with a bounded number of requests in flight; the SDK retries connection
  errors, 408/409/429/5xx with exponential backoff and jitter, honouring Retry-After; timeouts.
- `hf`: local transformers models, batched generation with the model's chat template, and
  option scoring by log-probability.
- `vllm`: vLLM's offline engine, when installed (GPU machines).
- `template`: no model at all (question writing only; see dlm.questions).

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
accumulates across resumes and is recorded for failed runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
from collections.abc import Callable, Coroutine
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

    def record(self, model: str, delta: dict[str, Any]) -> None:
        """Append one batch's usage, flushed to disk."""
        if not any(delta.get(k) for k in _COUNTS) and not delta.get("errors"):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(dumps_canonical({"model": model, **delta}) + "\n")
        fsync_file(self.path)

    def totals(self) -> dict[str, dict[str, Any]]:
        """model -> summed counts, errors per cause and estimated cost, over every run recorded."""
        sums: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill: its batch was not cached either, and is asked again
            acc = sums.setdefault(row["model"], {**{k: 0 for k in _COUNTS}, "errors": {}})
            for k in _COUNTS:
                acc[k] += row.get(k, 0)
            for c, n in row.get("errors", {}).items():
                acc["errors"][c] = acc["errors"].get(c, 0) + n
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
            replies = self._complete([requests[i] for i in pending], params, 0, progress)
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
            self._record(before)
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

    def _record(self, before: dict[str, Any]) -> None:
        if self.ledger is not None:
            self.ledger.record(self.model, self.usage.since(before))

    @staticmethod
    def _accept(reply: Reply, accept: Callable[[Reply], Any]) -> tuple[Any, str | None]:
        """(value, None) for an accepted reply, else (None, cause)."""
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


@dataclass
class OpenAIBackend(Backend):
    """Any OpenAI-compatible server via the official SDK, `max_in_flight` requests at a time."""

    base_url: str | None = None
    max_in_flight: int = 16
    timeout: float | None = None
    max_retries: int | None = None  # None: DEFAULT_MAX_RETRIES (the CLI's --max-retries sets it)
    name: str = "openai"

    def _client(self):
        from openai import AsyncOpenAI

        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if self.base_url is None:
                raise LLMError("OPENAI_API_KEY is not set; export it (it is never stored) or pass --base-url for a "
                               "local OpenAI-compatible server")
            key = "not-needed"  # local servers (vLLM, Ollama) ignore the key but the SDK requires one
        # Retries are ours (see _request): every HTTP request is counted, and the budget is explicit.
        return AsyncOpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout or DEFAULT_TIMEOUT,
                           max_retries=0)

    def _complete(self, batch, params, attempt, progress):
        return run_coroutine(self._complete_async(batch, params, progress))

    async def _complete_async(self, batch, params, progress) -> list[Reply | BaseException]:
        from dlm.io import progress_bar

        client = self._client()
        gate = asyncio.Semaphore(self.max_in_flight)
        bar = progress_bar(len(batch), progress or "requests", enabled=progress is not None)
        stop: list[BaseException] = []

        async def one(messages):
            async with gate:
                if stop:  # an earlier request failed in a way that would fail this one too
                    return NotSent()
                try:
                    return await self._request(client, messages, params)
                except Exception as exc:
                    if classify(exc) in ("authentication", "invalid request"):
                        stop.append(exc)
                    return exc
                finally:
                    bar.update(1)

        try:
            # The first request goes alone: a wrong key, model or URL then costs one request, not a batch.
            first = await one(batch[0])
            if isinstance(first, BaseException):
                return [first] + [NotSent() for _ in batch[1:]]
            return [first] + list(await asyncio.gather(*(one(m) for m in batch[1:])))
        finally:
            bar.close()
            await client.close()

    async def _request(self, client, messages, params: GenerationParams) -> Reply:
        """One completion, retried with exponential backoff on rate limits, server errors and timeouts."""
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": params.temperature,
                                  "max_tokens": params.max_tokens, "top_p": params.top_p}
        if params.seed is not None:
            kwargs["seed"] = params.seed  # the same on every retry: a transient fault does not change the result
        if params.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        budget = self._retry_budget()
        for retry in range(budget + 1):
            self.usage.requests += 1
            try:
                resp = await client.chat.completions.create(**kwargs)
                break
            except Exception as exc:
                cause = classify(exc)
                if cause in ("authentication", "invalid request", "other") or retry == budget:
                    raise
                self.usage.error(cause)
                await asyncio.sleep(_backoff(exc, retry))
        usage = getattr(resp, "usage", None)
        p, c = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        self.usage.prompt_tokens += p
        self.usage.completion_tokens += c
        msg = resp.choices[0].message
        return Reply(text=msg.content or "", refusal=getattr(msg, "refusal", None), prompt_tokens=p,
                     completion_tokens=c)


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from synchronous code, also when the caller's thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # A Jupyter kernel (papermill, JupyterLab) or an async caller already runs a loop in this thread, and
    # asyncio.run refuses to nest: run the coroutine on a fresh loop in a worker thread and wait for it.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlm-llm") as pool:
        return pool.submit(asyncio.run, coro).result()


class NotSent(Exception):
    """A request of a batch that was not sent because an earlier one failed for good."""


def _backoff(exc: BaseException, retry: int) -> float:
    """Seconds before retry `retry`: the server's Retry-After when it sends one, else 0.5 s doubling to 8 s."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return min(60.0, float(headers[name]) * scale)
        except (KeyError, TypeError, ValueError):
            continue
    return min(8.0, 0.5 * 2**retry)
@dataclass
class HFBackend(Backend):
    """A local transformers causal LM: batched greedy/sampled generation and option scoring."""

    batch_size: int = 8
    token: str | None = None
    name: str = "hf"
    _model: Any = None
    _tokenizer: Any = None

    def load(self):
        """Load model and tokenizer once (base + adapter when the folder is a LoRA adapter)."""
        if self._model is None:
            from dlm.models import load_causal_lm

            self._model, self._tokenizer = load_causal_lm(self.model, token=self.token)
        return self._model, self._tokenizer

    def _complete(self, batch, params, attempt, progress):
        from dlm.models import generate

        model, tok = self.load()
        texts = generate(model, tok, batch, params, self.batch_size)  # same seed on a retry: deterministic
        return [Reply(text=t) for t in texts]

    def score_options(self, conversations: list[list[dict]], options: list[str]) -> list[list[float]]:
        from dlm.models import option_logprobs

        model, tok = self.load()
        return option_logprobs(model, tok, conversations, options, self.batch_size)


@dataclass
class VLLMBackend(Backend):
    """vLLM's offline engine (CUDA machines with `vllm` installed; not run by this project's tests).

    Same prompts as the hf backend (the plain-text dialogue template), same stop strings; a LoRA
    adapter folder is served on its base model with vLLM's LoRA support instead of being merged.
    """

    name: str = "vllm"
    _engine: Any = None
    _lora: Any = None

    def __post_init__(self):
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise LLMError("the vllm backend needs vLLM, which is not installed here (pip install vllm on a CUDA "
                           "machine); use the hf backend")
        super().__post_init__()

    def _complete(self, batch, params, attempt, progress):
        from vllm import LLM, SamplingParams

        from dlm.models import adapter_base
        from dlm.template import CHAT_TEMPLATE, STOP_STRINGS, truncate_at_stop

        if self._engine is None:
            base = adapter_base(self.model)
            kwargs: dict[str, Any] = {"seed": params.seed or 0}
            if base:
                from vllm.lora.request import LoRARequest

                rank = json.loads((Path(self.model) / "adapter_config.json").read_text()).get("r", 16)
                kwargs.update(enable_lora=True, max_lora_rank=max(16, int(rank)))
                self._lora = LoRARequest("adapter", 1, self.model)
            self._engine = LLM(model=base or self.model, **kwargs)
        sp = SamplingParams(temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
                            seed=params.seed or 0, stop=list(STOP_STRINGS))
        outputs = self._engine.chat(batch, sp, use_tqdm=progress is not None, chat_template=CHAT_TEMPLATE,
                                    lora_request=self._lora)
        return [Reply(text=truncate_at_stop(o.outputs[0].text)) for o in outputs]


def make_backend(kind: str, model: str, cache_dir: str | Path | None = None, base_url: str | None = None,
                 max_in_flight: int = 16, batch_size: int = 8, timeout: float | None = None,
                 ledger: UsageLedger | None = None, openai_batch: bool = False) -> Backend:
    """Construct a backend by name (openai, hf, vllm); `ledger` records its usage batch by batch.

    `openai_batch`: the openai backend through the Batch API (dlm.batch_api), with the same cache keys.
    """
    cache = DiskCache(cache_dir)
    if openai_batch:
        from dlm.batch_api import OpenAIBatchBackend, check_backend

        check_backend(kind, openai_batch)
        return OpenAIBatchBackend(model=model, cache=cache, base_url=base_url, timeout=timeout, ledger=ledger)
    if kind == "openai":
        return OpenAIBackend(model=model, cache=cache, base_url=base_url, max_in_flight=max_in_flight, timeout=timeout,
                             ledger=ledger)
    if kind == "hf":
        return HFBackend(model=model, cache=cache, batch_size=batch_size, token=os.environ.get("HF_TOKEN") or None,
                         ledger=ledger)
    if kind == "vllm":
        return VLLMBackend(model=model, cache=cache, ledger=ledger)
    raise DLMError(f"unknown backend '{kind}'; use openai, hf or vllm")
