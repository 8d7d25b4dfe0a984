"""The tasks whose right strategy is known by construction (codes, townfacts, capitals): their generators
and the properties that make the truth hold (no model needed)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.metrics.base import references
from bench.metrics.text import ExactMatch
from bench.plugins import load_plugins
from bench.registry import TASKS
from bench.synth import capitals, codes, townfacts
from bench.synth.capitals_data import COUNTRIES
from bench.synth.common import folder_digest
from bench.taskio import load_folder, validate_folder
from bench.textnorm import normalize_answer

ROOT = Path(__file__).resolve().parents[1]
KNOWN = ("codes", "townfacts", "capitals")

TINY_DIGESTS = {  # bench.synth.common.folder_digest of the tiny configurations (generators v1.0)
    "codes": "8a086454f135062d5a8afcbeec371aaaab2ffc1e32b6b0fe51668e4aafbba4bd",
    "townfacts": "533a9686f4695505b9a6fc0f2031292edacca297a72d1439ecd16c908188e082",
    "capitals": "4a961841c5a563c4810a0aaa4da84eec5d0e782e6c155c7cf3cc5d6e450c7cab",
}


def _generate(name: str, cfg, out: Path) -> dict:
    gen = {"codes": codes, "townfacts": townfacts, "capitals": capitals, "capitals_slick": capitals}[name]
    return gen.generate(cfg, out, name)


def _committed_config(name: str):
    cfg = dict(json.loads((ROOT / "tasks" / name / "manifest.json").read_text(encoding="utf-8"))["config"])
    if name == "codes":
        return codes.CodesConfig(**cfg)
    if name == "townfacts":
        return townfacts.TownfactsConfig(**cfg)
    cfg["drop"] = tuple(cfg["drop"])
    return capitals.CapitalsConfig(**cfg)


@pytest.mark.parametrize("name,tiny", [("codes", codes.TINY), ("townfacts", townfacts.TINY), ("capitals", capitals.TINY)])
def test_generators_are_deterministic(tmp_path, name, tiny):
    _generate(name, tiny, tmp_path / "a")
    _generate(name, tiny, tmp_path / "b")
    assert folder_digest(tmp_path / "a") == folder_digest(tmp_path / "b") == TINY_DIGESTS[name]
    assert validate_folder(tmp_path / "a") == []
    _generate(name, replace(tiny, seed=tiny.seed + 1), tmp_path / "c")
    assert folder_digest(tmp_path / "c") != folder_digest(tmp_path / "a")  # the seed matters


@pytest.mark.parametrize("name", KNOWN + ("capitals_slick",))
def test_committed_folders_match_their_generator(tmp_path, name):
    _generate(name, _committed_config(name), tmp_path / name)
    assert folder_digest(tmp_path / name) == folder_digest(ROOT / "tasks" / name)


def test_bench_validate_passes_and_tasks_register_themselves():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for name in KNOWN:
        res = subprocess.run([sys.executable, "-m", "bench", "validate", str(ROOT / "tasks" / name)],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    load_plugins()
    for name in KNOWN:
        d = TASKS.get(name).describe()
        assert d["license"].startswith("CC0") and d["language"] == "en"
        assert d["test"] >= (80 if name == "capitals" else 120), name  # capitals: what the model knows
        meta = load_folder(ROOT / "tasks" / name)
        assert meta.main_metric == "exact_match" and meta.kind == "qa" and meta.instruction


# -- codes: the format is only learnable from the training pairs -----------------------------------------------


def _codes():
    return load_folder(ROOT / "tasks/codes"), _committed_config("codes")


def test_codes_table_is_arbitrary_and_the_rule_holds():
    task, cfg = _codes()
    table = codes.code_table(cfg)
    assert len(set(table.values())) == len(table) == cfg.kinds  # one code per kind
    for kind, code in table.items():
        assert len(code) == 2 and code.isalpha() and code.isupper()
        assert not set(code.lower()) & set(kind), (kind, code)  # not derivable from the word
    for e in [*task.train, *task.test]:
        kind, lot = e.get("product_kind"), int(e.input.rsplit("lot:", 1)[1])
        assert kind in e.input and e.output == f"{table[kind]}-{lot}"


def test_codes_train_teaches_every_test_kind_but_never_a_test_answer():
    task, cfg = _codes()
    train_kinds = Counter(e.get("product_kind") for e in task.train)
    for e in task.test:
        assert train_kinds[e.get("product_kind")] >= 10, e.id
    outputs = [e.output for e in [*task.train, *task.test]]
    assert len(set(outputs)) == len(outputs)  # every code once: retrieval never finds the answer to copy
    assert 150 <= len(task.train) <= 300 and len(task.test) >= 120


def test_codes_three_random_exemplars_rarely_show_the_needed_kind():
    task, _ = _codes()
    n = len(task.train)
    kinds = Counter(e.get("product_kind") for e in task.train)
    # chance that k = 3 exemplars drawn without replacement from train include one of the item's kind
    p = [1 - math.comb(n - kinds[e.get("product_kind")], 3) / math.comb(n, 3) for e in task.test]
    assert sum(p) / len(p) < 0.15


def test_codes_any_prefix_spans_the_kinds():
    task, cfg = _codes()
    assert {e.get("product_kind") for e in task.test[: cfg.kinds]} == set(codes.KINDS[: cfg.kinds])


# -- townfacts: the facts are only in the documents ---------------------------------------------------------------


def test_townfacts_answers_are_spans_of_their_gold_document_only():
    task = load_folder(ROOT / "tasks/townfacts")
    docs = {d.id: d for d in task.docs}
    for e in [*task.train, *task.test]:
        assert len(e.doc_ids) == 1 and e.doc_ids[0] in docs
        gold = docs[e.doc_ids[0]].text
        assert e.output in gold, e.id
        assert 1 <= len(e.output.split()) <= 3
        town = docs[e.doc_ids[0]].title.split(" (")[0]
        assert town in e.instruction
        others = [d for d in task.docs if d.id != e.doc_ids[0] and town in d.text]
        assert not others, (e.id, [d.id for d in others])  # the town is named in its own document only


def test_townfacts_train_never_holds_a_test_fact():
    task = load_folder(ROOT / "tasks/townfacts")
    train_text = " ".join(f"{e.instruction} {' '.join(references(e))}" for e in task.train).lower()
    train_answers = {normalize_answer(r) for e in task.train for r in references(e)}
    for e in task.test:
        assert normalize_answer(e.output) not in train_answers, e.id
        assert e.output.lower() not in train_text, e.id
    assert {e.get("town") for e in task.train}.isdisjoint({e.get("town") for e in task.test})
    assert 60 <= len(task.train) <= 120 and len(task.test) >= 120
    assert {e.get("relation") for e in task.test[:10]} == set(townfacts.RELATIONS)  # a prefix spans the relations


def test_townfacts_docs_cover_every_town_and_retrieval_is_possible():
    task = load_folder(ROOT / "tasks/townfacts")
    towns = {e.get("town") for e in [*task.train, *task.test]}
    assert {d.id.rsplit("-doc", 1)[0] for d in task.docs} == towns
    stats = json.loads((ROOT / "tasks/townfacts/manifest.json").read_text(encoding="utf-8"))["stats"]
    assert stats["retrieval"]["bm25_recall@5"] >= 0.95


# -- capitals: the base model already knows -----------------------------------------------------------------------


def test_capitals_items_are_unique_true_and_split_by_country():
    task = load_folder(ROOT / "tasks/capitals")
    cfg = _committed_config("capitals")
    table = {capitals._bare(c): (cap, c) for c, cap, _, _ in COUNTRIES}
    items = [*task.train, *task.test]
    assert len({e.id for e in items}) == len({e.instruction for e in items}) == len(items)
    assert {e.get("country") for e in task.train}.isdisjoint({e.get("country") for e in task.test})
    for e in items:
        capital, country = table[e.get("country")]
        assert e.output == (capital if e.get("direction") == "capital" else capitals._bare(country))
    assert not {e.id for e in task.test} & set(cfg.drop)
    assert len(task.test) >= 80 and 30 <= len(task.train) <= 80  # 93 of 302 survive the screening
    assert {e.get("direction") for e in task.test[:2]} == set(capitals.DIRECTIONS)


def test_capitals_screening_is_recorded():
    man = json.loads((ROOT / "tasks/capitals/manifest.json").read_text(encoding="utf-8"))
    assert man["config"]["screening"], "the committed capitals folder must be screened against the base model"
    assert man["stats"]["dropped"] == len(man["config"]["drop"])
    assert man["stats"]["test"] == man["stats"]["test_before_screening"] - man["stats"]["dropped"]


def test_capitals_accept_the_name_and_the_fact_stated_in_one_sentence(tmp_path):
    capitals.generate(replace(_committed_config("capitals"), drop=(), screening=""), tmp_path / "all")
    task = load_folder(tmp_path / "all")
    by_id = {e.id: e for e in [*task.train, *task.test]}
    em = ExactMatch()
    right = {"capital-kenya": ("Nairobi", "The capital of Kenya is Nairobi.", "Nairobi is the capital of Kenya"),
             "country-kenya": ("Kenya", "Nairobi is the capital of Kenya.", "The capital of Kenya is Nairobi")}
    wrong = {"capital-kenya": ("Mombasa", "The capital of Kenya is Mombasa", "Kenya"),
             "country-kenya": ("Nairobi", "Nairobi is the capital of Uganda", "Uganda")}
    for item_id in right:
        for answer in right[item_id]:
            assert em.score(answer, by_id[item_id], task)["exact_match"].value == 1.0, (item_id, answer)
        for answer in wrong[item_id]:
            assert em.score(answer, by_id[item_id], task)["exact_match"].value == 0.0, (item_id, answer)


def test_capitals_refuses_a_stale_drop_list(tmp_path):
    with pytest.raises(BenchError) as e:
        capitals.generate(replace(capitals.TINY, drop=("capital-atlantis",)), tmp_path / "x")
    assert "capital-atlantis" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("gen,cfg,field", [
    (codes, replace(codes.TINY, kinds=1), "kinds"),
    (codes, replace(codes.TINY, kinds=99), "kinds"),
    (codes, replace(codes.TINY, train_per_kind=80, lot_max=50), "lot"),
    (townfacts, replace(townfacts.TINY, test_towns=0), "test_towns"),
    (townfacts, replace(townfacts.TINY, year_min=1800, year_max=1805), "year"),
    (capitals, replace(capitals.TINY, train_countries=0), "train_countries"),
])
def test_generator_parameter_out_of_range(tmp_path, gen, cfg, field):
    with pytest.raises(BenchError) as e:
        gen.generate(cfg, tmp_path / "x")
    assert field in str(e.value) and "\n" not in str(e.value)


def test_capitals_slick_asks_about_invented_countries_whose_answer_is_to_abstain():
    task = load_folder(ROOT / "tasks" / "capitals_slick")
    invented = [e for e in task.test if not e.answerable]
    real = {e.get("country") for e in task.train} | {e.get("country") for e in task.test if e.answerable}
    assert len(invented) == capitals.SLICK.unanswerable and all(e.output == task.abstain_phrase for e in invented)
    assert not {e.get("country") for e in invented} & real and task.abstain_phrase in task.instruction
    assert {e.get("direction") for e in invented} == {"capital", "country"}
