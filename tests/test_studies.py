"""Studies (`bench study NAME`): the committed specs are valid, bad specs fail in one line, the claims'
verdicts are right on a run with known numbers and calibrated by simulation, and (slow) every study's
--quick variant runs end to end and re-renders with no model calls."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main as bench_main
from bench.errors import BenchError
from bench.report.claims import _compare, check_claim, write_study
from bench.report.data import load
from bench.study import STUDIES_DIR, load_study, study_config
from tests.conftest import ROOT
from tests.fixtures.synthetic_run import make_run

STUDIES = sorted(d.name for d in (ROOT / STUDIES_DIR).iterdir() if (d / "study.yaml").is_file())


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_the_committed_studies_are_valid_and_their_claims_name_arms_they_run():
    assert {"rag_vs_finetuning", "memorization", "lora_vs_full", "known_answers"} <= set(STUDIES)
    for name in STUDIES:
        study = load_study(name)
        for quick in (False, True):
            cfg = study_config(study, quick=quick)
            assert cfg.run_id == name + ("-quick" if quick else "") and cfg.out == "results/studies"
        assert (study.folder / "README.md").is_file(), f"{name}: a study states its claim and command in a README"


@pytest.mark.parametrize("text,words", [
    ("title: t\nsource: s\nclaims: []\n", "claims"),
    ("title: t\nsource: s\nrun: run.yaml\nclaims: [{id: a, says: x, better: zero_shot}]\n", "either"),
    ("title: t\nsource: s\nrun: run.yaml\nclaims: [{id: a, says: x, better: zero_shot, than: [lora], extra: 1}]\n",
     "unknown key 'extra'"),
    ("title: t\nsource: s\nrun: run.yaml\nclaims: [{id: A!, says: x, better: zero_shot, than: [lora]}]\n", ".id"),
    ("title: t\nsource: s\nrun: nope.yaml\nclaims: [{id: a, says: x, better: zero_shot, than: [lora]}]\n", "nope.yaml"),
    ("title: t\nsource: s\nrun: run.yaml\nclaims: [{id: a, says: x, arm: lora, better_stratum: v, than_stratum: r, "
     "probe: probe_mmlu_acc}]\n", "probe"),
    ("title: t\nsource: s\nrun: run.yaml\nclaims: [{id: a, says: x, better: rag, than: [lora]}]\n", "does not run"),
    ("title: t\nsource: s\nrun: run.yaml\nclaims: [{id: a, says: x, better: zero_shot, than: 5}]\n", ".than"),
    ("title: t\nsource: s\nrun: run.yaml\nclaims: [{id: a, says: x, better: zero_shot, than: [lora], stratum: 5}]\n",
     ".stratum"),
    ("title: t\nsource: s\nrun: run.yaml\nclaims: [{id: a, says: x, better: zero_shot, than: [lora], stratum: {a: 1}}]\n",
     ".stratum"),
])
def test_bad_study_specs_fail_in_one_line(tmp_path, text, words):
    (tmp_path / "run.yaml").write_text("tasks: [demo]\nstrategies: [zero_shot, lora]\n")
    (tmp_path / "study.yaml").write_text(text)
    with pytest.raises(BenchError) as e:
        study_config(load_study(str(tmp_path)))
    msg = str(e.value)
    assert words in msg and "\n" not in msg and ("study.yaml" in msg or "run.yaml" in msg)


def test_an_unknown_study_names_the_known_ones():
    with pytest.raises(BenchError, match="known studies: .*rag_vs_finetuning"):
        load_study("rag_vs_finetunning")
    assert bench_main(["study", "no_such_study"]) == 2


def test_claim_verdicts_on_a_run_with_known_numbers(tmp_path):
    """synthetic_run: rag 0.700 vs zero_shot 0.200 (reproduced, and opposite the other way round), lora 0.725 vs
    rag 0.700 (one item apart: not resolved, with an item estimate)."""
    run = load(make_run(tmp_path / "run", tasks=("facts",)))
    claim = {"id": "c", "says": "x", "better": "rag", "than": ["zero_shot"], "task": "facts"}
    ok = check_claim(run, claim)
    assert ok["verdict"] == "reproduced" and ok["comparisons"][0]["n"] == 40
    assert ok["comparisons"][0]["diff"] == pytest.approx(0.5)
    assert check_claim(run, {**claim, "better": "zero_shot", "than": ["rag"]})["verdict"] == "opposite"
    tie = check_claim(run, {**claim, "better": "lora", "than": ["rag"]})
    assert tie["verdict"] == "not resolved" and tie["comparisons"][0]["status"] == "unresolved"
    both = check_claim(run, {**claim, "better": "rag_oracle", "than": ["zero_shot", "lora"]})
    assert both["verdict"] in ("reproduced", "not resolved") and len(both["comparisons"]) == 2
    spec = {"name": "s", "title": "T", "source": "S", "claims": [claim]}
    md = write_study(run.folder, spec)
    assert md.is_file() and "reproduced" in md.read_text() and json.loads((run.folder / "study_claims.json").read_text())


def test_stratum_claims_pair_items_by_fact(tmp_path):
    """Within one arm: items `<fact>-verbatim` against `<fact>-rephrased` of the same fact."""
    run = load(make_run(tmp_path / "run", tasks=("facts",)))
    cells = run.cells_of("facts", "lora")
    for c in cells:  # rename the 40 items into 20 facts x 2 strata; verbatim right, rephrased wrong
        for i, s in enumerate(c.scores):
            kind = "verbatim" if i % 2 == 0 else "rephrased"
            s["example_id"] = f"f{i // 2}-{kind}"
            s["stratum"] = kind
            s["scores"] = {"exact_match": 1.0 if kind == "verbatim" else 0.0}
            s["failed"] = False
    claim = {"id": "m", "says": "x", "arm": "lora", "better_stratum": "verbatim", "than_stratum": "rephrased",
             "metric": "exact_match"}
    got = check_claim(run, claim)
    assert got["verdict"] == "reproduced" and got["comparisons"][0]["n"] == 20
    assert got["comparisons"][0]["diff"] == pytest.approx(1.0)


def test_a_stratum_list_keeps_the_items_of_any_of_them(tmp_path):
    """`stratum: [a, b]` compares the arms on the items of a or b only (Gekhman's Known = three SliCK labels)."""
    run = load(make_run(tmp_path / "run", tasks=("facts",)))
    labels = ("highly_known", "maybe_known", "unknown")
    for arm, wins_on_known in (("lora", True), ("zero_shot", False)):
        for c in run.cells_of("facts", arm):
            for i, s in enumerate(c.scores):
                s["stratum"], s["failed"] = labels[i % 3], False
                known = s["stratum"] != "unknown"
                s["scores"] = {"exact_match": float(known == wins_on_known)}
    n_known = sum(1 for s in run.cells_of("facts", "lora")[0].scores if s["stratum"] != "unknown")
    base = {"id": "k", "says": "x", "better": "lora", "than": ["zero_shot"], "metric": "exact_match"}
    got = check_claim(run, base | {"stratum": ["highly_known", "maybe_known"]})
    assert got["verdict"] == "reproduced" and got["comparisons"][0]["n"] == n_known
    assert check_claim(run, base | {"stratum": "unknown"})["verdict"] == "opposite"
    (tmp_path / "run.yaml").write_text("tasks: [facts]\n")
    (tmp_path / "study.yaml").write_text("title: t\nsource: s\nclaims: [{id: a, says: x, better: l, than: [z], stratum: [p, q]}]\n")
    assert load_study(str(tmp_path)).claims[0].stratum == ("p", "q")


def test_a_lower_is_better_claim_shows_the_rates_as_measured(tmp_path):
    """Hallucination 0.2 vs 0.9: the table shows 0.2 and 0.9 (not 1 - rate), the difference +0.7 as claimed."""
    run = load(make_run(tmp_path / "run", tasks=("facts",)))
    for arm, rate in (("lora", 0.2), ("zero_shot", 0.9)):
        for c in run.cells_of("facts", arm):
            for i, s in enumerate(c.scores):
                s["failed"], s["scores"] = False, {"hallucination_rate": float(i < rate * len(c.scores))}
    got = check_claim(run, {"id": "h", "says": "x", "better": "lora", "than": ["zero_shot"],
                            "metric": "hallucination_rate", "lower_is_better": True})
    (comp,) = got["comparisons"]
    assert got["verdict"] == "reproduced"
    assert comp["better_value"] == pytest.approx(0.2) and comp["than_value"] == pytest.approx(0.9)
    assert comp["diff"] == pytest.approx(0.7)


def test_claims_are_calibrated_by_simulation():
    """Known truth: with no true difference a claim is called 'holds' (or 'opposite') in at most ~5 % of runs;
    with a true difference of 0.3 on 60 items it holds in most runs (measured: 239 of 300)."""
    rng = np.random.default_rng(0)
    false_calls, power = 0, 0
    sims = 300
    for _ in range(sims):
        p = rng.uniform(0.2, 0.8)
        a = {str(i): float(rng.random() < p) for i in range(60)}
        b = {str(i): float(rng.random() < p) for i in range(60)}
        false_calls += not _compare("null", a, b, 1).status.startswith("unresolved")
        c = {str(i): float(rng.random() < 0.7) for i in range(60)}
        d = {str(i): float(rng.random() < 0.4) for i in range(60)}
        power += _compare("alt", c, d, 1).status == "holds"
    assert false_calls / sims <= 0.07
    assert power / sims >= 0.7  # the betting interval is valid at any n, so a little conservative (0.80 here)


# -- slow: the studies' quick variants, end to end ------------------------------------------------------
@pytest.mark.slow
# known_answers' run is the default matrix (tested elsewhere); unknown_examples_confirm is unknown_examples'
# spec on a fresh split (same arms, same code path: its spec is checked by the committed-specs test), and an
# end-to-end quick study costs ~3.5 min on a 2-core CPU without AVX-512
@pytest.mark.parametrize("name", [s for s in STUDIES if s not in ("known_answers", "unknown_examples_confirm")])
def test_quick_study_runs_and_rerenders_without_model_calls(name, tmp_path, monkeypatch):
    out = tmp_path / "studies"
    assert bench_main(["study", name, "--quick", "--out", str(out), "--no-progress"]) == 0
    run_dir = out / f"{name}-quick"
    first = (run_dir / "study.md").read_text(encoding="utf-8")
    assert "## " in first and all(c.says in first for c in load_study(name).claims)
    shutil.rmtree(run_dir / "plots", ignore_errors=True)
    import bench.models.llama as llama_module

    monkeypatch.setattr(llama_module.LlamaBackend, "__init__", lambda *a, **k: pytest.fail("a model was loaded"))
    (run_dir / "study.md").unlink()
    assert bench_main(["report", str(run_dir)]) == 0
    assert (run_dir / "study.md").read_text(encoding="utf-8") == first


def test_frontier_table_and_plot_from_probe_deltas(tmp_path):
    run_dir = make_run(tmp_path / "run", tasks=("facts",))
    spec = {"name": "s", "title": "T", "source": "S", "frontier": True,
            "claims": [{"id": "c", "says": "x", "better": "lora", "than": ["zero_shot"], "task": "facts"}]}
    md = write_study(run_dir, spec).read_text()
    points = json.loads((run_dir / "study_claims.json").read_text())["frontier"]
    lora = next(p for p in points if p["arm"] == "lora")
    assert lora["base"] == "zero_shot" and lora["gain"] == pytest.approx(0.525) and lora["gain_low"] > 0
    assert "Learning against forgetting" in md and "| lora |" in md
