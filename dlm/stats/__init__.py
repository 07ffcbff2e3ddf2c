"""Statistics: win rates and intervals, Bradley–Terry, pooling over draws and seeds, power, post-stratification, re-analysis, rank aggregation."""

from dlm.stats.bradley_terry import BTFit, mle_exists, fit, intervals
from dlm.stats.pooling import ContrastDesign, contrast_design, pooled_estimates, pooled_contrast
from dlm.stats.poststrat import (Interval, RakingWeights, rake, population_weights, weighted_cluster_interval, paired_difference)
from dlm.stats.power import PowerDesign, PowerResult, contrast_mde, design_from_summary, minimum_detectable_effect, power_at
from dlm.stats.ranking import RankingError, RankingSummary, load_rankings, summarize_rankings
from dlm.stats.reanalysis import load_records, summarize
from dlm.stats.winrates import (combine_orders, majority, cluster_t_interval, replicate_anova, replicate_table, wilson_interval, sign_test,
                                holm, length_controlled, summarise, arm_contrasts, bt_with_intervals, json_ready, model_pairs)
