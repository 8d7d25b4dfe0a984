"""`choice`: accuracy on a closed answer set (PubMedQA's yes/no/maybe, or any `options` list).

A test item names its gold `label` and its `options` (default yes/no/maybe); the model's decision is
the first option word in the answer (whole words, normalised; Russian да/нет/возможно map to
yes/no/maybe). No option word at all scores 0 with the reason "no decision".
"""

from __future__ import annotations

import re

from bench.metrics.base import Metric
from bench.registry import METRICS
from bench.textnorm import normalize_answer
from bench.types import Score

SYNONYMS = {"да": "yes", "нет": "no", "возможно": "maybe", "может быть": "maybe", "perhaps": "maybe"}


def decision(answer: str, options: list[str], language: str = "en") -> str | None:
    """The first option (or synonym of one) that appears as whole words in the answer."""
    text = f" {normalize_answer(answer, language)} "
    cands = {normalize_answer(o, language): o for o in options}
    for syn, target in SYNONYMS.items():
        if target in cands:
            cands.setdefault(syn, target)
    best, pos = None, len(text) + 1
    for word, opt in cands.items():
        m = re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text)
        if m and m.start() < pos:
            best, pos = opt, m.start()
    return best


@METRICS.register("choice")
class Choice(Metric):
    names = ("choice_accuracy",)
    description = "first yes/no/maybe (or option) word of the answer equals the gold label"

    def score(self, answer, example, task):
        label = example.get("label")
        if label is None:
            return {"choice_accuracy": Score("choice_accuracy", None, "item has no 'label' field")}
        options = list(example.get("options") or ("yes", "no", "maybe"))
        got = decision(answer, options, task.language)
        ok = got is not None and normalize_answer(got) == normalize_answer(str(label))
        why = "no decision word in the answer" if got is None else f"decided {got!r}, gold {label!r}"
        return {"choice_accuracy": Score("choice_accuracy", float(ok), why)}
