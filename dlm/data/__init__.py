"""Stage 01: PRISM loading, the generated sample, and the held-out split."""

from dlm.data.prism import (PrismData, load_prism, load_table, load_survey, read_prism_jsonl, records_to_frame, validate_records,
                            LinkCheck, check_links, flatten_survey, load_prism_hub, resolve_column, value_counts, format_value_counts)
from dlm.data.split import HeldOut, check_split, heldout_raters, training_survey
from dlm.data.synth import (Scale, generate_sample, preference_spec, synthetic_notice, make_survey, style_score_effect, response_text,
                            make_conversations)
