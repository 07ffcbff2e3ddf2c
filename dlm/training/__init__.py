"""Stage 04: weighted DPO, the training entry point, model loading and log-probs, and the tiny test model.

The public names below resolve on first use (PEP 562): `train_dpo` and `weighted_dpo` import TRL and
`models` imports torch, which a step that only reads a recipe or scores nothing should not pay for.
"""

from dlm import lazy_exports

__all__, __getattr__ = lazy_exports(__name__, {
    "dlm.training.models": ("quiet_progress_bars", "from_pretrained", "load_tokenizer", "torch_dtype", "load_model",
                            "adapter_base", "load_causal_lm", "length_order", "generate", "sequence_logprobs",
                            "option_logprobs"),
    "dlm.training.tiny_model": ("default_corpus", "train_tokenizer", "make_tiny_model"),
    "dlm.training.recipes": ("load_recipe", "canonical_settings"),
    "dlm.training.train_dpo": ("split_settings", "model_config",
                               "load_preference_rows", "hf_token", "train",
                               "distribution", "budget"),
    "dlm.training.weighted_dpo": ("WeightedPreferenceCollator", "WeightedDPOTrainer"),
})
