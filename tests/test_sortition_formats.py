"""Sortition as a component: any pool format gives the same panels; outputs round-trip any id; no LLM imports."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_cli

from dlm import cli
from dlm import sortition as so
from dlm.errors import DLMError

# A small constructed instance: 12 people, three attributes, a panel of 4.
PEOPLE = pd.DataFrame({
    "user_id": [f"u{i:02d}" for i in range(12)],
    "gender": list("ffffffmmmmmm"),
    "age": ["young", "old", "young", "old", "young", "young", "old", "old", "young", "old", "old", "young"],
    "region": list("nnsnsnssnsns"),
    "email": [f"person{i}@example.org" for i in range(12)],
})
QUOTAS = [("gender", "f", 1, 3), ("gender", "m", 1, 3), ("age", "young", 2, 2), ("age", "old", 2, 2),
          ("region", "n", 1, 3), ("region", "s", 1, 3)]


def write_categories(path, header=("category", "feature", "min", "max")):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(QUOTAS)
    return path


def panel_yaml(path):
    attrs = {}
    for a, c, lo, hi in QUOTAS:
        attrs.setdefault(a, {})[c] = [lo, hi]
    text = "panel_size: 4\nattributes:\n" + "".join(
        f"  - {{name: {a}, quotas: {json.dumps(q)}}}\n" for a, q in attrs.items())
    path.write_text(text)
    return path


def sources(tmp_path) -> dict[str, so.PoolSource]:
    """The same pool in every supported format."""
    PEOPLE.to_csv(tmp_path / "pool.csv", index=False)
    with open(tmp_path / "pool.jsonl", "w") as fh:
        for row in PEOPLE.to_dict("records"):
            fh.write(json.dumps(row) + "\n")
    PEOPLE.drop(columns="user_id").to_csv(tmp_path / "respondents_no_id.csv", index=False)
    cfg = panel_yaml(tmp_path / "panel.yaml")
    return {
        "csv": so.load_pool_source(tmp_path / "pool.csv", cfg),
        "jsonl": so.load_pool_source(tmp_path / "pool.jsonl", cfg),
        "categories,respondents": so.load_pool_source(categories=write_categories(tmp_path / "c1.csv"),
                                                      respondents=tmp_path / "pool.csv", panel_size=4),
        "category,name header (stratification-app)": so.load_pool_source(
            categories=write_categories(tmp_path / "c3.csv", ("category", "name", "min", "max")),
            respondents=tmp_path / "pool.csv", panel_size=4),
        "feature,value header": so.load_pool_source(
            categories=write_categories(tmp_path / "c2.csv", ("feature", "value", "min", "max")),
            respondents=tmp_path / "pool.csv", panel_size=4),
        "respondents without ids": so.load_pool_source(categories=tmp_path / "c1.csv",
                                                       respondents=tmp_path / "respondents_no_id.csv", panel_size=4),
    }


def test_leximin_and_legacy_are_identical_whichever_format_carries_the_pool(tmp_path):
    results = {}
    for name, source in sources(tmp_path).items():
        pool = source.build()
        lex = so.select(pool, "leximin", seed=3)
        if lex.diagnostics.leximin_method == "relaxation":  # the manifest says where the panels came from
            assert set(lex.diagnostics.to_dict()["leximin_panel_sources"]) == {"panels", "from_known", "repaired",
                                                                              "ilps", "mass_left"}
        leg = so.select(pool, "legacy", 400, seed=3)
        results[name] = (lex.probabilities["probability"].to_numpy(), leg.probabilities["probability"].to_numpy(),
                         [pool.user_ids.tolist().index(u) for u in lex.panel])
    first = next(iter(results.values()))
    for name, (lex, leg, panel) in results.items():
        assert np.array_equal(lex, first[0]) and np.array_equal(leg, first[1]) and panel == first[2], name
    assert first[0].min() > 0 and first[0].sum() == pytest.approx(4)


def test_respondents_without_ids_are_numbered_by_row(tmp_path):
    pool = sources(tmp_path)["respondents without ids"].build()
    assert pool.id_column == "row" and pool.user_ids.tolist() == [str(i) for i in range(1, 13)]
    assert list(pool.table.columns) == ["row", "gender", "age", "region", "email"]


def test_a_csv_pool_with_only_ids_and_quota_columns(tmp_path):
    PEOPLE[["user_id", "gender", "age", "region"]].to_csv(tmp_path / "pool.csv", index=False)
    pool = so.load_pool_source(tmp_path / "pool.csv", panel_yaml(tmp_path / "panel.yaml")).build()
    assert pool.n == 12 and pool.report.after_dropping_survey_only is None
    with pytest.raises(DLMError, match="no id column 'person'.*--id-column"):
        so.load_pool_source(tmp_path / "pool.csv", tmp_path / "panel.yaml", id_column="person").build()


def test_prism_filters_apply_only_when_their_columns_exist(tmp_path):
    table = PEOPLE.assign(survey_only=["True"] * 2 + ["False"] * 10)
    table.to_csv(tmp_path / "pool.csv", index=False)
    cfg = tmp_path / "panel.yaml"
    panel_yaml(cfg)
    cfg.write_text(cfg.read_text() + "locale_filter: us\n")
    pool = so.load_pool_source(tmp_path / "pool.csv", cfg).build()
    assert pool.n == 10 and pool.report.after_dropping_survey_only == 10  # CSV text "True" counts as true
    assert pool.report.filters_skipped == ["locale_filter (no study_locale column)"]


def test_prism_survey_and_its_csv_export_give_the_same_legacy_probabilities(demo_sample, tmp_path):
    prism = so.load_pool_source(demo_sample / "survey.jsonl", "configs/panels/small.yaml")
    assert prism.format == "prism"
    prism.table.to_csv(tmp_path / "survey.csv", index=False)
    exported = so.load_pool_source(tmp_path / "survey.csv", "configs/panels/small.yaml")
    a = so.select(prism.build(), "legacy", 300, seed=1)
    b = so.select(exported.build(), "legacy", 300, seed=1)
    pd.testing.assert_frame_equal(a.probabilities, b.probabilities)


@pytest.mark.parametrize("content, message", [
    ("category,feature,min\ngender,f,1\n", "line 1 must name the columns category,name,min,max "
     r"\(stratification-app\), category,feature,min,max \(Flanigan et al.'s code\) or feature,value,min,max"),
    ("category,feature,min,max\ngender,f,1,x\n", "line 2 field 'max' must be a whole number"),
    ("feature,value,min,max\ngender,f,3,1\n", "line 2 needs 0 <= min <= max"),
    ("category,feature,min,max\ngender,f,1,2\ngender,f,0,2\n", "line 3 repeats gender=f"),
])
def test_bad_categories_name_the_line(tmp_path, content, message):
    (tmp_path / "categories.csv").write_text(content)
    with pytest.raises(DLMError, match=message):
        so.read_categories(tmp_path / "categories.csv", 4)


def test_respondents_lacking_a_category_column(tmp_path):
    PEOPLE.drop(columns="region").to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(DLMError, match="no column 'region'.*one column per category"):
        so.load_pool_source(categories=write_categories(tmp_path / "c.csv"), respondents=tmp_path / "r.csv",
                            panel_size=4)


NASTY_IDS = ['a,b', 'say "hi"', "two\nlines", "=1+1", "+44 20", "-3", "@home", "007", "ünïcode", " padded ",
             "x;y", "u11"]


def test_cli_sortition_foundation_outputs_round_trip_any_id(tmp_path):
    people = PEOPLE.assign(user_id=NASTY_IDS)
    people.to_csv(tmp_path / "respondents.csv", index=False)
    write_categories(tmp_path / "categories.csv")
    out = run_cli("sortition", "--categories", tmp_path / "categories.csv", "--respondents",
                  tmp_path / "respondents.csv", "--panel-size", "4", "--algorithm", "leximin",
                  "--output", tmp_path / "probs.csv", "--panel-output", tmp_path / "panel.csv",
                  "--remaining-output", tmp_path / "remaining.csv")
    assert out.returncode == 0, out.stderr
    assert "begin with =, +, - or @" in out.stderr  # the spreadsheet risk is named once
    probs = pd.read_csv(tmp_path / "probs.csv", dtype={"user_id": str}, keep_default_na=False)
    assert probs["user_id"].tolist() == NASTY_IDS and probs["probability"].sum() == pytest.approx(4)
    panel, remaining = (so.read_csv_table(tmp_path / f) for f in ("panel.csv", "remaining.csv"))
    assert list(panel.columns) == list(PEOPLE.columns) and len(panel) == 4
    both = pd.concat([panel, remaining]).set_index("user_id").loc[NASTY_IDS].reset_index()
    pd.testing.assert_frame_equal(both, people.astype(str))  # every row back, in its own columns
    manifest = json.loads((tmp_path / "probs.csv.manifest.json").read_text())
    assert manifest["id_column"] == "user_id" and len(manifest["inputs"]) == 2


def test_cli_csv_pool_with_id_column_and_panel_size(tmp_path, capsys):
    PEOPLE.rename(columns={"user_id": "person"}).to_csv(tmp_path / "pool.csv", index=False)
    cfg = panel_yaml(tmp_path / "p.yaml")
    cfg.write_text(cfg.read_text().replace("panel_size: 4", "panel_size: 9"))  # --panel-size replaces it
    code = cli.main(["sortition", "--pool", str(tmp_path / "pool.csv"), "--panel-config", str(cfg),
                     "--id-column", "person", "--panel-size", "4", "--num-panel-samples", "200",
                     "--output", str(tmp_path / "probs.csv"), "--panel-output", str(tmp_path / "panel.csv")])
    assert code == 0, capsys.readouterr().err
    probs = so.read_selection(tmp_path / "probs.csv")
    assert list(probs.columns) == ["person", "probability", "stderr"]  # the input's id column keeps its name
    assert probs["person"].tolist() == PEOPLE["user_id"].tolist() and probs["probability"].sum() == pytest.approx(4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml", "panel.csv", "pool.csv", "probs.csv",
                                                         "probs.csv.manifest.json"]  # no lock file left behind
    assert pd.read_csv(tmp_path / "panel.csv").columns[0] == "person" and len(pd.read_csv(tmp_path / "panel.csv")) == 4


@pytest.mark.parametrize("args, message", [
    (["--categories", "{c}", "--respondents", "{r}"], "pass --panel-size"),
    (["--categories", "{c}", "--panel-size", "4"], "needs both --categories and --respondents"),
    (["--survey", "{tmp}/pool.txt"], "unknown pool format '.txt'"),
])
def test_cli_format_mistakes_are_one_line(tmp_path, capsys, args, message):
    write_categories(tmp_path / "c.csv")
    PEOPLE.to_csv(tmp_path / "r.csv", index=False)
    (tmp_path / "pool.txt").write_text("user_id\n")
    args = [a.format(c=tmp_path / "c.csv", r=tmp_path / "r.csv", tmp=tmp_path) for a in args]
    code = cli.main(["sortition", *args, "--output", str(tmp_path / "probs.csv")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_the_package_imports_nothing_llm_related():
    code = ("import sys, dlm.sortition as so; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'trl', 'openai', 'datasets', 'peft', 'accelerate', 'huggingface_hub') "
            "or m in ('dlm.llm.backends', 'dlm.training.models', 'dlm.training.train_dpo', 'dlm.judging.evaluation', 'dlm.preferences.build')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_the_stage_cache_notices_a_change_inside_the_package(tmp_path, monkeypatch):
    import shutil

    from dlm.pipeline import runner

    shutil.copytree(ROOT / "dlm", tmp_path / "dlm", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    before = runner._package_hash()
    leximin_file = tmp_path / "dlm/sortition/leximin.py"
    leximin_file.write_text(leximin_file.read_text() + "\n# changed\n")
    assert runner._package_hash() != before


# ----------------------------------------------------------------------------- Flanigan et al.'s example instances


def flanigan_example(tmp_path, n: int, k: int, low: int) -> so.PoolSource:
    """`example_small_20` (n = 200, k = 20, quotas 9..20) or `example_large_200` (n = 2,000, k = 200, quotas
    99..200) of Flanigan et al. (Nature 2021; github.com/pgoelz/citizensassemblies-replication, data/): one
    female conservative, n/2 - 1 female liberals and n/2 male conservatives, in their own file format."""
    rows = [("female", "conservative")] + [("female", "liberal")] * (n // 2 - 1) + [("male", "conservative")] * (n // 2)
    pd.DataFrame(rows, columns=["gender", "leaning"]).to_csv(tmp_path / "respondents.csv", index=False)
    (tmp_path / "categories.csv").write_text("category,feature,min,max\n" + "".join(
        f"{a},{c},{low},{k}\n" for a, c in [("gender", "female"), ("gender", "male"), ("leaning", "liberal"),
                                             ("leaning", "conservative")]))
    return so.load_pool_source(categories=tmp_path / "categories.csv", respondents=tmp_path / "respondents.csv",
                               panel_size=k)


@pytest.mark.parametrize("n,k,low", [(200, 20, 9), (2000, 200, 99)], ids=["example_small_20", "example_large_200"])
def test_flanigan_example_instances_give_the_papers_leximin_probabilities(tmp_path, n, k, low):
    """The replication's reference output: LEXIMIN gives every one of the n people exactly k/n = 10%
    (reference_output/example_*_prob_allocs_data.csv: 0.1 to within their solver's 5e-7)."""
    sel = so.select(flanigan_example(tmp_path, n, k, low).build(), "leximin")
    assert len(sel.probabilities) == n
    assert sel.probabilities["probability"].to_numpy() == pytest.approx(np.full(n, k / n), abs=1e-6)
    assert sel.diagnostics.levels and all(level.gap < 1e-6 for level in sel.diagnostics.levels)  # certified


def test_flanigan_small_example_legacy_leaves_the_lone_female_conservative_far_below_k_over_n(tmp_path):
    """The replication's LEGACY on example_small_20 gives its lone female conservative 0.0111 (10,000 panels);
    everyone else about 0.1: the reason LEXIMIN exists."""
    source = flanigan_example(tmp_path, 200, 20, 9)
    sel = so.select(source.build(), "legacy", n_samples=4000, seed=0)
    p = sel.probabilities.set_index(source.id_column)["probability"]
    lone = source.table[source.id_column].iloc[0]  # row 1 of respondents.csv
    assert abs(p[lone] - 0.0111) < 0.008  # ±4.5 binomial standard errors of 4,000 panels
    assert p.drop(lone).min() > 0.08
