"""The backend factory: a backend by name, so callers need not know the classes."""

from __future__ import annotations

import os
from pathlib import Path

from dlm.errors import DLMError
from dlm.llm.backends import Backend, DiskCache, UsageLedger
from dlm.llm.batch_api import OpenAIBatchBackend, check_backend
from dlm.llm.local import HFBackend, VLLMBackend
from dlm.llm.openai_backend import OpenAIBackend


def make_backend(kind: str, model: str, cache_dir: str | Path | None = None, base_url: str | None = None,
                 max_in_flight: int = 16, batch_size: int = 8, timeout: float | None = None,
                 ledger: UsageLedger | None = None, openai_batch: bool = False) -> Backend:
    """Construct a backend by name (openai, hf, vllm); `ledger` records its usage batch by batch.

    `openai_batch`: the openai backend through the Batch API (dlm.llm.batch_api), with the same cache keys.
    """
    cache = DiskCache(cache_dir)
    if openai_batch:
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
