"""Rank aggregation for listwise judgments: Plackett–Luce, Borda, Copeland, Kemeny, Mallows, IIA, position bias.

Imports only numpy, scipy and the standard library (no other `dlm` module), so it can move as a unit.
"""

from dlm.stats.ranking.aggregate import rank_correlation
from dlm.stats.ranking.records import RankingData, RankingError, RankingRecord, encode, load_rankings, parse_record, to_dict
from dlm.stats.ranking.simulate import balanced_display_orders, simulate_rankings
from dlm.stats.ranking.summary import RankingSummary, summarize_rankings

__all__ = [
    "RankingData", "RankingError", "RankingRecord", "RankingSummary", "balanced_display_orders", "encode",
    "load_rankings", "parse_record", "rank_correlation", "simulate_rankings", "summarize_rankings", "to_dict",
]
