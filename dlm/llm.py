"""LLM backends shared by question writing and judging: chat completion to text, and option scoring.

- `openai`: any OpenAI-compatible server through the official SDK (OpenAI, vLLM's server, Ollama,
  llama.cpp). Async with a bounded number of requests in flight; the SDK retries connection
  errors, 408/409/429/5xx with exponential backoff and jitter, honouring Retry-After; timeouts.
- `hf`: local transformers models, batched generation with the model's chat template, and
  option scoring by log-probability.
- `vllm`: vLLM's offline engine, when installed (GPU machines).
- `template`: no model at all (question writing only; see dlm.questions).

Replies are cached on disk, keyed by backend, model, messages and generation parameters, so reruns
are free and deterministic. Only replies the caller accepted are cached: errors, refusals and
unparseable text never are. The API key is read from OPENAI_API_KEY and is never part of a key,
a cache entry or a log line.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dlm.errors import DLMError
from dlm.io import dumps_canonical, model_fingerprint, sha256_text, write_text_atomic

DEFAULT_TIMEOUT = 60.0  # seconds per API request; the CLI's --timeout sets it
# USD per million tokens (input, output), for the usage report; unknown models report tokens only.
PRICES = {"gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4.1-mini": (0.40, 1.60),
          "gpt-4.1": (2.00, 8.00)}


@dataclass(frozen=True)
class GenerationParams:
    """Decoding settings; part of every cache key."""

    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    top_p: float = 1.0
    json_mode: bool = False


@dataclass
class Usage:
    """Token and request counts for one run (cache hits cost nothing)."""

    requests: int = 0
    cache_hits: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""

    def add(self, prompt: int, completion: int) -> None:
        self.requests += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion

    def report(self) -> dict[str, Any]:
        """Counts plus estimated cost in USD where the model's price is known."""
        out = asdict(self)
        price = PRICES.get(self.model)
        out["cost_usd"] = (round((self.prompt_tokens * price[0] + self.completion_tokens * price[1]) / 1e6, 6)
                           if price else None)
        return out


class LLMError(DLMError):
    """A backend failed in a way retries did not fix."""


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

    def __post_init__(self):
        self.usage.model = self.model
        # Cache keys name the weights, not just the path: a model retrained in place is asked again.
        self.identity = model_fingerprint(self.model) if self.name in ("hf", "vllm") else self.model

    def complete_many(self, requests: list[list[dict]], params: GenerationParams,
                      accept: Callable[[Reply], Any] | None = None, attempts: int = 3,
                      progress: str | None = None) -> list[Any]:
        """Answer each message list; `accept(reply)` returns the value to keep or raises ValueError.

        A refused, failed or rejected reply is retried (up to `attempts` times; the attempt number
        shifts the sampling seed) and is never cached. Raises LLMError when a request never succeeds.
        """
        accept = accept or (lambda r: r.text)
        results: list[Any] = [None] * len(requests)
        pending = []
        for i, messages in enumerate(requests):
            hit = self.cache.get(self.cache.key(self.name, self.identity, messages, params))
            if hit is not None:
                results[i] = hit
                self.usage.cache_hits += 1
            else:
                pending.append(i)
        for attempt in range(attempts):
            if not pending:
                break
            replies = self._complete([requests[i] for i in pending], params, attempt, progress)
            still = []
            for i, reply in zip(pending, replies, strict=True):
                value = self._accept(reply, accept)
                if value is None:
                    still.append(i)
                    continue
                results[i] = value
                self.cache.put(self.cache.key(self.name, self.identity, requests[i], params), value)
            pending = still
        if pending:
            self.usage.failures += len(pending)
            raise LLMError(f"{self.name} model {self.model}: {len(pending)} request(s) failed, were refused or could "
                           f"not be parsed after {attempts} attempts; rerun to retry (finished work is kept)")
        return results

    @staticmethod
    def _accept(reply: Reply | Exception, accept: Callable[[Reply], Any]) -> Any | None:
        if isinstance(reply, Exception) or reply.refusal:
            return None
        try:
            return accept(reply)
        except (ValueError, KeyError, TypeError):
            return None

    def _complete(self, batch: list[list[dict]], params: GenerationParams, attempt: int,
                  progress: str | None) -> list[Reply | Exception]:
        raise NotImplementedError

    def score_options(self, messages: list[dict], options: list[str]) -> list[float]:
        """Log-probability of each option as the assistant's next text (local backends only)."""
        raise LLMError(f"the {self.name} backend cannot score options; use an hf judge")


@dataclass
class OpenAIBackend(Backend):
    """Any OpenAI-compatible server via the official SDK, `max_in_flight` requests at a time."""

    base_url: str | None = None
    max_in_flight: int = 16
    timeout: float | None = None
    max_retries: int = 6
    name: str = "openai"

    def _client(self):
        from openai import AsyncOpenAI

        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if self.base_url is None:
                raise LLMError("OPENAI_API_KEY is not set; export it (it is never stored) or pass --base-url for a "
                               "local OpenAI-compatible server")
            key = "not-needed"  # local servers (vLLM, Ollama) ignore the key but the SDK requires one
        return AsyncOpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout or DEFAULT_TIMEOUT,
                           max_retries=self.max_retries)

    def _complete(self, batch, params, attempt, progress):
        return asyncio.run(self._complete_async(batch, params, attempt, progress))

    async def _complete_async(self, batch, params, attempt, progress) -> list[Reply | Exception]:
        from dlm.io import progress_bar

        client = self._client()
        gate = asyncio.Semaphore(self.max_in_flight)
        bar = progress_bar(len(batch), progress or "requests", enabled=progress is not None)

        async def one(messages):
            async with gate:
                try:
                    return await self._request(client, messages, params, attempt)
                except Exception as exc:  # the SDK already retried; report and move on
                    return exc
                finally:
                    bar.update(1)

        try:
            return await asyncio.gather(*(one(m) for m in batch))
        finally:
            bar.close()
            await client.close()

    async def _request(self, client, messages, params: GenerationParams, attempt: int) -> Reply:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": params.temperature,
                                  "max_tokens": params.max_tokens, "top_p": params.top_p}
        if params.seed is not None:
            kwargs["seed"] = params.seed + attempt  # a retry after a rejected reply asks for a different sample
        if params.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        resp = await client.chat.completions.create(**kwargs)
        usage = getattr(resp, "usage", None)
        p, c = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        self.usage.add(p, c)
        msg = resp.choices[0].message
        return Reply(text=msg.content or "", refusal=getattr(msg, "refusal", None), prompt_tokens=p,
                     completion_tokens=c)


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
        texts = generate(model, tok, batch, params, self.batch_size, seed_offset=attempt)
        return [Reply(text=t) for t in texts]

    def score_options(self, messages: list[dict], options: list[str]) -> list[float]:
        from dlm.models import option_logprobs

        model, tok = self.load()
        return option_logprobs(model, tok, messages, options)


@dataclass
class VLLMBackend(Backend):
    """vLLM's offline engine (GPU machines with `pip install -e .[gpu]`)."""

    name: str = "vllm"
    _engine: Any = None

    def _complete(self, batch, params, attempt, progress):
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise LLMError("the vllm backend needs vLLM (pip install -e '.[gpu]' on a CUDA machine)") from None
        from dlm.template import STOP_STRINGS, truncate_at_stop

        if self._engine is None:
            self._engine = LLM(model=self.model, seed=params.seed or 0)
        sp = SamplingParams(temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens,
                            seed=(params.seed or 0) + attempt, stop=list(STOP_STRINGS))
        outputs = self._engine.chat(batch, sp, use_tqdm=progress is not None)
        return [Reply(text=truncate_at_stop(o.outputs[0].text)) for o in outputs]


def make_backend(kind: str, model: str, cache_dir: str | Path | None = None, base_url: str | None = None,
                 max_in_flight: int = 16, batch_size: int = 8, timeout: float | None = None) -> Backend:
    """Construct a backend by name (openai, hf, vllm)."""
    cache = DiskCache(cache_dir)
    if kind == "openai":
        return OpenAIBackend(model=model, cache=cache, base_url=base_url, max_in_flight=max_in_flight, timeout=timeout)
    if kind == "hf":
        return HFBackend(model=model, cache=cache, batch_size=batch_size, token=os.environ.get("HF_TOKEN") or None)
    if kind == "vllm":
        return VLLMBackend(model=model, cache=cache)
    raise DLMError(f"unknown backend '{kind}'; use openai, hf or vllm")
