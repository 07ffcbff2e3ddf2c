"""Stage 03: preference datasets from PRISM and a panel, training rows, and the dialogue template."""

from dlm.preferences.build import (PrepareOptions, PreferenceData, build_pairs, conversation_context, prompt_messages, split_of, rater_weights,
                                   build_dataset, normalise_weights, resample_to_panel_size, kish_ess, prepare, dataset_composition)
from dlm.preferences.rows import Counts, shorten_history, fit_rows, trl_rows, length_filter_report, by_category
from dlm.preferences.template import as_completion_text, as_prompt_text, render_prompt, render_completion, truncate_at_stop
