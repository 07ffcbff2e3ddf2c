"""Stage 04: weighted DPO, the training entry point, model loading and log-probs, and the tiny test model."""

from dlm.training.models import (quiet_progress_bars, from_pretrained, load_tokenizer, torch_dtype, load_model, adapter_base, load_causal_lm,
                                 length_order, generate, sequence_logprobs, option_logprobs)
from dlm.training.tiny_model import default_corpus, train_tokenizer, make_tiny_model
from dlm.training.train_dpo import (load_recipe, canonical_settings, split_settings, model_config, load_preference_rows, as_prompt_text,
                                    as_completion_text, hf_token, train, distribution, budget)
from dlm.training.weighted_dpo import WeightedPreferenceCollator, WeightedDPOTrainer
