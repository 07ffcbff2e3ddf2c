"""One home for local causal LMs: loading (full checkpoints, LoRA adapters on their base, Hub ids,
quantised) and scoring (sequence log-probabilities), for training, held-out accuracy and the HF judge.

Generation uses the tokenizer's chat template (the plain-text dialogue template saved at
training) and stops at EOS or at the template's next user turn; every model gets the same
decoding settings. Greedy batches are filled with prompts of similar length (fewer pad tokens);
answers come back in the caller's order and equal the unsorted ones (tests/test_models.py).

The weighted trainer keeps TRL's own log-prob path (`dlm.training.weighted_dpo`), so parity with stock
TRL holds; `sequence_logprobs` here serves held-out accuracy (`dlm.alignment.heldout`) and the HF judge.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dlm.errors import DLMError
from dlm.preferences.template import CHAT_TEMPLATE, STOP_STRINGS, render_prompt, truncate_at_stop

LLAMA3_PAD = "<|finetune_right_pad_id|>"  # Llama 3.1's reserved padding token


def quiet_progress_bars() -> None:
    """Hide the libraries' own progress bars when stderr is not a terminal (logs, CI, notebooks)."""
    if sys.stderr.isatty():
        return
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def from_pretrained(loader: Any, model_id: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained` with a missing folder or unreachable Hub id turned into one clear line."""
    local = Path(model_id)
    if (local.is_absolute() or model_id.startswith(".")) and not local.exists():
        raise DLMError(f"model folder {model_id} does not exist")
    try:
        return loader.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError) as exc:
        raise DLMError(f"cannot load '{model_id}': {str(exc).splitlines()[0][:200]} "
                       "(a local folder or a Hub id; gated models need HF_TOKEN)") from None


def load_tokenizer(model_id: str, token: str | None = None, revision: str | None = None):
    """The model's tokenizer with a pad token and the plain-text dialogue template (never Instruct tokens)."""
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"token": token}
    if revision:
        kwargs["revision"] = revision
    tok = from_pretrained(AutoTokenizer, model_id, **kwargs)
    if tok.pad_token is None:
        tok.pad_token = LLAMA3_PAD if LLAMA3_PAD in tok.get_vocab() else tok.eos_token
    tok.chat_template = CHAT_TEMPLATE
    return tok


def torch_dtype(name: str | None):
    """A torch dtype from its name; None → bfloat16 on a GPU, float32 on a CPU."""
    import torch

    if name in (None, "", "auto"):
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    if not isinstance(getattr(torch, str(name), None), torch.dtype):
        raise DLMError(f"dtype {name!r} is not a torch dtype; use bfloat16, float16 or float32")
    return getattr(torch, name)


def load_model(model_id: str, token: str | None = None, dtype: str | None = None, attn: str | None = None,
               quantization_config: Any = None, revision: str | None = None, trust_remote_code: bool = False):
    """A causal LM from a folder or Hub id (4/8-bit when `quantization_config` is given: CUDA only)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype), "token": token}
    if attn:
        kwargs["attn_implementation"] = attn
    if revision and revision != "main":
        kwargs["revision"] = revision
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    if quantization_config is not None:
        if not torch.cuda.is_available():
            raise DLMError("quantised loading (--finetune qlora, --load_in_4bit, --load_in_8bit) needs a CUDA GPU "
                           "(bitsandbytes); use --finetune lora or full on this machine")
        from trl import get_kbit_device_map

        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = get_kbit_device_map()
    return from_pretrained(AutoModelForCausalLM, model_id, **kwargs)


def adapter_base(path: str | Path) -> str | None:
    """The base model a LoRA adapter folder was trained on (None when `path` is not an adapter)."""
    config = Path(path) / "adapter_config.json"
    return json.loads(config.read_text())["base_model_name_or_path"] if config.exists() else None


def load_causal_lm(model_id: str, token: str | None = None, dtype: str | None = None,
                   quantization_config: Any = None):
    """(model, tokenizer) ready for inference on the best device; a LoRA adapter is merged into its base."""
    import torch

    quiet_progress_bars()
    path = Path(model_id)
    base_id = adapter_base(path)
    model = load_model(base_id or model_id, token, dtype, quantization_config=quantization_config)
    if base_id:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(path))
        if quantization_config is None:
            model = model.merge_and_unload()
    tok_source = str(path) if base_id is None or (path / "tokenizer_config.json").exists() else base_id
    tokenizer = load_tokenizer(tok_source, token)
    tokenizer.padding_side = "left"
    if quantization_config is None:
        model = model.to("cuda" if torch.cuda.is_available() else "cpu")
    return model.eval(), tokenizer


def length_order(lengths: list[int]) -> list[int]:
    """Indices sorted by decreasing length (stable): the longest batch first, so out-of-memory shows at once."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def generate(model, tokenizer, conversations: list[list[dict]], params: Any, batch_size: int = 8,
             seed_offset: int = 0, sort_by_length: bool = True) -> list[str]:
    """Replies to each conversation in the given order, batched, greedy when temperature is 0.

    Greedy batches are filled longest prompt first, so a batch pads little; sampled decoding keeps
    the given order (its random draws follow the batch layout, and a seed must give the same answers).
    """
    import torch

    prompts = [render_prompt(c) for c in conversations]
    sample = params.temperature > 0
    order = list(range(len(prompts)))
    if sort_by_length and not sample:
        order = length_order([len(ids) for ids in tokenizer(prompts)["input_ids"]])
    out: list[str | None] = [None] * len(prompts)
    if params.seed is not None:
        torch.manual_seed(params.seed + seed_offset)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=params.max_tokens, do_sample=sample,
                                 temperature=params.temperature if sample else None,
                                 top_p=params.top_p if sample else None, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, stop_strings=list(STOP_STRINGS),
                                 tokenizer=tokenizer)
        new = ids[:, enc["input_ids"].shape[1]:]
        for i, row in zip(idx, new, strict=True):
            out[i] = truncate_at_stop(tokenizer.decode(row, skip_special_tokens=True))
    return out  # type: ignore[return-value]


def sequence_logprobs(model, tokenizer, prompts: list[str], completions: list[str], batch_size: int = 16,
                      add_eos: bool = True, check_boundary: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(sum, token count) of each completion's log-probs given its prompt (EOS appended when `add_eos`).

    The completion's tokens are those after the prompt's own tokens; with `check_boundary` a completion
    whose first token merges with the prompt's last is an error rather than a silently shifted span.
    Batches are filled longest sequence first (little padding); results come back in the given order.
    """
    import torch

    enc_p = [tokenizer(p)["input_ids"] for p in prompts]
    enc_f = [tokenizer(p + c)["input_ids"] + ([tokenizer.eos_token_id] if add_eos else [])
             for p, c in zip(prompts, completions, strict=True)]
    if check_boundary and any(f[:len(p)] != p for p, f in zip(enc_p, enc_f, strict=True)):
        raise DLMError("option tokens merge with the prompt; end the prompt on a token boundary")
    sums, counts = np.zeros(len(enc_f)), np.array([len(f) - len(p) for p, f in zip(enc_p, enc_f, strict=True)])
    order = length_order([len(f) for f in enc_f])
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(enc_f[i]) for i in idx)
        ids = torch.full((len(idx), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):
            ids[row, :len(enc_f[i])], mask[row, :len(enc_f[i])] = torch.tensor(enc_f[i]), 1
        ids, mask = ids.to(model.device), mask.to(model.device)
        # Only positions that predict a completion token: from the batch's shortest prompt on (a judge's
        # verdict is a few tokens after a long prompt; the full-vocabulary soft-max of the rest is waste).
        first = max(min(len(enc_p[i]) for i in idx) - 1, 0)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=width - first).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        token_lp = logp.gather(-1, ids[:, first + 1:, None])[..., 0]
        for row, i in enumerate(idx):
            sums[i] = float(token_lp[row, len(enc_p[i]) - 1 - first:len(enc_f[i]) - 1 - first].sum())
    return sums, counts


def option_logprobs(model, tokenizer, conversations: list[list[dict]], options: list[str],
                    batch_size: int = 8) -> list[list[float]]:
    """Total log-probability of each option text as the assistant's reply, per conversation (batched across them)."""
    prompts = [render_prompt(m) for m in conversations]
    k = len(options)
    sums, _ = sequence_logprobs(model, tokenizer, [p for p in prompts for _ in options],
                                [" " + o for _ in prompts for o in options], batch_size=batch_size,
                                add_eos=False, check_boundary=True)
    return [sums[j * k:(j + 1) * k].tolist() for j in range(len(prompts))]
