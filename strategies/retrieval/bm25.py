"""A BM25 index (bm25s) over the same chunks as the dense index, with Unicode-aware terms.

Lexical matching is what saves retrieval where the embedder is weak: rare names, codes and numbers,
and languages the English MiniLM does not read. Terms come from `textnorm.terms`, so Cyrillic and
other scripts are tokenised as words, not dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from bench.textnorm import terms


class BM25Index:
    def __init__(self, model, stemming: str, prefix_len: int):
        self.model = model
        self.stemming = stemming
        self.prefix_len = prefix_len

    @classmethod
    def build(cls, texts: Sequence[str], k1: float, b: float, stemming: str, prefix_len: int) -> "BM25Index":
        import bm25s

        model = bm25s.BM25(k1=k1, b=b)
        model.index([terms(t, stemming, prefix_len) for t in texts], show_progress=False)
        return cls(model, stemming, prefix_len)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores) of the top-k chunks with a positive score, best first."""
        q = [t for t in terms(query, self.stemming, self.prefix_len) if t in self.model.vocab_dict]
        if not q:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = np.asarray(self.model.get_scores(q), dtype=np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]  # by score, ties by position: deterministic
        top = top[scores[top] > 0]
        return top.astype(np.int64), scores[top]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(str(folder), show_progress=False)
        (folder / "terms.json").write_text(json.dumps({"stemming": self.stemming, "prefix_len": self.prefix_len}))

    @classmethod
    def load(cls, folder: Path) -> "BM25Index":
        import bm25s

        meta = json.loads((folder / "terms.json").read_text())
        model = bm25s.BM25.load(str(folder), show_progress=False)
        return cls(model, meta["stemming"], meta["prefix_len"])
