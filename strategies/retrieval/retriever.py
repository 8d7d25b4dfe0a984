"""One retriever over one corpus: chunk, embed, index (dense, BM25 or both), cache, and search.

`Retriever.open` is the only entry point: it checks the corpus, resolves "auto" settings from the
task language, loads the index from the cache or builds it (recording what it cost), and returns a
retriever whose `search(query, k)` gives ranked `Passage`s. Loaded retrievers are also kept in
memory for the life of the process, so the cells of a run that share an index load it once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from bench.errors import BenchError
from bench.models.embedders import fingerprint_of, load_embedder
from bench.types import Doc, Passage
from strategies.retrieval import dense
from strategies.retrieval.bm25 import BM25Index
from strategies.retrieval.cache import META, IndexCache, corpus_sha256, folder_bytes, index_key
from strategies.retrieval.chunking import Chunk, chunk_docs
from strategies.retrieval.hybrid import rrf
from strategies.retrieval.params import RagParams

log = logging.getLogger(__name__)
_LOADED: dict[str, "Retriever"] = {}
_MAX_LOADED = 8


def check_corpus(docs: Sequence[Doc], where: str) -> None:
    """Bad corpora fail here with one line, before any model is loaded."""
    if not docs:
        raise BenchError(f"{where}: the retrieval corpus is empty; add documents to docs.jsonl (or examples to train.jsonl)")
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise BenchError(f"{where}: duplicate document id {d.id!r} in the retrieval corpus; make ids unique")
        seen.add(d.id)
    if not any(d.text.strip() for d in docs):
        raise BenchError(f"{where}: no document in the retrieval corpus has text; fill the 'text' fields")


@dataclass
class Retriever:
    kind: str  # dense | bm25 | hybrid
    params: RagParams
    chunks: list[Chunk]
    key: str
    embedder_name: str
    index: Any = None  # FAISS index (dense, hybrid)
    bm25: Optional[BM25Index] = None  # (bm25, hybrid)
    embedder: Any = None
    meta: dict = field(default_factory=dict)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def open(cls, docs: Sequence[Doc], params: RagParams, language: str, cache_dir: Path,
             progress: bool = False, where: str = "rag") -> tuple["Retriever", dict]:
        """The retriever for `docs` and what opening it cost (the `index` section of cost.json)."""

        check_corpus(docs, where)
        kind = params.resolved_retriever(language)
        emb_name = params.resolved_embedder(language)
        stemming = params.resolved_stemming(language)
        parts: dict[str, Any] = {
            "corpus": corpus_sha256(docs),
            "chunking": {"tokenizer": fingerprint_of(emb_name), "window": params.chunk_tokens,
                         "overlap": params.chunk_overlap, "title": params.include_title},
            "retriever": kind,
        }
        if kind in ("dense", "hybrid"):
            parts["dense"] = {"embedder": fingerprint_of(emb_name), "index": _requested_spec(params)}
        if kind in ("bm25", "hybrid"):
            parts["bm25"] = {"k1": params.bm25_k1, "b": params.bm25_b, "stemming": stemming, "prefix_len": params.prefix_len}
        key = index_key(parts)
        t0 = time.perf_counter()
        cache = IndexCache(cache_dir)
        mem = _LOADED.get(key)
        if mem is not None:
            r, cached, source = mem.with_params(params), True, "memory"
        elif cache.has(key) and (r := cls._try_load(cache, params, kind, emb_name, key)) is not None:
            cached, source = True, "disk"
        else:
            r, cached, source = cls._build(docs, params, kind, emb_name, stemming, key, cache, parts, progress), False, "built"
        if kind != "bm25" and r.embedder is None:  # queries need it; its load is not index work

            t_emb = time.perf_counter()
            r.embedder = load_embedder(emb_name)
            t0 += time.perf_counter() - t_emb
        seconds = time.perf_counter() - t0
        if not cached:
            seconds -= r.meta.get("embedder_load_seconds", 0.0)
        _remember(key, r)
        cost = {
            "seconds": round(seconds, 4),  # this cell: build, or load from the cache
            "build_seconds": r.meta.get("build_seconds"),  # chunk + embed + index, when it was built
            "embedder_load_seconds": r.meta.get("embedder_load_seconds") if not cached else None,
            "cached": cached,
            "source": source,
            "retriever": kind,
            "embedder": emb_name if kind != "bm25" else None,
            "index": r.meta.get("index", {}).get("type") if kind != "bm25" else "bm25",
            "docs": r.meta.get("docs"),
            "vectors": len(r.chunks),
            "bytes": r.meta.get("bytes"),
            "key": key,
        }
        return r, cost

    def with_params(self, params: RagParams) -> "Retriever":
        """The same loaded index with other search-time settings (nprobe, efSearch, k, rrf_k)."""
        return self if params == self.params else replace(self, params=params)

    @classmethod
    def _build(cls, docs, params, kind, emb_name, stemming, key, cache: IndexCache, parts, progress) -> "Retriever":
        t_load = time.perf_counter()
        embedder = load_embedder(emb_name)  # its tokenizer counts the chunk windows
        t0 = time.perf_counter()
        limit = getattr(embedder, "max_tokens", None)
        if limit and params.chunk_tokens > limit:
            log.warning("rag: chunk_tokens=%d exceeds what %s reads (%d tokens); the end of each chunk is not embedded",
                        params.chunk_tokens, emb_name, limit)
        chunks = chunk_docs(docs, embedder, params.chunk_tokens, params.chunk_overlap)
        if not chunks:
            raise BenchError("rag: the documents produced no text to index; fill the 'text' fields of docs.jsonl")
        texts = [c.indexed_text(params.include_title) for c in chunks]
        index = bm25 = None
        spec: dict = {}
        if kind in ("dense", "hybrid"):
            vecs = embedder.encode_passages(texts, batch_size=params.batch_size, progress=progress)
            spec = dense.build_params(params, len(vecs))
            index = dense.build(vecs, spec)
            dense.configure(index, params)
        if kind in ("bm25", "hybrid"):
            bm25 = BM25Index.build(texts, params.bm25_k1, params.bm25_b, stemming, params.prefix_len)
        build_seconds = time.perf_counter() - t0
        meta = {"key": key, "parts": parts, "retriever": kind, "embedder": emb_name, "index": spec,
                "docs": len(docs), "vectors": len(chunks), "build_seconds": round(build_seconds, 4),
                "embedder_load_seconds": round(t0 - t_load, 4)}

        def fill(folder: Path) -> None:
            with (folder / "chunks.jsonl").open("w", encoding="utf-8") as f:
                for c in chunks:
                    f.write(json.dumps([c.doc_id, c.title, c.text, c.index], ensure_ascii=False) + "\n")
            if index is not None:
                dense.save(index, folder / "dense.faiss")
            if bm25 is not None:
                bm25.save(folder / "bm25")
            meta["bytes"] = folder_bytes(folder)

        cache.write(key, meta, fill)
        return cls(kind, params, chunks, key, emb_name, index, bm25, embedder, meta)

    @classmethod
    def _try_load(cls, cache: IndexCache, params, kind, emb_name, key) -> Optional["Retriever"]:
        """The cached index, or None (after removing it) when its folder is damaged."""
        try:
            return cls._load(cache.path(key), params, kind, emb_name, key)
        except Exception as e:  # a half-deleted or foreign folder: rebuild rather than fail the cell
            log.warning("rag: cached index %s is unreadable (%s); rebuilding it", cache.path(key), e)
            cache.discard(key)
            return None

    @classmethod
    def _load(cls, folder: Path, params, kind, emb_name, key) -> "Retriever":
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        with (folder / "chunks.jsonl").open(encoding="utf-8") as f:
            chunks = [Chunk(*json.loads(line)) for line in f if line.strip()]
        index = bm25 = None
        if kind in ("dense", "hybrid"):
            index = dense.load(folder / "dense.faiss")
            dense.configure(index, params)
        if kind in ("bm25", "hybrid"):
            bm25 = BM25Index.load(folder / "bm25")
        return cls(kind, params, chunks, key, emb_name, index, bm25, None, meta)

    # -- search ---------------------------------------------------------------------------------
    def search(self, query: str, k: Optional[int] = None) -> list:
        """Top-k chunks for `query` as Passages (rank 1 = best); k is clamped to the corpus size."""
        k = min(k or self.params.k, len(self.chunks))
        if self.kind == "dense":
            ids, scores = self._dense(query, k)
            ranked = list(zip(ids, scores))
        elif self.kind == "bm25":
            ids, scores = self.bm25.search(query, k)
            ranked = list(zip(ids, scores))
        else:
            n = max(self.params.candidates, k)
            d_ids, _ = self._dense(query, n)
            b_ids, _ = self.bm25.search(query, n)
            ranked = rrf([d_ids, b_ids], self.params.rrf_k)[:k]
        out = []
        for rank, (i, score) in enumerate(ranked, start=1):
            c = self.chunks[int(i)]
            out.append(Passage(doc_id=c.doc_id, title=c.title, text=c.text, score=float(score), rank=rank))
        return out

    def _dense(self, query: str, k: int) -> tuple[list[int], list[float]]:
        q = self.embedder.encode_queries([query], batch_size=1)
        dense.configure(self.index, self.params)  # the index may be shared with an arm searching differently
        scores, ids = dense.search(self.index, q, k)
        keep = ids[0] >= 0
        return ids[0][keep].tolist(), scores[0][keep].tolist()


def _requested_spec(params: RagParams) -> dict:
    if params.index == "ivf":
        return {"type": "ivf", "nlist": params.ivf_nlist}
    if params.index == "hnsw":
        return {"type": "hnsw", "m": params.hnsw_m, "ef_construction": params.hnsw_ef_construction}
    return {"type": "flat"}


def _remember(key: str, r: Retriever) -> None:
    _LOADED.pop(key, None)
    _LOADED[key] = r
    while len(_LOADED) > _MAX_LOADED:
        _LOADED.pop(next(iter(_LOADED)))
