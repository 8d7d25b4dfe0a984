"""Benchmark: bench's retrieval path against raw sentence-transformers + FAISS, in the same process.

Measures index build (chunk + embed + index) and one-query-at-a-time search latency over N
synthetic passages (deterministic, seed 0), first with the plain libraries, then through
`bench.retrieval.Retriever` (exact IndexFlatIP, MiniLM, fresh cache folder), and prints both, their
ratio (raw / bench: 1.0 = no overhead; target >= 0.9) and the load average, since the numbers on a
shared 2-core machine move with it. `--quality` adds recall on the small Russian set
(benchmarks/ru_facts.py) for each retriever, which is how the non-English default was chosen.

    python benchmarks/retrieval.py                       # 10,000 passages, 200 queries
    python benchmarks/retrieval.py --passages 2000 --queries 50 --rounds 3 --quality
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.types import Doc  # noqa: E402

SUBJECTS = ["pump", "valve", "freezer hall", "loading dock", "forklift", "compressor", "generator", "conveyor",
            "alarm panel", "ammonia line", "pallet rack", "door seal", "evaporator", "sensor", "badge reader"]
PLACES = ["north wing", "south wing", "hall A", "hall B", "hall C", "the roof", "the basement", "dock 4",
          "the workshop", "the control room", "the yard", "the canteen"]
VERBS = ["is inspected", "is serviced", "is replaced", "is calibrated", "is cleaned", "is tested", "is logged"]
PEOPLE = ["Ingrid Solberg", "Mirelle Quandt", "Tor Havik", "Anja Lund", "Piet Marsk", "Oda Brenne", "Kai Strom"]
WHEN = ["every Monday", "each night shift", "twice a month", "after each delivery", "every spring", "on Fridays"]


def synthetic_docs(n: int, seed: int = 0) -> list[Doc]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        s, p = rng.choice(SUBJECTS), rng.choice(PLACES)
        text = (f"The {s} number {i} in {p} {rng.choice(VERBS)} {rng.choice(WHEN)} by {rng.choice(PEOPLE)}. "
                f"Its rated load is {rng.randint(10, 990)} kilograms and its code is {rng.randint(1000, 9999)}-"
                f"{rng.choice('ABCDEFGH')}. Faults are reported to {rng.choice(PEOPLE)} in {rng.choice(PLACES)}.")
        docs.append(Doc(id=f"p{i}", title=f"Asset {i}: {s}", text=text))
    return docs


def queries_for(docs: list[Doc], n: int, seed: int = 1) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    picks = rng.sample(docs, min(n, len(docs)))
    return [(f"Who services the {d.title.split(': ')[1]} number {d.id[1:]} and how often?", d.id) for d in picks]


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def raw_build(docs, batch_size: int):
    import faiss
    from sentence_transformers import SentenceTransformer

    from bench.models.embedders import minilm_path

    model = SentenceTransformer(str(minilm_path()), device="cpu")
    texts = [f"{d.title}: {d.text}" for d in docs]
    t0 = time.perf_counter()
    vecs = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False).astype(np.float32)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    build = time.perf_counter() - t0

    def search(q: str) -> str:
        qv = model.encode([q], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        _, ids = index.search(np.asarray(qv, dtype=np.float32), 4)
        return docs[int(ids[0][0])].id

    return build, search


def bench_build(docs, batch_size: int, cache: Path):
    from bench.models.embedders import load_embedder
    from strategies.retrieval.params import RagParams
    from strategies.retrieval.retriever import Retriever

    load_embedder("all-minilm-l6-v2")  # loading the model is not index work (the raw path loads it too)
    params = RagParams(retriever="dense", embedder="all-minilm-l6-v2", k=4, batch_size=batch_size)
    t0 = time.perf_counter()
    r, cost = Retriever.open(docs, params, "en", cache)
    build = time.perf_counter() - t0
    assert len(r.chunks) == len(docs), "synthetic passages must fit one chunk each"
    return build, (lambda q: r.search(q, 4)[0].doc_id), cost, params


def reopen(docs, params, cache: Path) -> tuple[float, float, bool]:
    from strategies.retrieval import retriever as mod

    t0 = time.perf_counter()
    mod.Retriever.open(docs, params, "en", cache)  # from the in-process memo
    t1 = time.perf_counter()
    mod._LOADED.clear()
    _, cost = mod.Retriever.open(docs, params, "en", cache)  # from the disk cache
    return t1 - t0, time.perf_counter() - t1, cost["cached"]


def timed_queries(paths: dict, queries) -> dict:
    """Queries one at a time, the paths interleaved per query so load changes hit both alike."""
    lat = {name: [] for name in paths}
    hits = {name: 0 for name in paths}
    agree = 0
    for q, gold in queries:
        tops = []
        for name, search in paths.items():
            t = time.perf_counter()
            got = search(q)
            lat[name].append(time.perf_counter() - t)
            hits[name] += got == gold
            tops.append(got)
        agree += len(set(tops)) == 1
    return {name: {"p50": pct(lat[name], 50), "p95": pct(lat[name], 95), "hit1": hits[name] / len(queries),
                   "agree": agree / len(queries)} for name in paths}


def quality() -> None:
    from bench.metrics.retrieval import retrieval_outcomes
    from benchmarks.ru_facts import DOCS, QUESTIONS
    from strategies.retrieval.params import RagParams
    from strategies.retrieval.retriever import Retriever

    docs = [Doc(*d) for d in DOCS]
    print(f"\nRussian set: {len(docs)} docs, {len(QUESTIONS)} questions (title not indexed, to make it harder)")
    configs = [("dense", "all-minilm-l6-v2", "none"), ("dense", "multilingual-e5-small", "none"),
               ("bm25", "multilingual-e5-small", "none"), ("bm25", "multilingual-e5-small", "prefix"),
               ("hybrid", "all-minilm-l6-v2", "prefix"), ("hybrid", "multilingual-e5-small", "none"),
               ("hybrid", "multilingual-e5-small", "prefix")]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, emb, stem in configs:
            p = RagParams(retriever=kind, embedder=emb, stemming=stem, k=3, include_title=False)
            r, _ = Retriever.open(docs, p, "ru", Path(tmp))
            recs = [{"example_id": q, "doc_ids": [d], "retrieved": [x.doc_id for x in r.search(t, 3)], "correct": True}
                    for q, t, d in QUESTIONS]
            m1, m3 = retrieval_outcomes(recs, 1), retrieval_outcomes(recs, 3)
            name = f"{kind} ({emb if kind != 'bm25' else 'terms'}, stemming={stem})"
            print(f"  {name:58s} R@1={m1['recall_at_k']:.3f}  R@3={m3['recall_at_k']:.3f}  MRR@3={m3['mrr']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=1, help="builds per path, alternating order; the best counts")
    ap.add_argument("--quality", action="store_true", help="also measure recall on the Russian set")
    args = ap.parse_args()
    docs = synthetic_docs(args.passages)
    queries = queries_for(docs, args.queries)
    print(f"{len(docs)} passages, {len(queries)} queries, MiniLM, IndexFlatIP; torch threads {__import__('torch').get_num_threads()}")
    print(f"start: {load()}")
    raw_times, bench_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # alternate which path builds first: load drifts over minutes
            for path in (("raw", "bench") if r % 2 == 0 else ("bench", "raw")):
                if path == "raw":
                    raw_s, raw_search = raw_build(docs, args.batch_size)
                    raw_times.append(raw_s)
                    print(f"build  raw sentence-transformers + faiss: {raw_s:.2f}s  "
                          f"({len(docs) / raw_s:.0f} passages/s; {load()})")
                else:
                    from strategies.retrieval import retriever as mod

                    mod._LOADED.clear()
                    cache = Path(tmp) / f"round{r}"
                    bench_s, bench_search, cost, params = bench_build(docs, args.batch_size, cache)
                    bench_times.append(bench_s)
                    print(f"build  bench Retriever (chunk+embed+index+cache write): {bench_s:.2f}s  "
                          f"({len(docs) / bench_s:.0f} passages/s; {load()})")
        memo_s, disk_s, cached = reopen(docs, params, cache)
        print(f"cache  {cost['bytes'] / 1e6:.1f} MB on disk; reopen from memory {memo_s * 1e3:.1f}ms, "
              f"from disk {disk_s:.2f}s (cached={cached})")
        q = timed_queries({"raw": raw_search, "bench": bench_search}, queries)
    raw_s, bench_s = min(raw_times), min(bench_times)
    for name in ("raw", "bench"):
        print(f"query  {name:5s}: p50 {q[name]['p50'] * 1e3:.1f}ms  p95 {q[name]['p95'] * 1e3:.1f}ms  "
              f"hit@1 {q[name]['hit1']:.3f}  (same top-1 in both paths: {q[name]['agree']:.3f})")
    print(f"ratio raw/bench (1.0 = no overhead, target >= 0.9): build {raw_s / bench_s:.3f} (best of {args.rounds})  "
          f"query p50 {q['raw']['p50'] / q['bench']['p50']:.3f}  p95 {q['raw']['p95'] / q['bench']['p95']:.3f}   ({load()})")
    if args.quality:
        quality()
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
