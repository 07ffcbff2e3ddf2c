"""LLM backends (OpenAI-compatible, transformers, vLLM), their cache, usage ledger and the Batch API.

The public names below resolve on first use (PEP 562): `dlm.llm.local` imports torch and transformers,
which a command that never loads a model (`dlm sortition`) should not pay for.
"""

from dlm import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "dlm.llm.backends": ("GenerationParams", "Usage", "usage_report", "UsageLedger", "LLMError", "classify",
                         "server_message", "Reply", "DiskCache", "Backend", "NotSent"),
    "dlm.llm.batch_api": ("BatchRequestError", "OpenAIBatchBackend", "check_backend"),
    "dlm.llm.factory": ("make_backend",),
    "dlm.llm.local": ("HFBackend", "VLLMBackend"),
    "dlm.llm.openai_backend": ("OpenAIBackend", "run_coroutine"),
})
