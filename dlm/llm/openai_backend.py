"""The OpenAI-compatible backend: async requests through the official SDK, retried with backoff."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import urllib.parse
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from dlm.io import progress_bar, reveal_url
from dlm.llm import backends
from dlm.llm.backends import Backend, GenerationParams, LLMError, NotSent, Reply, classify

T = TypeVar("T")


@dataclass
class OpenAIBackend(Backend):
    """Any OpenAI-compatible server via the official SDK, `max_in_flight` requests at a time."""

    base_url: str | None = None
    max_in_flight: int = 16
    timeout: float | None = None
    max_retries: int | None = None  # None: DEFAULT_MAX_RETRIES (the CLI's --max-retries sets it)
    name: str = "openai"

    def _client(self):
        from openai import AsyncOpenAI  # the SDK loads httpx and pydantic models: only when a request is made

        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if self.base_url is None:
                raise LLMError("OPENAI_API_KEY is not set; export it (it is never stored) or pass --base-url for a "
                               "local OpenAI-compatible server")
            key = "not-needed"  # local servers (vLLM, Ollama) ignore the key but the SDK requires one
        base_url, query = server_url(self.base_url)
        # Retries are ours (see _request): every HTTP request is counted, and the budget is explicit.
        return AsyncOpenAI(api_key=key, base_url=base_url, default_query=query,
                           timeout=self.timeout or backends.DEFAULT_TIMEOUT, max_retries=0)

    def _complete(self, batch, params, attempt, progress):
        return run_coroutine(self._complete_async(batch, params, progress))

    async def _complete_async(self, batch, params, progress) -> list[Reply | BaseException]:
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
        import openai  # the SDK, loaded with the client (see _client)

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
            except (ValueError, openai.APIResponseValidationError) as exc:
                # A 200 whose body is no JSON completion (a proxy's HTML page, a torn body): a malformed
                # reply, asked again within the same budget as unparseable text, never cached.
                return Reply(text="", malformed=f"{type(exc).__name__}: {str(exc)[:120]}")
            except Exception as exc:
                cause = classify(exc)
                if cause in ("authentication", "invalid request", "other") or retry == budget:
                    raise
                self.usage.error(cause)
                await asyncio.sleep(_backoff(exc, retry))
        if not getattr(resp, "choices", None):  # the SDK hands back a non-JSON body (HTML) as a plain string
            return Reply(text="", malformed=f"no completion in the reply ({str(resp)[:80]!r})")
        usage = getattr(resp, "usage", None)
        p, c = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        self.usage.prompt_tokens += p
        self.usage.completion_tokens += c
        msg = resp.choices[0].message
        return Reply(text=msg.content or "", refusal=getattr(msg, "refusal", None), prompt_tokens=p,
                     completion_tokens=c)


def server_url(base_url: str | None) -> tuple[str | None, dict[str, str] | None]:
    """(URL without its query, query parameters) of a base URL, its credentials revealed (dlm.io.reveal_url).

    The SDK appends endpoint paths to the base URL's text, which would land inside a query string
    (`/v1?api-key=K` + `chat/completions`): the query goes with every request as `default_query` instead.
    """
    url = reveal_url(base_url)
    if not url:
        return url, None
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)) or None
    return urllib.parse.urlunsplit(parts._replace(query="")), query


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


def _backoff(exc: BaseException, retry: int) -> float:
    """Seconds before retry `retry`: the server's Retry-After when it sends one, else 0.5 s doubling to 8 s."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        try:
            return min(60.0, float(headers[name]) * scale)
        except (KeyError, TypeError, ValueError):
            continue
    return min(8.0, 0.5 * 2**retry)
