"""The hallucination probe as two metric families: `abstention` and `hallucination`.

On a task whose test items carry `answerable: false`, abstaining is the right answer. Every answer is
classified once (bench.abstention.detect, phrase lists, no LLM judge) and the per-example score is
1.0 = abstained, 0.0 = answered; the task-level numbers need the answerable flag of every item, so
the families aggregate with their own `aggregate`:

  abstention_recall     share of unanswerable items where the model abstained      (higher better)
  abstention_precision  share of abstentions that were on unanswerable items       (higher better)
  abstention_f1         harmonic mean of the two                                   (higher better)
  hallucination_rate    share of unanswerable items answered anyway                (lower better)
  false_abstention      share of answerable items where the model abstained        (lower better)

Two families because the registry records one direction (higher_is_better) per family.
"""

from __future__ import annotations

from typing import Optional

from bench.abstention import detect
from bench.metrics import Metric
from bench.registry import METRICS
from bench.types import Example, Score


def _score(names: tuple[str, ...], answer: str, example: Example, task) -> dict[str, Score]:
    abstained, phrase = detect(answer, task.language, (task.abstain_phrase,))
    truth = "unanswerable" if not example.answerable else "answerable"
    reason = f"{'abstained (' + repr(phrase) + ')' if abstained else 'answered'} on an {truth} item"
    return {n: Score(n, 1.0 if abstained else 0.0, reason) for n in names}


def rates(records: list[tuple[Optional[float], Example]]) -> dict[str, Optional[float]]:
    """All five numbers from (abstained 1/0 or None, example) pairs; None where undefined."""
    rec = [(v, ex) for v, ex in records if v is not None]
    un = [v for v, ex in rec if not ex.answerable]
    an = [v for v, ex in rec if ex.answerable]
    abst = [ex for v, ex in rec if v >= 0.5]
    recall = sum(un) / len(un) if un else None
    precision = sum(1 for ex in abst if not ex.answerable) / len(abst) if abst else None
    if recall is None:
        f1 = None
    elif not precision or not recall:
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {
        "abstention_recall": recall,
        "abstention_precision": precision,
        "abstention_f1": f1,
        "hallucination_rate": (1.0 - recall) if recall is not None else None,
        "false_abstention": sum(an) / len(an) if an else None,
    }


@METRICS.register("abstention")
class Abstention(Metric):
    names = ("abstention_recall", "abstention_precision", "abstention_f1")
    description = "abstained on unanswerable items (phrase lists EN/RU); recall, precision, F1"

    def score(self, answer, example, task):
        return _score(self.names, answer, example, task)

    def aggregate(self, name, records):
        return rates(records)[name]


@METRICS.register("hallucination")
class Hallucination(Metric):
    names = ("hallucination_rate", "false_abstention")
    higher_is_better = False
    description = "answered an unanswerable item (hallucination) / abstained on an answerable one"

    def score(self, answer, example, task):
        return _score(self.names, answer, example, task)

    def aggregate(self, name, records):
        return rates(records)[name]
