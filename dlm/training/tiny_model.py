"""A tiny Llama-architecture model with a locally trained tokenizer, for the demo and tests.

Same code paths as Llama 3.1 8B (LlamaForCausalLM, a fast BPE tokenizer with BOS/EOS/pad and the
plain-text dialogue template), small enough that DPO steps take milliseconds on a CPU. An
optional warm-up on a corpus makes it emit words rather than noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlm.data import synth
from dlm.errors import DLMError
from dlm.io import write_json_atomic
from dlm.preferences.template import CHAT_TEMPLATE, render_completion, render_prompt

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"


def default_corpus(seed: int = 0, n_dialogues: int = 600) -> list[str]:
    """Dialogues in the template built from the generated sample's prompts and both answer styles."""
    rng = np.random.default_rng(seed)
    texts = []
    topics = list(synth.TOPICS)
    for i in range(n_dialogues):
        topic = topics[i % len(topics)]
        prompt = f"Can you help me with {synth.TOPICS[topic][0]}?"
        style = synth.STYLES[i % 2]
        reply = synth.response_text(rng, topic, style, 0)
        texts.append(render_prompt([{"role": "user", "content": prompt}]) + render_completion(reply))
    constitution = Path(__file__).resolve().parents[2] / "constitution.txt"  # the checkout holding dlm/
    if constitution.exists():
        texts += [line.strip() for line in constitution.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts


def train_tokenizer(texts: list[str], vocab_size: int = 1024):
    """A byte-level BPE tokenizer (no UNK possible) with Llama-style special tokens and our template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, bos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_model(output_dir: str | Path, seed: int = 0, corpus: str | Path | None = None, hidden_size: int = 64,
                    layers: int = 2, heads: int = 4, vocab_size: int = 1024, warmup_steps: int = 200) -> Path:
    """Write a tiny float32 LlamaForCausalLM and its tokenizer to `output_dir`.

    Args:
        output_dir: folder for config, weights, tokenizer (with the dialogue template).
        seed: the same seed and corpus give the same weights.
        corpus: text file (one document per line) for the tokenizer and warm-up; default: the
            generated sample's dialogue style.
        warmup_steps: causal-LM steps on the corpus so the model emits words (0 = random weights).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden_size % heads:
        raise DLMError(f"hidden size {hidden_size} must be divisible by heads {heads}")
    if corpus is not None:
        path = Path(corpus)
        if not path.is_file():
            raise DLMError(f"corpus {path} not found")
        texts = [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
        if not texts:
            raise DLMError(f"corpus {path} is empty")
    else:
        texts = default_corpus(seed)
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(texts, vocab_size)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=1024, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config).float()
    if warmup_steps:
        _warm_up(model, tokenizer, texts, warmup_steps, seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_json_atomic(out / "tiny_model.json", {"seed": seed, "hidden_size": hidden_size, "layers": layers,
                                                "heads": heads, "vocab_size": len(tokenizer),
                                                "warmup_steps": warmup_steps, "corpus": str(corpus) if corpus else
                                                "dlm.tiny_model.default_corpus"})
    return out


def _warm_up(model, tokenizer, texts: list[str], steps: int, seed: int, batch_size: int = 16) -> None:
    """A short causal-LM training loop (AdamW) on the corpus, EOS appended to each document."""
    import torch

    rng = np.random.default_rng(seed)
    encoded = [tokenizer(t + EOS)["input_ids"][:128] for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = [encoded[i] for i in rng.integers(0, len(encoded), batch_size)]
        width = max(len(b) for b in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for j, b in enumerate(batch):
            ids[j, :len(b)], mask[j, :len(b)] = torch.tensor(b), 1
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
