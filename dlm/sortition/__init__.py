"""Sortition: quota-constrained panels from a pool of people, and each person's selection probability.

A component usable on its own (it imports nothing LLM-related): the pool is PRISM's survey, any
CSV/JSONL table with an id column and the quota columns, or the Sortition Foundation's
`categories.csv` + `respondents.csv`.

Algorithms:
- `legacy`: the Sortition Foundation's greedy (most urgent category first, a uniformly random
  remaining member of it, categories closed at their maximum). Failed draws are retried with fresh
  randomness, so probabilities are *conditional on success*; the failure rate is reported.
  Probabilities are Monte Carlo estimates over N panels, vectorised across panels.
- `leximin`: Flanigan et al. (Nature 2021) on HiGHS (scipy, highspy), certified level by level:
  each level's value is reached by a mixture of known panels and lies within `gap_tol` of a
  proven upper bound (see `dlm.sortition.leximin`), or the run fails with LeximinNotConverged.
- `random`: uniform over quota-feasible panels by rejection sampling (for debugging).

Modules: config (panel YAML), pool (encoding, PRISM filters), readers (pool files, the
Sortition Foundation format), feasibility (exact ILP, fixes), legacy, relaxation and leximin,
select (entry point, outputs), results (typed diagnostics), highs (a quiet HiGHS model), tuning
(notebook 02's quota tuner without widgets).
"""

from dlm.sortition.config import (PROPORTION_SLACK, Attribute, PanelConfig, load_panel_config, parse_panel_config,
                                  quota_range)
from dlm.sortition.feasibility import (FeasibilityReport, PricedPanel, Types, best_panel, feasibility_report,
                                       is_feasible, pool_types, require_feasible)
from dlm.sortition.legacy import MonteCarlo, legacy_panels, random_panels
from dlm.sortition.leximin import Leximin, leximin
from dlm.sortition.pool import Pool, PoolReport, build_pool
from dlm.sortition.readers import (PoolSource, load_pool_source, read_categories, read_csv_table, read_pool_table,
                                   read_respondents)
from dlm.sortition.results import LeximinLevel, LeximinNotConverged, ProbabilitySummary, SelectionDiagnostics
from dlm.sortition.select import (ALGORITHMS, Selection, composition, gini, panel_tables, probability_summary, select,
                                  read_selection, write_csv, write_selection)
from dlm.sortition.tuning import QuotaCheck, TunedRun, check_quotas, renormalise, run_algorithm, save_panel_config

__all__ = [
    "ALGORITHMS", "PROPORTION_SLACK", "Attribute", "FeasibilityReport", "Leximin", "LeximinLevel",
    "LeximinNotConverged", "MonteCarlo", "PanelConfig", "Pool", "PoolReport", "PoolSource", "PricedPanel",
    "ProbabilitySummary", "QuotaCheck", "Selection", "SelectionDiagnostics", "TunedRun", "Types", "best_panel", "build_pool", "check_quotas", "composition",
    "feasibility_report", "gini", "is_feasible", "legacy_panels", "leximin", "load_panel_config",
    "load_pool_source",
    "panel_tables", "parse_panel_config", "pool_types", "probability_summary", "quota_range", "random_panels",
    "read_categories", "read_csv_table", "read_pool_table", "read_respondents", "renormalise", "require_feasible", "run_algorithm", "save_panel_config", "select",
    "read_selection", "write_csv", "write_selection",
]
