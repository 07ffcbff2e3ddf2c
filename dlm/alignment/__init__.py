"""Stage 07: held-out accuracy of each model on each rater group's preferences."""

from dlm.alignment.heldout import (eval_pairs, pair_margins, HeldOutScores, score_models, agreement, accuracy_by_arm, style_by_arm,
                                   formal_won_share, style_preference, group_columns, accuracy_by_group, accuracy_table, PopulationAccuracy,
                                   population_accuracy, arm_agreement, paired_by_group, PlantedSpec, planted_spec, older_target_share,
                                   PlantedVerdict, planted_verdict, write_summary)
