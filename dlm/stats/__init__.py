"""Statistics: win rates and intervals, Bradley–Terry, pooling, power, post-stratification, re-analysis."""

from dlm.stats.bradley_terry import BTFit, mle_exists, fit, intervals
from dlm.stats.pooling import ContrastDesign, contrast_design, pooled_estimates, pooled_contrast
from dlm.stats.poststrat import (Interval, RakingWeights, rake, population_weights, weighted_cluster_interval, paired_difference)
from dlm.stats.power import PowerDesign, PowerResult, power_at, minimum_detectable_effect, design_from_summary
from dlm.stats.reanalysis import load_records, summarize
from dlm.stats.winrates import (combine_orders, majority, cluster_t_interval, replicate_anova, replicate_table, wilson_interval, sign_test,
                                holm, length_controlled, bradley_terry, summarise, arm_contrasts, bt_with_intervals, json_ready, model_pairs)
