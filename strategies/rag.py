"""The retrieval strategies: `rag` (FAISS / BM25 / hybrid over the task's docs) and `rag_oracle`.

Both plug into any arm (`rag+cot`, `lora+rag`): the runner calls `prepare(ctx)` once per cell,
`retrieve(example, ctx)` per test item, and `finish(ctx)` at the end of the cell. `rag` takes its
settings from `params.rag` (bench.retrieval.RagParams), the same object for every arm it appears
in, so stacked arms retrieve identical passages. `rag_oracle` hands the reader the gold documents
named by each item's `doc_ids`: the reader's ceiling, against which `rag`'s retrieval losses show.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from bench.errors import BenchError
from bench.prompts import format_query
from bench.registry import STRATEGIES
from bench.stats import percentile
from bench.types import Example, Passage
from strategies.base import NoParams, RetrievalStrategy
from strategies.retrieval.params import RagParams
from strategies.retrieval.retriever import Retriever

log = logging.getLogger(__name__)


class LatencyLog:
    """Per-query retrieval seconds, summarised as the `retrieval` section of cost.json."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def add(self, seconds: float) -> None:
        self.seconds.append(seconds)

    def summary(self) -> dict:
        s = self.seconds or [0.0]
        return {
            "queries": len(self.seconds),
            "p50_seconds": round(percentile(s, 50), 6),
            "p95_seconds": round(percentile(s, 95), 6),
            "mean_seconds": round(sum(s) / len(s), 6),
            "total_seconds": round(sum(s), 4),
        }


@STRATEGIES.register("rag")
class Rag(RetrievalStrategy):
    name = "rag"
    description = ("retrieval-augmented generation: top-k passages from the task's docs (FAISS over "
                   "sentence embeddings; BM25 or hybrid for non-English) in the prompt")
    Params = RagParams

    def __init__(self, params=None):
        super().__init__(params)
        self.retriever: Retriever | None = None
        self.latency = LatencyLog()
        self._warned_k = False

    def prepare(self, ctx) -> None:
        where = f"task {ctx.task.name}"
        self.retriever, cost = Retriever.open(
            self.corpus(ctx), self.params, ctx.task.language,
            cache_dir=ctx.config.resolved_cache_dir() / "indexes", progress=ctx.progress, where=where,
        )
        self.latency = LatencyLog()
        self._warned_k = False
        ctx.record_cost("index", **cost)
        n = len(self.retriever.chunks)
        if self.params.k > n:
            log.warning("rag: k=%d is larger than the corpus of task %s (%d passages); every query gets all %d",
                        self.params.k, ctx.task.name, n, n)
            ctx.record_cost("index", k_clamped_to=n)

    def retrieve(self, example: Example, ctx) -> list[Passage]:
        if self.retriever is None:
            raise BenchError("rag: retrieve() before prepare(); the runner must call prepare(ctx) once per cell")
        t0 = time.perf_counter()
        passages = self.retriever.search(format_query(example), self.params.k)
        self.latency.add(time.perf_counter() - t0)
        ctx.record_cost("retrieval", k=self.params.k, **self.latency.summary())
        return passages

    def finish(self, ctx) -> None:
        """End of cell: the final latency summary (already kept current by every retrieve)."""
        ctx.record_cost("retrieval", k=self.params.k, **self.latency.summary())


@STRATEGIES.register("rag_oracle")
class RagOracle(RetrievalStrategy):
    name = "rag_oracle"
    description = "the gold documents of each item (its doc_ids) in the prompt: the reader's ceiling for rag"
    Params = NoParams
    diagnostic = True

    def check(self, task) -> Optional[str]:
        if not any(e.doc_ids for e in task.test):
            return (f"strategy rag_oracle: task {task.name} has no test item with doc_ids naming its gold documents; "
                    "add doc_ids to test.jsonl or drop rag_oracle")
        return super().check(task)

    def prepare(self, ctx) -> None:
        docs = self.corpus(ctx)
        self.by_id = {d.id: d for d in docs}
        ctx.record_cost("index", seconds=0.0, cached=True, retriever="oracle", vectors=0, docs=len(docs))

    def retrieve(self, example: Example, ctx) -> list[Passage]:
        out = []
        for rank, doc_id in enumerate(dict.fromkeys(example.doc_ids), start=1):
            d = self.by_id.get(doc_id)
            if d is None:
                raise BenchError(f"task {ctx.task.name}: test item {example.id!r} names doc_id {doc_id!r}, which is not in docs.jsonl")
            out.append(Passage(doc_id=d.id, title=d.title, text=d.text, score=1.0, rank=rank))
        return out
