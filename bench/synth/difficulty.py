"""How hard is retrieval on a generated task? Lexical overlap and BM25 recall@k of the gold documents.

data-notes §6.2 asks that retrieval difficulty be known rather than guessed: a question that
repeats its gold sentence word for word is a lexical shortcut. This computes, over the answerable test
items, the mean share of question words found in the best gold document and BM25 recall@k (a
small dependency-free BM25 over docs.jsonl); the generator writes both into the manifest's stats.
"""

from __future__ import annotations

import math
from collections import Counter

from bench.textnorm import words


class BM25:
    def __init__(self, texts: list[str], k1: float = 1.5, b: float = 0.75):
        self.docs = [Counter(words(t)) for t in texts]
        self.lens = [sum(d.values()) for d in self.docs]
        self.avg = sum(self.lens) / max(1, len(self.lens))
        df = Counter(w for d in self.docs for w in d)
        n = len(self.docs)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in df.items()}
        self.k1, self.b = k1, b

    def top(self, query: str, k: int) -> list[int]:
        q = words(query)
        scores = []
        for i, (d, ln) in enumerate(zip(self.docs, self.lens)):
            s = 0.0
            for w in q:
                tf = d.get(w, 0)
                if tf:
                    s += self.idf[w] * tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * ln / self.avg))
            scores.append((s, -i))
        return [-i for _, i in sorted(scores, reverse=True)[:k]]


def difficulty(test: list[dict], docs: list[dict], k: int = 5) -> dict:
    """{"question_overlap": mean share of question words in the best gold doc, "bm25_recall@k": share of
    answerable items with a gold doc in the top k}."""
    index = BM25([f"{d.get('title', '')} {d['text']}" for d in docs])
    pos = {d["id"]: i for i, d in enumerate(docs)}
    overlaps, hits = [], []
    for item in test:
        gold = [pos[g] for g in item.get("doc_ids", []) if g in pos]
        if item.get("answerable") is False or not gold:
            continue
        q = set(words(item["instruction"]))
        overlaps.append(max(len(q & set(index.docs[g])) / max(1, len(q)) for g in gold))
        hits.append(bool(set(index.top(item["instruction"], k)) & set(gold)))
    n = len(hits)
    return {"question_overlap": round(sum(overlaps) / n, 4) if n else None,
            f"bm25_recall@{k}": round(sum(hits) / n, 4) if n else None, "items": n}
