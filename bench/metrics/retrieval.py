"""Retrieval quality from per-example records: recall@k, MRR@k and the four retrieval outcomes.

Pure functions over plain dicts, so the report writer can call them on scores.jsonl rows long after
the run. An item counts only when it names gold `doc_ids`; its outcome crosses "was a gold document
among the top k" with "was the answer right":

- retrieved_right: retrieval found it and the reader used it;
- retrieved_wrong: retrieval found it, the reader still failed (a reader problem);
- missed_right: retrieval missed, the answer was right anyway (the model knew it);
- missed_wrong: retrieval missed and the answer was wrong (a retrieval problem).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

OUTCOMES = ("retrieved_right", "retrieved_wrong", "missed_right", "missed_wrong")


def dedupe(ids: Iterable[str]) -> list[str]:
    """Document ids in first-seen order (several chunks of one document count once)."""
    return list(dict.fromkeys(str(i) for i in ids))


def item_metrics(gold: Iterable[str], retrieved: Iterable[str], k: int) -> dict[str, float]:
    gold_set = {str(g) for g in gold}
    top = dedupe(retrieved)[:k]
    found = [i for i, d in enumerate(top) if d in gold_set]
    return {
        "recall": len(gold_set.intersection(top)) / len(gold_set) if gold_set else 0.0,
        "hit": 1.0 if found else 0.0,
        "rr": 1.0 / (found[0] + 1) if found else 0.0,
        "rank": found[0] + 1 if found else None,
    }


def records_from_scores(rows: Iterable[dict], metric: str = "exact_match", threshold: float = 0.5) -> list[dict]:
    """scores.jsonl rows -> retrieval records; right = the row's `metric` >= threshold (None if unscored)."""
    out = []
    for row in rows:
        value = (row.get("scores") or {}).get(metric)
        out.append({
            "example_id": row.get("example_id"),
            "doc_ids": row.get("doc_ids") or [],
            "retrieved": (row.get("info") or {}).get("retrieved") or [],
            "correct": None if value is None or row.get("failed") else value >= threshold,
        })
    return out


def retrieval_outcomes(
    records: Iterable[dict], k: int, correct_fn: Optional[Callable[[dict], Optional[bool]]] = None
) -> dict[str, Any]:
    """Aggregate retrieval metrics over records {example_id, doc_ids, retrieved, correct}.

    `k` counts distinct documents. `correct_fn(record)` says whether the answer was right (default:
    `record["correct"]`); None leaves the item out of the outcome classes but not out of recall.
    Items without gold `doc_ids` (e.g. unanswerable ones) are counted in `n_without_gold` only.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    get_correct = correct_fn or (lambda r: r.get("correct"))
    classes = {o: 0 for o in OUTCOMES}
    items, recall, hit, rr, skipped, unscored = [], 0.0, 0.0, 0.0, 0, 0
    for rec in records:
        gold = rec.get("doc_ids") or []
        if not gold:
            skipped += 1
            continue
        m = item_metrics(gold, rec.get("retrieved") or [], k)
        recall += m["recall"]
        hit += m["hit"]
        rr += m["rr"]
        correct = get_correct(rec)
        outcome = None
        if correct is None:
            unscored += 1
        else:
            outcome = ("retrieved_" if m["hit"] else "missed_") + ("right" if correct else "wrong")
            classes[outcome] += 1
        items.append({"example_id": rec.get("example_id"), "rank": m["rank"], "recall": m["recall"], "outcome": outcome})
    n = len(items)
    return {
        "k": k,
        "n": n,
        "recall_at_k": recall / n if n else None,
        "hit_at_k": hit / n if n else None,
        "mrr": rr / n if n else None,
        "classes": classes,
        "n_without_gold": skipped,
        "n_unscored": unscored,
        "items": items,
    }
