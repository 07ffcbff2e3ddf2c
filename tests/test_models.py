"""dlm.training.models: batched answers come back in order and equal unsorted ones; log-probs do not depend on batching."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

from dlm.training import tiny_model

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    from dlm.training.models import load_causal_lm
    from dlm.training.tiny_model import make_tiny_model

    path = make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0, warmup_steps=20)
    return load_causal_lm(str(path))


def test_length_sorted_answers_equal_unsorted_and_unbatched_ones(lm):
    from dlm.llm.backends import GenerationParams
    from dlm.training.models import generate

    model, tok = lm
    convs = [[{"role": "user", "content": "Can you help me with travel? " * n}] for n in (1, 6, 2, 9, 3, 1, 7)]
    params = GenerationParams(temperature=0.0, max_tokens=6, seed=0)
    unsorted = generate(model, tok, convs, params, batch_size=3, sort_by_length=False)
    assert generate(model, tok, convs, params, batch_size=3, sort_by_length=True) == unsorted
    assert generate(model, tok, convs[:3], params, batch_size=1) == unsorted[:3]


def test_sequence_logprobs_do_not_depend_on_batching_and_score_options(lm):
    from dlm.training.models import option_logprobs, sequence_logprobs
    from dlm.preferences.template import render_prompt

    model, tok = lm
    prompts = [render_prompt([{"role": "user", "content": "Hi " * n}]) for n in (1, 5, 2)]
    completions = [" Certainly. Book early.", " Sure!", " Certainly. Keep a regular bedtime and rest."]
    sums, counts = sequence_logprobs(model, tok, prompts, completions, batch_size=3)
    one = [sequence_logprobs(model, tok, [p], [c], batch_size=1) for p, c in zip(prompts, completions, strict=True)]
    np.testing.assert_allclose(sums, [s[0][0] for s in one], atol=1e-4)
    assert list(counts) == [c[1][0] for c in one] and all(sums < 0)
    # against the definition: full logits, log-soft-max, the completion's tokens (EOS appended)
    import torch

    p_ids = tok(prompts[1])["input_ids"]
    f_ids = tok(prompts[1] + completions[1])["input_ids"] + [tok.eos_token_id]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([f_ids])).logits[0].float(), dim=-1)
    direct = sum(float(logp[t - 1, f_ids[t]]) for t in range(len(p_ids), len(f_ids)))
    assert sums[1] == pytest.approx(direct, abs=1e-4)
    conversations = [[{"role": "user", "content": "Which is better? " * n}] for n in (1, 7, 3)]
    scores = option_logprobs(model, tok, conversations, ["[[A]]", "[[B]]"], batch_size=4)  # batches mix conversations
    for messages, pair in zip(conversations, scores, strict=True):
        alone, _ = sequence_logprobs(model, tok, [render_prompt(messages)], [" [[B]]"], add_eos=False)
        assert pair[1] == pytest.approx(alone[0], abs=1e-4)
        assert option_logprobs(model, tok, [messages], ["[[A]]", "[[B]]"])[0] == pytest.approx(pair, abs=1e-4)


def test_vllm_backend_without_vllm_is_one_clear_error():
    import importlib.util

    from dlm.errors import DLMError
    from dlm.llm.factory import make_backend

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(DLMError, match="needs vLLM"):
        make_backend("vllm", "some/model")


def test_the_tiny_models_corpus_holds_the_shipped_constitution():
    """The tokenizer learns the clauses' words too (they are judged and asked about in every profile)."""
    clauses = [line.strip() for line in (ROOT / "constitution.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert set(clauses) <= set(tiny_model.default_corpus(n_dialogues=4))
