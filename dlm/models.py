"""Loading and running local causal LMs: full checkpoints, LoRA adapter folders, or Hub ids.

Generation uses the tokenizer's chat template (the plain-text dialogue template saved at
training) and stops at EOS or at the template's next user turn; every model gets the same
decoding settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlm.errors import DLMError
from dlm.template import STOP_STRINGS, render_prompt, truncate_at_stop


def load_causal_lm(model_id: str, token: str | None = None, dtype: str | None = None):
    """(model, tokenizer) for a folder or Hub id; a LoRA adapter folder is loaded on its base model."""
    import torch
    from transformers import AutoModelForCausalLM

    from dlm.training import from_pretrained, load_tokenizer, quiet_progress_bars

    quiet_progress_bars()
    path = Path(model_id)
    torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        base_id = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        base = from_pretrained(AutoModelForCausalLM, base_id, dtype=torch_dtype, token=token)
        model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
        tok_source = str(path) if (path / "tokenizer_config.json").exists() else base_id
    else:
        model = from_pretrained(AutoModelForCausalLM, model_id, dtype=torch_dtype, token=token)
        tok_source = model_id
    tokenizer = load_tokenizer(tok_source, token)
    tokenizer.padding_side = "left"
    return model.to(device).eval(), tokenizer


def generate(model, tokenizer, conversations: list[list[dict]], params: Any, batch_size: int = 8,
             seed_offset: int = 0) -> list[str]:
    """Replies to each conversation, batched, greedy when temperature is 0."""
    import torch

    out: list[str] = []
    if params.seed is not None:
        torch.manual_seed(params.seed + seed_offset)
    for start in range(0, len(conversations), batch_size):
        prompts = [render_prompt(c) for c in conversations[start:start + batch_size]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
        sample = params.temperature > 0
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=params.max_tokens, do_sample=sample,
                                 temperature=params.temperature if sample else None,
                                 top_p=params.top_p if sample else None, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, stop_strings=list(STOP_STRINGS),
                                 tokenizer=tokenizer)
        new = ids[:, enc["input_ids"].shape[1]:]
        out += [truncate_at_stop(tokenizer.decode(row, skip_special_tokens=True)) for row in new]
    return out


def option_logprobs(model, tokenizer, messages: list[dict], options: list[str]) -> list[float]:
    """Total log-probability of each option text as the assistant's reply to `messages`."""
    import torch

    prompt = render_prompt(messages)
    prompt_ids = tokenizer(prompt)["input_ids"]
    scores = []
    for option in options:
        ids = tokenizer(prompt + " " + option)["input_ids"]
        if ids[:len(prompt_ids)] != prompt_ids:
            raise DLMError("option tokens merge with the prompt; end the prompt on a token boundary")
        x = torch.tensor([ids], device=model.device)
        with torch.no_grad():
            logp = torch.log_softmax(model(x).logits[0, :-1].float(), dim=-1)
        target = x[0, 1:]
        token_lp = logp[torch.arange(len(target)), target][len(prompt_ids) - 1:]
        scores.append(float(token_lp.sum()))
    return scores
