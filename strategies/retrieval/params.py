"""The settings of the retrieval family (`params.rag` in a run config), checked once at config load.

One frozen dataclass, shared by `rag` and every stacked arm that contains it (`rag+cot`, `lora+rag`):
the runner builds each arm's retriever from `config.params_for("rag", RagParams)`, so stacked arms
cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from bench.models.embedders import DEFAULT_EMBEDDER, MULTILINGUAL_EMBEDDER

RETRIEVERS = ("auto", "dense", "bm25", "hybrid")
INDEX_TYPES = ("flat", "ivf", "hnsw")
STEMMING = ("auto", "none", "prefix")


@dataclass(frozen=True)
class RagParams:
    retriever: str = "auto"  # auto: dense for English, hybrid (dense e5 + BM25) for other languages
    embedder: str = "auto"  # auto: all-minilm-l6-v2 for English, multilingual-e5-small otherwise
    k: int = 4  # passages per query
    chunk_tokens: int = 128  # window, in tokens of the embedder's tokenizer
    chunk_overlap: int = 32  # tokens shared by consecutive windows of one document
    include_title: bool = True  # embed / index "title: text" rather than the text alone
    index: str = "flat"  # flat = exact inner product; ivf and hnsw are approximate
    ivf_nlist: int = 64  # IVF cells (lowered to what the corpus can train)
    ivf_nprobe: int = 8  # IVF cells visited per query
    hnsw_m: int = 32  # HNSW links per node
    hnsw_ef_construction: int = 64
    hnsw_ef_search: int = 64
    bm25_k1: float = 1.5
    bm25_b: float = 0.75
    stemming: str = "auto"  # BM25 terms: auto = prefix for non-English (crude Russian stemming), none for English
    prefix_len: int = 5  # characters kept by prefix stemming
    rrf_k: int = 60  # reciprocal rank fusion constant
    candidates: int = 50  # per-retriever candidates fused by hybrid
    batch_size: int = 64  # embedding batch

    def validate(self) -> Optional[str]:
        if self.retriever not in RETRIEVERS:
            return f"retriever must be one of {', '.join(RETRIEVERS)}, got {self.retriever!r}"
        if self.index not in INDEX_TYPES:
            return f"index must be one of {', '.join(INDEX_TYPES)}, got {self.index!r}"
        if self.stemming not in STEMMING:
            return f"stemming must be one of {', '.join(STEMMING)}, got {self.stemming!r}"
        for name in ("k", "chunk_tokens", "ivf_nlist", "ivf_nprobe", "hnsw_m", "hnsw_ef_construction",
                     "hnsw_ef_search", "rrf_k", "candidates", "batch_size", "prefix_len"):
            if getattr(self, name) < 1:
                return f"{name} must be >= 1, got {getattr(self, name)}"
        if not 0 <= self.chunk_overlap < self.chunk_tokens:
            return f"chunk_overlap must be >= 0 and smaller than chunk_tokens ({self.chunk_tokens}), got {self.chunk_overlap}"
        if self.bm25_k1 < 0 or not 0 <= self.bm25_b <= 1:
            return f"bm25_k1 must be >= 0 and bm25_b in [0, 1], got {self.bm25_k1}, {self.bm25_b}"
        return None

    def resolved_retriever(self, language: str) -> str:
        if self.retriever != "auto":
            return self.retriever
        return "dense" if _is_english(language) else "hybrid"

    def resolved_embedder(self, language: str) -> str:
        if self.embedder != "auto":
            return self.embedder

        return DEFAULT_EMBEDDER if _is_english(language) else MULTILINGUAL_EMBEDDER

    def resolved_stemming(self, language: str) -> str:
        if self.stemming != "auto":
            return self.stemming
        return "none" if _is_english(language) else "prefix"


def _is_english(language: str) -> bool:
    return (language or "en").lower().split("-")[0].split("_")[0] == "en"
