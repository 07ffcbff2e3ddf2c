"""The held-out raters: a rater-disjoint evaluation set, stratified, set aside before sortition.

`--split-by rater` (the default) holds out a fraction `--eval-ratio` of PRISM's raters (survey
participants with conversations). The choice depends only on the survey and the split seed, never
on a panel config, so every arm and every command (`dlm prepare`, `dlm sortition`) holds out the
same people. It is stratified by the survey attributes in STRATIFY_BY: every category of each of
them with at least two raters gets held-out raters (a category of one rater keeps that rater for
training, and the split report names it), and each category holds out close to its share.

Held-out raters are removed from the survey *before* any panel is drawn or any π is computed, so no
arm's training data contains them: `training_survey` is the pool every mode selects from.

`--split-by interaction` keeps the older split (hash of the interaction id): raters then appear on
both sides, which the manifest reports as a non-zero overlap.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import pandas as pd

from dlm.errors import DLMError

SPLIT_BY = ("rater", "interaction")
# One fixed set for every command and arm, independent of any panel config (us_rep and full take
# none): where people live and the demographics every panel config in configs/ sets quotas on.
STRATIFY_BY = ("study_locale", "gender", "age", "education")


@dataclass(frozen=True)
class HeldOut:
    """The held-out raters of one (ratio, seed) and how they cover the strata."""

    raters: tuple[str, ...]
    eligible: int
    ratio: float
    seed: int
    stratify_by: tuple[str, ...] = STRATIFY_BY
    uncovered: dict[str, list[str]] = field(default_factory=dict)

    def report(self) -> dict:
        """The manifest's `split` section (without the overlap, which depends on the rows)."""
        return {"by": "rater", "eval_ratio": self.ratio, "split_seed": self.seed,
                "stratify_by": list(self.stratify_by), "eligible_raters": self.eligible,
                "heldout_raters": len(self.raters), "categories_without_heldout_raters": self.uncovered,
                "heldout_rater_ids": list(self.raters)}


def check_split(split_by: str, eval_ratio: float) -> None:
    """Raise DLMError for split options that cannot work."""
    if split_by not in SPLIT_BY:
        raise DLMError(f"--split-by must be one of {', '.join(SPLIT_BY)}, got {split_by!r}")
    if not 0 <= eval_ratio < 1:
        raise DLMError(f"--eval-ratio must be in [0, 1), got {eval_ratio}")


def _rank(seed: int, key: str) -> int:
    """A seed-dependent pseudo-random order that does not depend on the survey's row order."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def _labels(survey: pd.DataFrame, column: str) -> pd.Series:
    if column not in survey.columns:
        raise DLMError(f"survey has no column '{column}', needed to stratify the held-out raters "
                       f"(dlm.split.STRATIFY_BY); use --split-by interaction for a survey without it")
    return survey[column].astype(object).where(survey[column].notna(), "<missing>").astype(str)


def heldout_raters(survey: pd.DataFrame, ratio: float, seed: int = 0) -> HeldOut:
    """Choose about `ratio` of the raters, covering every category of STRATIFY_BY, deterministically.

    Raters are visited in a seeded hash order. First, for each attribute and each category with at
    least two raters, the first rater of that category is held out unless the category already has
    one. No category ever gives up its last rater. Then raters are added in order while every one
    of their categories is below its share (⌈ratio × category size⌉), up to ⌈ratio × raters⌉ in all;
    if the shares leave the total short, the next raters in order fill it.
    """
    check_split("rater", ratio)
    active = survey[~survey["survey_only"].astype(bool) & (survey["num_completed_conversations"] > 0)]
    ids = active["user_id"].astype(str).to_numpy()
    if ratio <= 0 or len(ids) == 0:
        return HeldOut((), len(ids), ratio, seed)
    labels = pd.DataFrame({c: _labels(active, c).to_numpy() for c in STRATIFY_BY}, index=ids)
    order = sorted(ids, key=lambda u: (_rank(seed, u), u))
    labels = labels.loc[order]
    cats = {u: dict(zip(STRATIFY_BY, row, strict=True)) for u, row in zip(order, labels.to_numpy().tolist(),
                                                                          strict=True)}
    size = {c: labels[c].value_counts().to_dict() for c in STRATIFY_BY}
    taken = {c: dict.fromkeys(size[c], 0) for c in STRATIFY_BY}
    chosen: dict[str, None] = {}

    def take(u: str) -> None:
        chosen[u] = None
        for c in STRATIFY_BY:
            taken[c][cats[u][c]] += 1

    def spare(u: str) -> bool:
        # never hold out a category's last training rater: its quota could not be met without them
        return all(taken[c][cats[u][c]] < size[c][cats[u][c]] - 1 for c in STRATIFY_BY)

    for c in STRATIFY_BY:
        for cat in sorted(size[c]):
            if size[c][cat] >= 2 and taken[c][cat] == 0:
                first = next((u for u in order if cats[u][c] == cat and u not in chosen and spare(u)), None)
                if first is not None:
                    take(first)
    target = math.ceil(ratio * len(ids))
    for u in order:
        if len(chosen) >= target:
            break
        if u not in chosen and spare(u) and all(taken[c][cats[u][c]] < math.ceil(ratio * size[c][cats[u][c]])
                                                for c in STRATIFY_BY):
            take(u)
    for u in order:
        if len(chosen) >= target:
            break
        if u not in chosen and spare(u):
            take(u)
    uncovered = {c: sorted(k for k in size[c] if taken[c][k] == 0) for c in STRATIFY_BY}
    return HeldOut(tuple(sorted(chosen)), len(ids), ratio, seed, STRATIFY_BY,
                   {c: v for c, v in uncovered.items() if v})


def training_survey(survey: pd.DataFrame, eval_ratio: float, split_by: str = "rater",
                    split_seed: int = 0) -> tuple[pd.DataFrame, HeldOut | None]:
    """The survey without the held-out raters (the pool panels and π are computed over), and who they are."""
    check_split(split_by, eval_ratio)
    if split_by != "rater":
        return survey, None
    held = heldout_raters(survey, eval_ratio, split_seed)
    keep = ~survey["user_id"].astype(str).isin(set(held.raters))
    return survey[keep], held
