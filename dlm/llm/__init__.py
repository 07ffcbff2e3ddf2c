"""LLM backends (OpenAI-compatible, transformers, vLLM), their cache, usage ledger and the Batch API."""

from dlm.llm.backends import (GenerationParams, Usage, usage_report, UsageLedger, LLMError, classify, server_message, Reply, DiskCache,
                              Backend, NotSent)
from dlm.llm.batch_api import BatchRequestError, OpenAIBatchBackend, check_backend
from dlm.llm.factory import make_backend
from dlm.llm.local import HFBackend, VLLMBackend
from dlm.llm.openai_backend import OpenAIBackend, run_coroutine
