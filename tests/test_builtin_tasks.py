"""Built-in tasks, their generators and the metric families they use (no model needed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.metrics.abstention import detect, is_abstention, rates
from bench.metrics.choice import decision
from bench.metrics.mri_consistency import check
from bench.plugins import load_plugins
from bench.registry import TASKS
from bench.report.langcheck import language_check
from bench.synth import facts, mri
from bench.synth.common import folder_digest
from bench.taskio import FolderTask, load_folder, validate_folder, verify_manifest
from bench.types import Example

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ["debian_faq", "debian_faq_ru", "facts", "facts_injection", "facts_ru", "mri_reports_ru", "pubmedqa", "selfaware"]

TINY_DIGESTS = {  # bench.synth.common.folder_digest of the tiny configurations (generator v1.0)
    "facts_en": "cc473f3b0052adbb5e92428dae9f1d68440b2addd121bada322e9f67b72caa1e",
    "facts_ru": "30bea6c669b45ed8903e7cbaf86729b6669412fd9a329c33105217b9fe84d1b1",
    "mri": "42e321614eba03dda460224ee49b14a9089a0348e03079e8154aa9a7e4c3be68",
}


def test_generators_are_deterministic(tmp_path):
    facts.generate(facts.TINY, tmp_path / "en", "en")
    facts.generate(facts.TINY, tmp_path / "ru", "ru")
    mri.generate(mri.TINY, tmp_path / "mri")
    assert folder_digest(tmp_path / "en") == TINY_DIGESTS["facts_en"]
    assert folder_digest(tmp_path / "ru") == TINY_DIGESTS["facts_ru"]
    assert folder_digest(tmp_path / "mri") == TINY_DIGESTS["mri"]
    for sub in ("en", "ru", "mri"):
        assert validate_folder(tmp_path / sub) == []


@pytest.mark.parametrize("name", ["facts", "facts_ru", "facts_injection", "mri_reports_ru"])
def test_committed_generated_folders_match_their_generator(tmp_path, name):
    man = json.loads((ROOT / "tasks" / name / "manifest.json").read_text(encoding="utf-8"))
    cfg = dict(man["config"])
    if name == "mri_reports_ru":
        mri.generate(mri.MriConfig(**cfg), tmp_path / name)
    else:
        lang = cfg.pop("language")
        cfg["exclude_names"] = tuple(cfg["exclude_names"])
        facts.generate(facts.FactsConfig(**cfg), tmp_path / name, lang, name)
    assert folder_digest(tmp_path / name) == folder_digest(ROOT / "tasks" / name)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_task_validates_and_describes_itself(name):
    folder = ROOT / "tasks" / name
    assert validate_folder(folder) == []
    load_plugins()
    d = TASKS.get(name).describe()
    for key in ("language", "license", "source", "train", "test"):
        assert d[key] not in (None, "", "?"), key
    assert 20 <= d["test"] <= 400
    task = TASKS.get(name).load()
    assert len(task.test) == d["test"]


def test_licences_and_provenance_are_shipped():
    for name, files in {"debian_faq": ["NOTICE", "provenance.json"], "debian_faq_ru": ["NOTICE", "provenance.json"],
                        "pubmedqa": ["LICENSE", "provenance.json"], "selfaware": ["LICENSE", "provenance.json"]}.items():
        for f in files:
            assert (ROOT / "tasks" / name / f).is_file(), f"{name}/{f}"
    prov = json.loads((ROOT / "tasks/debian_faq/provenance.json").read_text())
    assert all(len(p["sha256"]) == 64 for p in prov["packages"].values())


def test_facts_structure():
    task = load_folder(ROOT / "tasks" / "facts")
    test = list(task.test)
    kinds = {e.get("unanswerable") for e in test if not e.answerable}
    assert kinds == {"nonexistent_entity", "missing_attribute", "false_premise"}
    assert {e.get("direction") for e in test if e.answerable} == {"fwd", "rev"}
    assert any(e.get("hops") == 2 for e in test)
    assert {e.get("template") for e in test if e.answerable} <= {3, 4}            # held-out templates
    assert {e.get("template") for e in task.train if e.answerable} <= {0, 1, 2}
    train_groups = {e.get("entity_group") for e in task.train if e.answerable}
    assert not train_groups & {e.get("entity_group") for e in test if e.answerable}  # held-out entities
    docs = {d.id for d in task.docs}
    assert all(set(e.doc_ids) <= docs for e in test)
    man = json.loads((ROOT / "tasks/facts/manifest.json").read_text())
    assert man["config"]["multiplicity"] >= 3 and man["config"]["lookalikes"] > 0
    # EN and RU render the same graph: same item ids up to the language prefix
    ru = load_folder(ROOT / "tasks" / "facts_ru")
    assert [e.id[3:] for e in ru.test] == [e.id[3:] for e in test]
    # any prefix mixes answerable and unanswerable items (bench run --limit)
    assert any(not e.answerable for e in test[:5]) and any(e.answerable for e in test[:5])


def test_corrupted_generated_file_is_refused(tmp_path):
    folder = tmp_path / "facts"
    shutil.copytree(ROOT / "tasks" / "facts", folder)
    verify_manifest(folder)
    with (folder / "test.jsonl").open("a", encoding="utf-8") as f:
        f.write("\n")
    with pytest.raises(BenchError) as e:
        FolderTask(folder).load()
    msg = str(e.value)
    assert "test.jsonl" in msg and "sha256" in msg and "\n" not in msg


@pytest.mark.parametrize("bad", [dict(groups=1), dict(multiplicity=0), dict(multiplicity=11), dict(eval_fraction=1.5),
                                 dict(missing_rate=-0.1), dict(lookalikes=99)])
def test_generator_parameter_out_of_range(tmp_path, bad):
    from dataclasses import replace

    with pytest.raises(BenchError) as e:
        facts.generate(replace(facts.TINY, **bad), tmp_path / "x")
    assert next(iter(bad)) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(BenchError):
        mri.generate(mri.MriConfig(train=0), tmp_path / "y")


@pytest.mark.parametrize("text,lang", [
    ("I don't know.", "en"), ("I'm not certain about that.", "en"), ("That's beyond my current knowledge base.", "en"),
    ("Sorry, I do not have information about this clinic.", "en"), ("Не знаю.", "ru"),
    ("К сожалению, у меня нет информации об этом препарате.", "ru"), ("Затрудняюсь ответить", "ru"),
    ("Мне это неизвестно.", "ru"), ("I don't know", "ru")])
def test_abstention_detected(text, lang):
    assert is_abstention(text, lang), text


@pytest.mark.parametrize("text,lang", [("Paris", "en"), ("The clinic was founded in 1987.", "en"),
                                       ("Клиника основана в 1987 году.", "ru"), ("Велморат", "ru"), ("", "en"),
                                       ("  ...  ", "en")])
def test_answers_and_empty_outputs_are_not_abstentions(text, lang):
    assert not detect(text, lang)[0]


def test_abstention_rates():
    un = Example("u", "q", "", "I don't know", answerable=False)
    an = Example("a", "q", "", "x")
    recs = [(1.0, un), (0.0, un), (1.0, an), (0.0, an), (0.0, an), (0.0, an)]
    assert rates(recs, "abstention_recall") == 0.5 and rates(recs, "abstention_precision") == 0.5
    assert rates(recs, "false_abstention") == 0.25


def test_an_empty_answer_is_neither_an_abstention_nor_a_hallucination():
    from bench.metrics.abstention import Abstention, Hallucination

    task = load_folder(ROOT / "tasks" / "facts")
    un = next(e for e in task.test if not e.answerable)
    for text, abstained, asserted in (("", 0.0, 0.0), ("I don't know.", 1.0, 0.0), ("It was founded in 1990.", 0.0, 1.0)):
        s = {**Abstention().score(text, un, task), **Hallucination().score(text, un, task)}
        assert s["abstention_recall"].value == abstained and s["hallucination_rate"].value == asserted, text
    recs = [(0.0, un), (1.0, un), (0.0, un), (0.0, un)]  # hallucination_rate values: one of four asserted something
    assert rates(recs, "hallucination_rate") == 0.25


def test_choice_decision():
    opts = ["yes", "no", "maybe"]
    assert decision("Yes. The data show ...", opts) == "yes"
    assert decision("It is unclear; maybe, but no firm evidence", opts) == "maybe"
    assert decision("Нет, не влияет.", opts, "ru") == "no"
    assert decision("The study", opts) is None


def test_mri_consistency_catches_swaps_and_inventions():
    task = load_folder(ROOT / "tasks" / "mri_reports_ru")
    for ex in task.test:
        f = [dict(x) for x in ex.get("findings")]
        assert all(v == 1.0 for v, _ in check(ex.output, f).values()), ex.id
    ex = next(e for e in task.test if e.get("findings") and len(e.get("findings")) == 1
              and dict(e.get("findings")[0])["side"] in ("left", "right"))
    f = [dict(x) for x in ex.get("findings")]
    swapped = ex.output.replace("слева", "@").replace("справа", "слева").replace("@", "справа")
    assert check(swapped, f)["mri_laterality_ok"][0] == 0.0
    assert check(ex.output + " В стволе мозга 9 очагов до 44 мм.", f)["mri_consistent"][0] == 0.0


def test_language_check():
    r = language_check("ru", ["The patient has", "Hello", "Пациент"], scores=[0.0, 0.01, 0.0])
    assert r["verdict"] == "wrong_language" or r["verdict"] == "mixed"
    assert r["at_floor"] and "gemma3-270m" in r["message"]
    assert language_check("ru", ["В лобной доле слева"])["verdict"] == "ok"
    assert language_check("en", ["Paris"])["verdict"] == "ok"


def test_slick_strata_with_a_scripted_model():
    from bench.config import RunConfig
    from bench.models.resolve import ModelSpec
    from bench.run.cache import GenerationCache
    from bench.run.context import CellContext
    from bench.run.strata import metrics_by_stratum, slick_strata
    from tests.fakes import FakeBackend

    task = load_folder(ROOT / "tasks" / "facts")
    gold = {e.instruction: e.output for e in task.test}

    def answer(prompt):
        last = [ln for ln in prompt.strip().splitlines() if ln.strip() and not ln.startswith("###")][-1]
        return gold.get(last.strip(), "no idea")

    ctx = CellContext(task=task, config=RunConfig(), seed=0, model=ModelSpec("fake", "gguf"),
                      backend=FakeBackend(answer=answer), cache=GenerationCache(None), strategy_key="x")
    strata = slick_strata(task, ctx, n_samples=1, n_greedy=2, limit=10)
    assert set(strata.values()) <= {"highly_known", "maybe_known", "weakly_known", "unknown", "unanswerable"}
    assert len(strata) == 10
    assert {strata[e.id] for e in task.test[:10] if e.answerable} == {"highly_known"}
    by = metrics_by_stratum([{"example_id": k, "scores": {"f1": 1.0}} for k in strata], strata)
    assert sum(v["f1"]["n"] for v in by.values()) == 10


def test_stratum_measures_use_each_metrics_own_aggregate():
    from bench.metrics.scoring import score_prediction
    from bench.run.strata import stratum_measures
    from bench.types import Prediction

    task = load_folder(ROOT / "tasks" / "facts")
    examples = list(task.test[:12])
    per = [score_prediction(Prediction(e.id, "I don't know" if i % 2 else e.output), e, task) for i, e in enumerate(examples)]
    strata = {e.id: ("unanswerable" if not e.answerable else ("highly_known" if i < 6 else "unknown"))
              for i, e in enumerate(examples)}
    rows = stratum_measures(task, examples, per, strata)
    assert {r.stratum for r in rows} >= {"highly_known", "unknown"}
    assert all(r.kind == "stratum" and not r.main for r in rows)
    # abstention precision within the unanswerable stratum: every abstention there is right
    prec = next(r for r in rows if r.stratum == "unanswerable" and r.metric == "abstention_precision")
    assert prec.value in (None, 1.0)


def test_language_check_flags_echoed_questions():
    q = "Составьте описательную часть заключения МРТ головного мозга по находкам."
    r = language_check("ru", [q[:40], q], scores=[0.0, 0.01], queries=[q, q])
    assert r["verdict"] == "echo" and r["echo_share"] == 1.0


def test_slick_correctness_uses_the_label_of_closed_answer_sets():
    from bench.run.strata import is_correct, stratum

    task = load_folder(ROOT / "tasks" / "pubmedqa")
    ex = task.test[0]
    label = ex.get("label")
    assert is_correct(f"{label.capitalize()}, because ...", ex, task)
    other = next(o for o in ("yes", "no", "maybe") if o != label)
    assert not is_correct(f"{other}.", ex, task)
    assert [stratum(1, 0), stratum(0.5, 0), stratum(0, 0.5), stratum(0, 0)] == \
        ["highly_known", "maybe_known", "weakly_known", "unknown"]


def test_check_run_reads_a_run_folder(tmp_path):
    from bench.report.data import load
    from bench.report.langcheck import check_run
    from bench.results import cell_id, write_rows
    from bench.types import CellKey, Measure, Row

    run = tmp_path / "run"
    cell = run / "cells" / cell_id("mri_reports_ru", "zero_shot", "smollm2-135m", 0)
    cell.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"tasks": {"mri_reports_ru": {"language": "ru"}}}))
    key = CellKey("mri_reports_ru", "1", "zero_shot", "prompting", "smollm2-135m", "0" * 12, 0)
    write_rows(run / "rows.jsonl", [Row(key, Measure("rougeL", 0.0, 3, scorer="rouge", main=True))])
    (cell / "scores.jsonl").write_text("".join(json.dumps({"example_id": f"e{i}", "answer": "The MRI shows",
                                                           "scores": {"rougeL": 0.0}}) + "\n" for i in range(3)))
    (res,) = check_run(load(run))
    assert res["task"] == "mri_reports_ru" and res["verdict"] == "wrong_language" and res["at_floor"]
