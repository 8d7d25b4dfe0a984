"""The retrieval family with the real packaged embedders and real FAISS: rag, rag_oracle, stacking,
the index cache, Russian, retrieval metrics and bad input."""

from __future__ import annotations

import logging

import pytest

from bench.config import RunConfig
from bench.errors import BenchError
from bench.metrics.retrieval import retrieval_outcomes
from bench.plugins import load_plugins
from bench.registry import STRATEGIES
from bench.run.cache import GenerationCache
from bench.run.context import CellContext
from bench.run.pipeline import parse_arm
from bench.taskio import load_folder, validate_folder
from bench.types import Doc, Example, Task
from benchmarks.ru_facts import DOCS as RU_DOCS
from benchmarks.ru_facts import QUESTIONS as RU_QUESTIONS
from strategies.retrieval import dense
from strategies.retrieval import retriever as retriever_mod
from strategies.retrieval.chunking import chunk_text
from strategies.retrieval.params import RagParams
from tests.conftest import write_task

slow = pytest.mark.slow  # loads the packaged embedders

PLANTED = {"id": "planted", "title": "Pump room 7", "text": "The Zorblax valve in pump room 7 is painted ochre and was installed by Mirelle Quandt."}
DISTRACTORS = [
    ("boiler", "Boiler house", "The boiler house runs two gas boilers rated at 400 kilowatts each."),
    ("canteen", "Canteen", "The canteen serves lunch from eleven until two; soup is free on Fridays."),
    ("parking", "Parking", "Reefer trucks park on the south lot and cars on the west lot."),
    ("fire", "Fire drills", "Fire drills take place on the second Tuesday of March and September."),
    ("wifi", "Guest network", "The guest wireless network is called Halvorsen-Guest and needs no password."),
    ("forklift", "Forklifts", "Forklifts may not exceed 6 km/h inside the halls."),
    ("waste", "Waste", "Spoiled goods are collected by Gronn Retur every Friday morning."),
    ("pumps", "Pump maintenance", "Pumps are serviced every six months by the facility's own technicians."),
]
DOCS = [PLANTED] + [{"id": i, "title": t, "text": x} for i, t, x in DISTRACTORS]
TEST = [
    {"id": "q-valve", "instruction": "What colour is the Zorblax valve painted?", "input": "", "output": "ochre", "doc_ids": ["planted"]},
    {"id": "q-drill", "instruction": "When are the fire drills held?", "input": "", "output": "second Tuesday", "doc_ids": ["fire"]},
    {"id": "q-wifi", "instruction": "What is the name of the guest Wi-Fi?", "input": "", "output": "Halvorsen-Guest", "doc_ids": ["wifi"]},
]


def make_ctx(task: Task, tmp_path, params: dict | None = None, strategy: str = "rag") -> CellContext:
    cfg = RunConfig(cache_dir=str(tmp_path / "cache"))
    if params:
        cfg = cfg.with_params({"rag": params}, "test")
    return CellContext(task=task, config=cfg, seed=0, model=None, backend=None, cache=GenerationCache(None),
                       strategy_key=f"{strategy}#x", progress=False)


def rag_for(ctx: CellContext):
    load_plugins()
    cls = STRATEGIES.get("rag")
    return cls(ctx.config.params_for("rag", cls.Params))


@pytest.fixture
def planted_task(tmp_path):
    return load_folder(write_task(tmp_path / "planted", test=TEST, docs=DOCS))


@pytest.fixture(autouse=True)
def fresh_memory():
    """Each test starts without retrievers kept in memory, so cache behaviour is the disk's."""
    retriever_mod._LOADED.clear()
    yield
    retriever_mod._LOADED.clear()


@slow
@pytest.mark.parametrize("kind", ["dense", "bm25", "hybrid"])
def test_planted_passage_is_retrieved_first(planted_task, tmp_path, kind):
    ctx = make_ctx(planted_task, tmp_path, {"retriever": kind, "k": 3})
    rag = rag_for(ctx)
    rag.prepare(ctx)
    for ex in planted_task.test:
        passages = rag.retrieve(ex, ctx)
        assert passages[0].doc_id == ex.doc_ids[0], (kind, ex.id, [p.doc_id for p in passages])
        assert [p.rank for p in passages] == list(range(1, len(passages) + 1))
        assert all(a.score >= b.score for a, b in zip(passages, passages[1:]))
    top = rag.retrieve(planted_task.test[0], ctx)[0]
    assert top.title == "Pump room 7" and "ochre" in top.text
    rag.finish(ctx)
    assert ctx.costs["index"]["retriever"] == kind and ctx.costs["index"]["vectors"] == len(DOCS)
    lat = ctx.costs["retrieval"]
    assert lat["queries"] == len(planted_task.test) + 1 and 0 < lat["p50_seconds"] <= lat["p95_seconds"]


@slow
@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_indexes_are_selectable(planted_task, tmp_path, index, caplog):
    ctx = make_ctx(planted_task, tmp_path, {"retriever": "dense", "index": index, "ivf_nlist": 16, "k": 2})
    rag = rag_for(ctx)
    with caplog.at_level(logging.WARNING):
        rag.prepare(ctx)
    assert ctx.costs["index"]["index"] == index
    if index == "ivf":  # 9 vectors cannot train 16 cells: lowered, with a warning
        assert "ivf_nlist 16 lowered to 1" in caplog.text
    assert rag.retrieve(planted_task.test[0], ctx)[0].doc_id == "planted"


@slow
def test_index_cache_hits_on_second_run_and_rebuilds_nothing(planted_task, tmp_path, monkeypatch):
    ctx1 = make_ctx(planted_task, tmp_path, {"retriever": "hybrid"})
    rag1 = rag_for(ctx1)
    rag1.prepare(ctx1)
    first = [rag1.retrieve(ex, ctx1) for ex in planted_task.test]
    c1 = ctx1.costs["index"]
    assert c1["cached"] is False and c1["source"] == "built" and c1["bytes"] > 0 and c1["build_seconds"] > 0
    folders = [p.name for p in (tmp_path / "cache" / "indexes").iterdir()]
    assert folders == [c1["key"]]  # no temporary folder left behind

    retriever_mod._LOADED.clear()  # a new process: only the disk remains
    monkeypatch.setattr(dense, "build", lambda *a, **k: pytest.fail("index rebuilt on a cache hit"))
    monkeypatch.setattr(retriever_mod.BM25Index, "build", lambda *a, **k: pytest.fail("bm25 rebuilt on a cache hit"))
    ctx2 = make_ctx(planted_task, tmp_path, {"retriever": "hybrid"})
    rag2 = rag_for(ctx2)
    rag2.prepare(ctx2)
    c2 = ctx2.costs["index"]
    assert c2["cached"] is True and c2["source"] == "disk" and c2["key"] == c1["key"]
    assert [rag2.retrieve(ex, ctx2) for ex in planted_task.test] == first

    # a different chunking is a different index
    ctx3 = make_ctx(planted_task, tmp_path, {"retriever": "hybrid", "chunk_tokens": 16, "chunk_overlap": 4})
    monkeypatch.undo()
    rag3 = rag_for(ctx3)
    rag3.prepare(ctx3)
    assert ctx3.costs["index"]["key"] != c1["key"] and ctx3.costs["index"]["vectors"] > len(DOCS)


@slow
def test_a_damaged_cached_index_is_rebuilt(planted_task, tmp_path, caplog):
    import shutil

    ctx = make_ctx(planted_task, tmp_path, {"retriever": "bm25"})
    rag_for(ctx).prepare(ctx)
    folder = tmp_path / "cache" / "indexes" / ctx.costs["index"]["key"]
    shutil.rmtree(folder / "bm25")
    retriever_mod._LOADED.clear()
    ctx2 = make_ctx(planted_task, tmp_path, {"retriever": "bm25"})
    rag = rag_for(ctx2)
    with caplog.at_level(logging.WARNING):
        rag.prepare(ctx2)
    assert "unreadable" in caplog.text and ctx2.costs["index"]["cached"] is False
    assert rag.retrieve(planted_task.test[0], ctx2)[0].doc_id == "planted"


@slow
def test_russian_query_retrieves_its_russian_passage(tmp_path):
    docs = [{"id": i, "title": t, "text": x} for i, t, x in RU_DOCS]
    wanted = {"q-night", "q-forklift", "q-audit2", "q-temp2", "q-waste2"}
    test = [{"id": q, "instruction": text, "input": "", "output": "-", "doc_ids": [d]}
            for q, text, d in RU_QUESTIONS if q in wanted]
    task = load_folder(write_task(tmp_path / "ru", test=test, docs=docs, language="ru"))
    ctx = make_ctx(task, tmp_path)  # defaults: retriever auto -> hybrid, embedder auto -> multilingual e5
    rag = rag_for(ctx)
    rag.prepare(ctx)
    assert ctx.costs["index"]["retriever"] == "hybrid"
    assert ctx.costs["index"]["embedder"] == "multilingual-e5-small"
    for ex in task.test:
        assert rag.retrieve(ex, ctx)[0].doc_id == ex.doc_ids[0], ex.instruction


@slow
def test_stacked_arms_retrieve_identical_passages(planted_task, tmp_path):
    load_plugins()
    cfg = RunConfig(cache_dir=str(tmp_path / "cache")).with_params(
        {"rag": {"retriever": "hybrid", "k": 2, "chunk_tokens": 24, "chunk_overlap": 8}}, "test")
    specs = ["rag", "rag+cot", "rag+few_shot", "cot+rag"]
    if "lora" in STRATEGIES:
        specs.append("lora+rag")
    got = {}
    for spec in specs:
        arm = parse_arm(spec, cfg)
        assert arm.retrieval.params == cfg.params_for("rag", RagParams)
        ctx = CellContext(task=planted_task, config=cfg, seed=0, model=None, backend=None, cache=GenerationCache(None),
                          strategy_key=arm.key, progress=False)
        arm.retrieval.prepare(ctx)
        got[spec] = [arm.retrieval.retrieve(ex, ctx) for ex in planted_task.test]
    first = got["rag"]
    assert all(len(p) == 2 for p in first)
    for spec, passages in got.items():
        assert passages == first, spec


def test_rag_oracle_gives_the_gold_documents(planted_task, tmp_path):
    load_plugins()
    ctx = make_ctx(planted_task, tmp_path, strategy="rag_oracle")
    oracle = STRATEGIES.get("rag_oracle")()
    oracle.prepare(ctx)
    p = oracle.retrieve(planted_task.test[0], ctx)
    assert [(x.doc_id, x.rank, x.text) for x in p] == [("planted", 1, PLANTED["text"])]
    unanswerable = Example(id="u", instruction="?", input="", output="", answerable=False)
    assert oracle.retrieve(unanswerable, ctx) == []


@slow
def test_k_larger_than_corpus_is_clamped_with_a_warning(planted_task, tmp_path, caplog):
    ctx = make_ctx(planted_task, tmp_path, {"retriever": "bm25", "k": 50})
    rag = rag_for(ctx)
    with caplog.at_level(logging.WARNING):
        rag.prepare(ctx)
    assert "k=50 is larger than the corpus" in caplog.text and ctx.costs["index"]["k_clamped_to"] == len(DOCS)
    ctx2 = make_ctx(planted_task, tmp_path, {"retriever": "dense", "k": 50})
    rag2 = rag_for(ctx2)
    rag2.prepare(ctx2)
    assert len(rag2.retrieve(planted_task.test[0], ctx2)) == len(DOCS)


def _task(docs, train=()) -> Task:
    return Task(name="t", version="1", description="", language="en", kind="qa", metrics=("f1",), main_metric="f1",
                source="", license="", train=tuple(train), test=(Example("q", "question?", "", "a"),), docs=tuple(docs))


@pytest.mark.parametrize("docs, message", [
    ([], "retrieval corpus is empty"),
    ([Doc("a", "t", "x"), Doc("a", "t", "y")], "duplicate document id 'a'"),
    ([Doc("a", "t", "  ")], "no document in the retrieval corpus has text"),
])
def test_bad_corpora_are_one_line_bench_errors(tmp_path, docs, message):
    ctx = make_ctx(_task(docs), tmp_path)
    with pytest.raises(BenchError, match=message) as e:
        rag_for(ctx).prepare(ctx)
    assert "\n" not in str(e.value)


def test_task_loader_rejects_bad_docs_before_any_run(tmp_path):
    dup = write_task(tmp_path / "dup", docs=[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    assert any("duplicate doc id 'a'" in p for p in validate_folder(dup))
    empty = write_task(tmp_path / "notext", docs=[{"id": "a", "title": "t", "text": ""}])
    assert any("has no text" in p for p in validate_folder(empty))
    nowhere = write_task(tmp_path / "nowhere", docs=[{"id": "a", "text": "x"}],
                         test=[{"id": "q", "instruction": "?", "input": "", "output": "a", "doc_ids": ["zz"]}])
    assert any("point nowhere" in p for p in validate_folder(nowhere))


@pytest.mark.parametrize("params, message", [
    ({"retriever": "sparse"}, "retriever must be one of"),
    ({"index": "ivfpq"}, "index must be one of"),
    ({"chunk_tokens": 32, "chunk_overlap": 32}, "chunk_overlap must be"),
    ({"k": 0}, "k must be >= 1"),
    ({"chunk_size": 3}, "unknown key 'chunk_size'"),
])
def test_bad_params_are_rejected_at_config_load(params, message):
    with pytest.raises(BenchError, match=message):
        RunConfig().with_params({"rag": params}, "run.yaml")


@slow
def test_train_split_is_the_corpus_without_docs(tmp_path):
    task = load_folder(write_task(tmp_path / "nodocs"))
    ctx = make_ctx(task, tmp_path, {"retriever": "bm25", "k": 1})
    rag = rag_for(ctx)
    rag.prepare(ctx)
    assert ctx.costs["index"]["docs"] == len(task.train)
    assert rag.retrieve(Example("x", "What is 3 plus 3?", "", "6"), ctx)[0].doc_id == "tr3"


@slow
def test_chunks_respect_the_token_window_and_overlap():
    from bench.models.embedders import load_embedder

    text = " ".join(f"token{i}" for i in range(200))
    for name in ("all-minilm-l6-v2", "multilingual-e5-small"):
        emb = load_embedder(name)
        chunks = chunk_text(text, emb, 40, 10)
        assert len(chunks) > 3 and all(c in text for c in chunks)
        assert all(emb.count_tokens(c) <= 41 for c in chunks), name
        assert chunks[0].split()[-2] in chunks[1]  # consecutive windows overlap
        assert chunks[-1].endswith("token199")


def test_retrieval_outcomes_counts_the_four_classes():
    records = [
        {"example_id": "a", "doc_ids": ["d1"], "retrieved": ["d1", "d2"], "correct": True},
        {"example_id": "b", "doc_ids": ["d1"], "retrieved": ["d2", "d2", "d1"], "correct": False},
        {"example_id": "c", "doc_ids": ["d3"], "retrieved": ["d1", "d2", "d4"], "correct": True},
        {"example_id": "d", "doc_ids": ["d3", "d4"], "retrieved": ["d4"], "correct": False},
        {"example_id": "e", "doc_ids": [], "retrieved": ["d1"], "correct": True},
        {"example_id": "f", "doc_ids": ["d9"], "retrieved": [], "correct": False},
    ]
    out = retrieval_outcomes(records, k=2)
    assert out["n"] == 5 and out["n_without_gold"] == 1
    assert out["classes"] == {"retrieved_right": 1, "retrieved_wrong": 2, "missed_right": 1, "missed_wrong": 1}
    assert out["recall_at_k"] == pytest.approx((1 + 1 + 0 + 0.5 + 0) / 5)  # b: d2 twice is one document
    assert out["mrr"] == pytest.approx((1 + 0.5 + 0 + 1 + 0) / 5)
    flipped = retrieval_outcomes(records, k=1, correct_fn=lambda r: not r["correct"])
    assert flipped["classes"]["retrieved_wrong"] == 1 and flipped["recall_at_k"] == pytest.approx((1 + 0 + 0 + 0.5) / 5)


@slow
def test_rag_arms_run_through_the_runner(planted_task, tmp_path, fake_gguf):
    """rag, rag+cot and rag_oracle in a real grid with a scripted model: passages reach the prompt,
    costs and retrieved ids reach the cell files, and a rerun reuses the cached index."""
    import json

    from bench.atomic import read_jsonl
    from bench.metrics.retrieval import records_from_scores
    from bench.run.grid import run_grid
    from tests.fakes import FakeBackend, FakePool

    cfg = RunConfig().replace(tasks=(str(planted_task.path),), strategies=("rag", "rag+cot", "rag_oracle"),
                              model=str(fake_gguf), out=str(tmp_path / "results"), seeds=(0,),
                              params={"rag": {"retriever": "dense", "k": 2}})
    backend = FakeBackend(answer=lambda prompt: "ochre" if "ochre" in prompt else "I don't know")
    res = run_grid(cfg, progress=False, log=lambda m: None, pool=FakePool(backend))
    assert not res.cells_failed
    cells = {p.name: p for p in (res.run_dir / "cells").iterdir()}
    rag_cell = next(p for n, p in cells.items() if "__rag__" in n)
    cost = json.loads((rag_cell / "cost.json").read_text())
    assert cost["index"]["retriever"] == "dense" and cost["retrieval"]["queries"] == len(TEST)
    scores = read_jsonl(rag_cell / "scores.jsonl")
    valve = next(s for s in scores if s["example_id"] == "q-valve")
    assert valve["info"]["retrieved"][0] == "planted" and valve["answer"] == "ochre"
    out = retrieval_outcomes(records_from_scores(scores, "exact_match"), k=2)
    assert out["recall_at_k"] == 1.0 and out["classes"]["retrieved_right"] == 1
    oracle_cell = next(p for n, p in cells.items() if "rag_oracle" in n)
    assert all(s["info"]["retrieved"] == s["doc_ids"] for s in read_jsonl(oracle_cell / "scores.jsonl"))
    assert any("Pump room 7" in p for p in backend.prompts)

    retriever_mod._LOADED.clear()
    again = run_grid(cfg.replace(run_id="second"), progress=False, log=lambda m: None, pool=FakePool(backend))
    rag2 = next(p for p in (again.run_dir / "cells").iterdir() if "__rag__" in p.name)
    assert json.loads((rag2 / "cost.json").read_text())["index"]["cached"] is True
