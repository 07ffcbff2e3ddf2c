"""Notebook helpers: plots and the interactive quota tuner."""

from dlm.notebook.plots import (shares_vs_targets, subset_vs_pool, composition_plot, probability_distributions, dataset_overview,
                                dataset_composition, training_curves, forest, clause_win_rates, bradley_terry_plot, consistency_and_length,
                                accuracy_by_group, accuracy_overall, question_diversity)
from dlm.notebook.tables import ContrastTable, accuracy_table, contrast_table
from dlm.notebook.tuner import figure_png, QuotaTuner
