"""The oracle judge applies the generated sample's own rule, read from the spec `dlm synth` writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT

from dlm.data import synth
from dlm.errors import DLMError
from dlm.judging.evaluation import evaluate
from dlm.judging.judge import Question, judge_messages, slug
from dlm.io import read_jsonl
from dlm.judging.oracle import load_spec, make_oracle_judge

FORMAL = "Certainly. On your question, I would suggest that you read both sides."
CASUAL = "Sure thing! So, your question? Honestly, my advice is to read both sides!"
PLAIN = "Read both sides."


@pytest.fixture(scope="module")
def spec_path(demo_sample) -> Path:
    return demo_sample / synth.ORACLE_SPEC


def verdict(judge, first: str, second: str) -> str:
    q = Question("q1", "01", "Be helpful.", "What should I read?")
    reply = judge.complete_many([judge_messages(q, first, second)], judge_params())[0]
    return reply


def judge_params():
    from dlm.llm.backends import GenerationParams

    return GenerationParams()


def test_spec_is_written_beside_the_sample_and_is_the_generating_rule(demo_sample, spec_path):
    rule = load_spec(spec_path)
    assert rule.markers == {"formal": ("Certainly.",), "casual": ("Sure thing!",)}
    assert set(rule.groups) == {"55+", "under-55"}
    assert rule.score_noise == synth.SCORE_NOISE
    for age in synth.MARGINALS["age"][0]:
        group = rule.group_of(age)
        for style in synth.STYLES:
            marker = rule.markers[style][0]
            assert rule.effect(group, f"{marker} Some text.") == synth.style_score_effect(age, style)


def test_oracle_verdicts_equal_the_generating_rule_on_constructed_pairs(spec_path):
    older, younger = (make_oracle_judge(f"oracle:{g}", spec_path) for g in ("55+", "under-55"))
    expected = {  # (first, second) -> (55+ verdict, under-55 verdict)
        (FORMAL, CASUAL): ("A", "B"), (CASUAL, FORMAL): ("B", "A"), (FORMAL, FORMAL + " More."): ("C", "C"),
        (PLAIN, FORMAL): ("B", "A"), (PLAIN, CASUAL): ("A", "B"), (PLAIN, PLAIN + "!"): ("C", "C"),
        ("  " + FORMAL, CASUAL): ("A", "B"),
    }
    for (first, second), (old, young) in expected.items():
        assert verdict(older, first, second) == f"[[{old}]]"
        assert verdict(younger, first, second) == f"[[{young}]]"


def test_the_judge_follows_the_markers_in_the_spec_not_hard_coded_styles(spec_path, tmp_path):
    spec = json.loads(spec_path.read_text())
    spec["styles"]["formal"]["markers"] = ["Good day."]
    spec["styles"]["casual"]["markers"] = ["Yo!"]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    older = make_oracle_judge("oracle:55+", tmp_path / "spec.json")
    assert verdict(older, "Yo! read it", "Good day. Read it.") == "[[B]]"
    assert verdict(older, CASUAL, FORMAL) == "[[C]]"  # the old markers mean nothing now


def test_refuses_without_a_generated_samples_spec(spec_path, tmp_path):
    with pytest.raises(DLMError, match="--oracle-spec"):
        make_oracle_judge("oracle:55+", None)
    with pytest.raises(DLMError, match="not found"):
        make_oracle_judge("oracle:55+", tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"styles": {}}')
    with pytest.raises(DLMError, match="kind"):
        make_oracle_judge("oracle:55+", tmp_path / "other.json")
    with pytest.raises(DLMError, match="groups: 55\\+, under-55"):
        make_oracle_judge("oracle:retirees", spec_path)
    with pytest.raises(DLMError, match="unknown option"):
        make_oracle_judge("oracle:55+,temperature=2", spec_path)


def fixed_answers(folder: Path, questions_dir: Path, answers: dict[str, callable]) -> list[str]:
    """Answer files for pseudo-models (ids, not folders) so evaluate reuses them instead of generating."""
    from dlm.judging.evaluation import answer_settings
    from dlm.judging.judge import load_questions
    from dlm.io import sha256_text
    from dlm.llm.backends import GenerationParams

    (folder / "responses").mkdir(parents=True, exist_ok=True)
    decoding = GenerationParams(temperature=0.0, max_tokens=256, seed=0)  # evaluate's defaults
    for model, answer in answers.items():
        rows = [{"question_id": q.question_id, "model": model, "model_fingerprint": model, "answer": answer(k),
                 "settings_fingerprint": answer_settings(model, decoding, "openai"),
                 "question_sha": sha256_text(q.text)[:16], "decoding": decoding.__dict__}
                for k, q in enumerate(load_questions(questions_dir))]
        (folder / "responses" / f"{slug(model)}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return list(answers)


@pytest.fixture(scope="module")
def questions(tmp_path_factory) -> Path:
    from dlm.judging.questions import generate_questions

    out = tmp_path_factory.mktemp("q")
    generate_questions(ROOT / "constitution.txt", out, backend="template", n_questions=4, end_clause=6)
    return out


def test_position_biased_oracle_is_neutralised_by_the_both_orders_rule(spec_path, questions, tmp_path):
    # "mostly-formal" answers formally on 3 questions of 4, casually on the 4th.
    models = fixed_answers(tmp_path, questions, {"mostly-formal": lambda k: CASUAL if k % 4 == 3 else FORMAL,
                                                 "casual": lambda k: CASUAL})
    kwargs = dict(answer_backend="openai", judge_backend="oracle", oracle_spec=spec_path, primary=tuple(models))
    clean = evaluate(questions, models, tmp_path / "clean.jsonl", ["oracle:55+"], **kwargs)["pairs"]
    biased = evaluate(questions, models, tmp_path / "biased.jsonl", ["oracle:55+,bias=0.3"], **kwargs)["pairs"]
    young = evaluate(questions, models, tmp_path / "young.jsonl", ["oracle:under-55"], **kwargs)["pairs"]
    (c,), (b,), (y,) = clean.values(), biased.values(), young.values()
    assert c["win_rate"] == pytest.approx((18 * 1 + 6 * 0.5) / 24)  # 18 formal-vs-casual wins, 6 ties
    assert y["win_rate"] == pytest.approx((6 * 0.5) / 24)
    assert c["inconsistency_rate"] == 0.0
    # The biased judge picks the first shown answer 30% of the time: single-order verdicts shift, but
    # under the both-orders rule its bias only turns wins into ties, never into a win for the other side.
    recs = read_jsonl(tmp_path / "biased.jsonl")
    assert any(r["winner"] == "casual" and r["order"] == "ba" for r in recs)
    assert b["inconsistency_rate"] > 0 and b["losses"] == 0
    assert 0.5 < b["win_rate"] <= c["win_rate"]
    always_first = evaluate(questions, models, tmp_path / "first.jsonl", ["oracle:55+,bias=1"], **kwargs)["pairs"]
    (f,) = always_first.values()
    assert f["win_rate"] == 0.5 and f["inconsistency_rate"] == 1.0


def test_noise_is_deterministic_and_moves_verdicts_away_from_the_rule(spec_path):
    noisy = make_oracle_judge("oracle:55+,noise=40", spec_path)
    verdicts = [noisy.verdict(f"{FORMAL} ({k})", f"{CASUAL} ({k})") for k in range(200)]
    assert verdicts == [noisy.verdict(f"{FORMAL} ({k})", f"{CASUAL} ({k})") for k in range(200)]
    share = verdicts.count("A") / 200
    assert 0.6 < share < 0.95  # P(N(30, 40·√2) > 0) ≈ 0.70
    # Noise is about the answers, not their position: swapping the order mirrors the verdict.
    assert all({"A": "B", "B": "A", "C": "C"}[v] == noisy.verdict(f"{CASUAL} ({k})", f"{FORMAL} ({k})")
               for k, v in enumerate(verdicts))


def test_evaluate_cli_judges_with_one_oracle_group_per_output(spec_path, questions, tmp_path, capsys):
    from dlm.cli import main

    models = fixed_answers(tmp_path, questions, {"f": lambda k: FORMAL, "c": lambda k: CASUAL})
    common = ["evaluate", "--questions-dir", str(questions), "--models", *models, "--answer-backend", "openai",
              "--judge-backend", "oracle"]
    assert main([*common, "--judge-model", "oracle:55+", "--oracle-spec", str(spec_path),
                 "--output", str(tmp_path / "o.jsonl")]) == 0
    assert "win rate 1.000" in capsys.readouterr().out
    assert main([*common, "--judge-models", "oracle:55+", "oracle:under-55", "--oracle-spec", str(spec_path),
                 "--output", str(tmp_path / "o2.jsonl")]) == 2
    assert "each on their own" in capsys.readouterr().err
    assert main([*common, "--judge-model", "oracle:55+", "--output", str(tmp_path / "o3.jsonl")]) == 2
    assert "--oracle-spec" in capsys.readouterr().err


@pytest.mark.slow
def test_planted_effect_win_rates_reports_every_oracle_judge_on_trained_models(demo_sample, tmp_path):
    """The benchmark's judged read-out runs end to end (2 DPO steps: direction not asserted, contract is)."""
    from dlm.preferences import build as preferences
    from dlm.training import tiny_model
    from dlm import training
    from dlm.judging.planted import planted_effect_win_rates
    from dlm.judging.questions import generate_questions

    base = tiny_model.make_tiny_model(tmp_path / "tiny", seed=0, warmup_steps=20)
    for arm, config in (("hard", "configs/panel_config.yaml"), ("contrast", "configs/panels/crowdworkers.yaml")):
        opts = preferences.PrepareOptions(mode="hard", panel_config=str(ROOT / config), eval_ratio=0.1)
        preferences.prepare(demo_sample / "survey.jsonl", demo_sample / "utterances.jsonl", tmp_path / f"{arm}.jsonl",
                            opts)
        settings = {**training.load_recipe(ROOT / "configs/train/tiny.yaml"), "model_id": str(base), "max_steps": 2}
        training.train(tmp_path / f"{arm}.jsonl", tmp_path / arm, settings)
    generate_questions(ROOT / "constitution.txt", tmp_path / "q", backend="template", n_questions=2, end_clause=3)
    results = planted_effect_win_rates(tmp_path / "hard", tmp_path / "contrast", tmp_path / "q",
                                       demo_sample / synth.ORACLE_SPEC, tmp_path / "eval", max_new_tokens=8)
    assert [r.judge for r in results] == ["oracle:55+", "oracle:under-55"]
    for r in results:
        assert (r.model_a, r.model_b, r.n_questions) == ("hard", "contrast", 6)
        assert r.wins + r.ties + r.losses == 6
        assert r.win_rate == pytest.approx((r.wins + r.ties / 2) / 6)
        assert sum(r.style_share_a.values()) == pytest.approx(1.0)
    # The two oracle groups have opposite rules: a win for one is a loss for the other.
    assert (results[0].wins, results[0].losses) == (results[1].losses, results[1].wins)
    assert (tmp_path / "eval" / "oracle_55.jsonl").exists() and (tmp_path / "eval" / "oracle_under-55.jsonl").exists()
