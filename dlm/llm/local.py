"""Local backends: a transformers causal LM, and vLLM's offline engine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlm.llm.backends import Backend, LLMError, Reply
from dlm.preferences.template import CHAT_TEMPLATE, STOP_STRINGS, truncate_at_stop
from dlm.training.models import adapter_base, generate, load_causal_lm, option_logprobs


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
            self._model, self._tokenizer = load_causal_lm(self.model, token=self.token)
        return self._model, self._tokenizer

    def _complete(self, batch, params, attempt, progress):
        model, tok = self.load()
        texts = generate(model, tok, batch, params, self.batch_size)  # same seed on a retry: deterministic
        return [Reply(text=t) for t in texts]

    def score_options(self, conversations: list[list[dict]], options: list[str]) -> list[list[float]]:
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
