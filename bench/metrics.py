"""The metric registry and the built-in metrics: ROUGE-1/2/L/Lsum, exact match and token F1.

A metric family (`rouge`) reports one or more names (`rouge1`, ..., `rougeLsum`). `score` returns a
per-example Score with a reason for every name; a Score whose value is None could not be computed
and is counted in n_failed, never averaged in. `aggregate` turns per-example scores into the task
value (the mean, unless a metric needs something else, e.g. precision over abstentions).

Adding a metric:

    @METRICS.register("contains")
    class Contains(Metric):
        names = ("contains",)
        def score(self, answer, example, task):
            ok = normalize_answer(example.output) in normalize_answer(answer)
            return {"contains": Score("contains", float(ok), "reference inside answer" if ok else "not found")}
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import ClassVar, Optional

from bench.registry import METRICS
from bench.textnorm import normalize_answer, split_sentences, words
from bench.types import Example, Score, Task


class Metric:
    names: ClassVar[tuple[str, ...]] = ()
    higher_is_better: ClassVar[bool] = True
    description: ClassVar[str] = ""

    def score(self, answer: str, example: Example, task: Task) -> dict[str, Score]:
        raise NotImplementedError

    def aggregate(self, name: str, records: list[tuple[Optional[float], Example]]) -> Optional[float]:
        """Task-level value of `name` from (per-example value, example) pairs; None values excluded."""
        vals = [v for v, _ in records if v is not None]
        return sum(vals) / len(vals) if vals else None


def references(example: Example) -> list[str]:
    """The gold answer plus any alternatives a task lists under `answers`."""
    alts = example.get("answers") or ()
    return [example.output, *[str(a) for a in alts]]


class _Tokenizer:
    """Unicode-aware tokenizer for rouge-score, with a stemmer for the task's language."""

    def __init__(self, language: str):
        self.stem = _stemmer(language[:2])

    def tokenize(self, text: str) -> list[str]:
        toks = words(text)
        if self.stem:
            toks = [self.stem(t) if len(t) > 3 else t for t in toks]
        return toks


@lru_cache(maxsize=None)
def _stemmer(lang: str):
    """Porter for English (rouge-score's choice), NLTK's Snowball for other languages it knows."""
    try:
        from nltk.stem.snowball import SnowballStemmer
        from nltk.stem.porter import PorterStemmer
    except ImportError:
        return None
    if lang == "en":
        return PorterStemmer().stem
    names = {"ru": "russian", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "pt": "portuguese"}
    return SnowballStemmer(names[lang]).stem if lang in names else None


@lru_cache(maxsize=None)
def _rouge_scorer(language: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], tokenizer=_Tokenizer(language))


def rouge_f(prediction: str, reference: str, language: str = "en") -> dict[str, float]:
    """ROUGE F-measures with the Unicode tokenizer (rougeLsum over sentence-split text)."""
    scorer = _rouge_scorer(language[:2])
    s = scorer.score("\n".join(split_sentences(reference)), "\n".join(split_sentences(prediction)))
    return {k: v.fmeasure for k, v in s.items()}


@METRICS.register("rouge")
class Rouge(Metric):
    names = ("rouge1", "rouge2", "rougeL", "rougeLsum")
    description = "ROUGE-1/2/L/Lsum F1, Unicode tokens, stemmed by language (Porter en, Snowball ru/...)"

    def score(self, answer, example, task):
        best: dict[str, float] = {}
        for ref in references(example):
            for k, v in rouge_f(answer, ref, task.language).items():
                best[k] = max(best.get(k, 0.0), v)
        return {k: Score(k, v, f"F1 vs best of {len(references(example))} reference(s)") for k, v in best.items()}


@METRICS.register("exact_match")
class ExactMatch(Metric):
    names = ("exact_match",)
    description = "1 if the SQuAD-normalised answer equals a normalised reference"

    def score(self, answer, example, task):
        pred = normalize_answer(answer, task.language)
        for ref in references(example):
            if pred == normalize_answer(ref, task.language):
                return {"exact_match": Score("exact_match", 1.0, f"matches {ref!r}")}
        return {"exact_match": Score("exact_match", 0.0, f"{pred[:60]!r} matches no reference")}


def token_f1(prediction: str, reference: str, language: str = "en") -> float:
    p = normalize_answer(prediction, language).split()
    r = normalize_answer(reference, language).split()
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


@METRICS.register("f1")
class TokenF1(Metric):
    names = ("f1",)
    description = "SQuAD token F1 between normalised answer and the best reference"

    def score(self, answer, example, task):
        best, ref = max((token_f1(answer, r, task.language), r) for r in references(example))
        return {"f1": Score("f1", best, f"token overlap with {ref[:40]!r}")}


def metric_names() -> list[str]:
    from bench.registry import load_all

    load_all()
    return METRICS.names()


def reported_names(families: list[str]) -> list[str]:
    out: list[str] = []
    for fam in families:
        out.extend(METRICS.get(fam).names)
    return out


def family_of(name: str) -> Optional[str]:
    for fam in METRICS.names():
        if name in METRICS.get(fam).names:
            return fam
    return None
