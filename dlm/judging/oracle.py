"""A known-answer judge for the generated sample: it judges as a named group of the sample's raters.

`dlm synth` writes the sample's generating preference rule beside it (`oracle_spec.json`: the
styles, the marker each style's responses open with, and each rater group's score effect per
style). The oracle judge reads that spec and nothing else about styles: shown two answers, it
gives each the score effect its group attaches to the answer's style (0 for an answer with no
marker), optionally plus Gaussian noise, and prefers the higher score; equal scores are a tie.
With `bias` it picks the first shown answer that often regardless, so tests can check that the
both-orders rule removes position bias.

Judge names: `oracle:GROUP`, optionally `oracle:GROUP,bias=P,noise=SD` (P in [0, 1], SD in score
points; the sample's own rater noise is the spec's `score_noise`). Its replies are ordinary
`[[A]]`/`[[B]]`/`[[C]]` verdicts, so its judgments go through the same records, both-orders rule
and statistics as an LLM judge's; each oracle judge is evaluated on its own (never pooled into a
majority or a Bradley–Terry fit with other judges).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlm.errors import DLMError
from dlm.llm.backends import Backend, Reply

SPEC_KIND = "dlm-synth-preference-rule"
_LIST_ANSWERS = re.compile(r"\[Answer ([A-Z])\]\n(.*?)\n\[End of Answer \1\]", re.S)
_ANSWERS = re.compile(r"\[Answer A\]\n(.*?)\n\[End of Answer A\].*?\[Answer B\]\n(.*?)\n\[End of Answer B\]", re.S)


@dataclass(frozen=True)
class OracleRule:
    """The generating rule of a generated sample, as read from its spec."""

    markers: dict[str, tuple[str, ...]]  # style -> markers
    match: dict[str, str]  # style -> "prefix" | "contains"
    attribute: str  # the survey attribute that defines the groups
    groups: dict[str, dict[str, Any]]  # group -> {"values": [...], "style_effect": {style: points}}
    score_noise: float
    path: str = ""
    digest: str = ""  # sha256 of the spec file (first 16 hex digits)

    def style_of(self, text: str) -> str | None:
        """The style whose marker the text opens with (or contains, per the spec); None if none does."""
        t = text.strip()
        for style, markers in self.markers.items():
            hit = t.startswith if self.match.get(style, "prefix") == "prefix" else t.__contains__
            if any(hit(m) for m in markers):
                return style
        return None

    def effect(self, group: str, text: str) -> float:
        """The score points `group` adds to a response with this text."""
        style = self.style_of(text)
        return float(self.groups[group]["style_effect"].get(style, 0.0)) if style else 0.0

    def group_of(self, value: Any) -> str | None:
        """The group a rater with this attribute value belongs to (None: in no group)."""
        return next((g for g, spec in self.groups.items() if value in spec["values"]), None)


def load_spec(path: str | Path | None) -> OracleRule:
    """Read and check a generated sample's `oracle_spec.json`; the oracle refuses to run without one."""
    if not path:
        raise DLMError("the oracle judge needs the generated sample's rule: pass --oracle-spec "
                       "SAMPLE/oracle_spec.json (written by `python -m dlm synth`)")
    p = Path(path)
    if not p.is_file():
        raise DLMError(f"oracle spec {p} not found; run `python -m dlm synth --output {p.parent}` to write it "
                       "(real PRISM has no known answer: the oracle judge only works on a generated sample)")
    try:
        spec = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DLMError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict) or spec.get("kind") != SPEC_KIND:
        raise DLMError(f"{p}: not a generated sample's preference rule (field `kind` must be '{SPEC_KIND}')")
    try:
        styles, groups = spec["styles"], spec["groups"]
        rule = OracleRule(markers={s: tuple(v["markers"]) for s, v in styles.items()},
                          match={s: v.get("match", "prefix") for s, v in styles.items()},
                          attribute=str(spec["group_attribute"]),
                          groups={g: {"values": list(v["values"]), "style_effect": {k: float(x) for k, x in
                                                                                     v["style_effect"].items()}}
                                  for g, v in groups.items()},
                          score_noise=float(spec.get("score_noise", 0.0)), path=str(p),
                          digest=hashlib.sha256(p.read_bytes()).hexdigest()[:16])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise DLMError(f"{p}: malformed preference rule ({exc!r}); regenerate it with `python -m dlm synth`") from None
    bad = {m for m in rule.match.values()} - {"prefix", "contains"}
    if bad or not rule.markers or not rule.groups:
        raise DLMError(f"{p}: needs styles with markers (match prefix|contains) and at least one group")
    return rule


def parse_judge_name(name: str) -> tuple[str, float, float]:
    """`oracle:GROUP[,bias=P][,noise=SD]` -> (group, position bias, noise SD)."""
    if not name.startswith("oracle:"):
        raise DLMError(f"oracle judge '{name}': name it oracle:GROUP (e.g. oracle:55+), optionally ,bias=P,noise=SD")
    group, *options = name[len("oracle:"):].split(",")
    values = {"bias": 0.0, "noise": 0.0}
    for opt in options:
        key, _, value = opt.partition("=")
        try:
            values[key] = float(value) if key in values else float("nan")
        except ValueError:
            values[key] = float("nan")
        if key not in ("bias", "noise") or not np.isfinite(values[key]):
            raise DLMError(f"oracle judge '{name}': unknown option '{opt}'; use bias=P (0-1) and noise=SD (points)")
    if not 0.0 <= values["bias"] <= 1.0 or values["noise"] < 0:
        raise DLMError(f"oracle judge '{name}': bias must be in [0, 1] and noise >= 0")
    return group, values["bias"], values["noise"]


def _unit(*parts: Any) -> float:
    """A deterministic uniform number in [0, 1) from the parts (so reruns give identical verdicts)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class OracleJudge(Backend):
    """Judges as group `group` of the generated sample's raters would, by the sample's own rule."""

    rule: OracleRule = field(default=None)  # type: ignore[assignment]
    seed: int = 0
    name: str = "oracle"

    def __post_init__(self):
        super().__post_init__()
        self.group, self.bias, self.noise = parse_judge_name(self.model)
        # Stored verdicts are reused only under the same rule: the identity names the spec's content.
        self.identity = f"{self.model}@{self.rule.digest}"
        if self.group not in self.rule.groups:
            raise DLMError(f"oracle judge '{self.model}': group '{self.group}' is not in {self.rule.path} "
                           f"(groups: {', '.join(self.rule.groups)})")

    def verdict(self, first: str, second: str, context: str = "") -> str:
        """'A' (first shown), 'B' or 'C' (tie) for two answers; `context` (the question) seeds bias and noise."""
        if self.bias and _unit(self.seed, self.model, "bias", context, first, second) < self.bias:
            return "A"
        a, b = self.rule.effect(self.group, first), self.rule.effect(self.group, second)
        if self.noise:
            # An answer's noise depends on the pair and the answer, not on where it is shown: like a
            # rater's score of a response, it is noise about the group's rule, not position bias.
            pair = sorted((first, second))
            a += self.noise * _normal(self.seed, self.model, context, *pair, first)
            b += self.noise * _normal(self.seed, self.model, context, *pair, second)
        return "A" if a > b else "B" if b > a else "C"

    def ranking(self, answers: list[str], context: str = "") -> list[list[int]]:
        """Display positions grouped best first (equal scores tied); with `bias`, sometimes the display order itself."""
        if self.bias and _unit(self.seed, self.model, "bias", context, *answers) < self.bias:
            return [[i] for i in range(len(answers))]
        scores = [self.rule.effect(self.group, a) for a in answers]
        if self.noise:  # an answer's noise depends on the question and the answer, not on where it is shown
            scores = [s + self.noise * _normal(self.seed, self.model, context, a) for s, a in zip(scores, answers)]
        return [[i for i, s in enumerate(scores) if s == level] for level in sorted(set(scores), reverse=True)]

    def _complete(self, batch, params, attempt, progress) -> list[Reply | Exception]:
        out: list[Reply | Exception] = []
        for messages in batch:
            prompt = messages[-1]["content"]
            if '{"ranking"' in prompt:  # a listwise prompt (dlm.judging.listwise.list_messages): rank them all
                blocks = _LIST_ANSWERS.findall(prompt)
                labels, answers = [b[0] for b in blocks], [b[1] for b in blocks]
                groups = self.ranking(answers, prompt[:prompt.find("[Answer A]")])
                out.append(Reply(text=json.dumps({"ranking": [[labels[i] for i in g] for g in groups]})))
                continue
            found = _ANSWERS.search(prompt)
            if found is None:
                raise DLMError("the oracle judge reads judge prompts with [Answer A] ... [End of Answer B] blocks "
                               "(dlm.evaluation.judge_messages); this prompt has none")
            context = prompt[:found.start()]  # the same in both orders: the answers follow it
            out.append(Reply(text=f"[[{self.verdict(found.group(1), found.group(2), context)}]]"))
        return out


def _normal(*parts: Any) -> float:
    """A deterministic standard normal draw from the parts."""
    u1, u2 = max(_unit(*parts, 1), 1e-12), _unit(*parts, 2)
    return float(np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2))


def make_oracle_judge(model: str, spec: str | Path | None, seed: int = 0) -> OracleJudge:
    """An oracle judge named `oracle:GROUP[,bias=P][,noise=SD]` for the sample whose spec is given."""
    return OracleJudge(model=model, rule=load_spec(spec), seed=seed)


