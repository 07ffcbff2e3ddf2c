"""LLM backends (OpenAI-compatible, transformers, vLLM), their cache, usage ledger and the Batch API.

The public names below resolve on first use (PEP 562): `dlm.llm.local` imports torch and, through
`dlm.training`, TRL, which a command that never loads a model (`dlm sortition`) should not pay for.
"""

import importlib
from typing import Any

_HOMES = {
    "dlm.llm.backends": ("GenerationParams", "Usage", "usage_report", "UsageLedger", "LLMError", "classify",
                         "server_message", "Reply", "DiskCache", "Backend", "NotSent"),
    "dlm.llm.batch_api": ("BatchRequestError", "OpenAIBatchBackend", "check_backend"),
    "dlm.llm.factory": ("make_backend",),
    "dlm.llm.local": ("HFBackend", "VLLMBackend"),
    "dlm.llm.openai_backend": ("OpenAIBackend", "run_coroutine"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME_OF)


def __getattr__(name: str) -> Any:
    if name in _HOME_OF:
        return getattr(importlib.import_module(_HOME_OF[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
