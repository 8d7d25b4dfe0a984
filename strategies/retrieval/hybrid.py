"""Reciprocal rank fusion (Cormack et al., 2009) of ranked lists from several retrievers.

RRF needs no score calibration between BM25 and cosine similarity: each list contributes
1 / (rrf_k + rank) per item, so an item ranked well by both beats one ranked first by only one.
"""

from __future__ import annotations

from typing import Sequence


def rrf(rankings: Sequence[Sequence[int]], rrf_k: int = 60) -> list[tuple[int, float]]:
    """Fused (id, score) pairs, best first; ties broken by id for determinism."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[int(item)] = scores.get(int(item), 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
