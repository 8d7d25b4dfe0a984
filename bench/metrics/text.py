"""The text metrics: ROUGE-1/2/L/Lsum (Unicode tokens, stemmed by language), exact match and token F1.

rouge-score's own tokenizer keeps only [a-z0-9] (a Russian reference scores 0 against itself), so
ROUGE here tokenizes Unicode words and stems with Porter (English, rouge-score's choice) or NLTK's
Snowball stemmer (Russian and the other languages it knows). Exact match and F1 use SQuAD
normalisation for any script. The same functions back the Hugging Face `evaluate` modules in
`bench/metrics/hf_evaluate/`.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from bench.errors import BenchError
from bench.metrics.base import Metric, references
from bench.registry import METRICS
from bench.textnorm import normalize_answer, split_sentences, words
from bench.types import Score


class _Tokenizer:
    """Unicode-aware tokenizer for rouge-score, with a stemmer for the task's language."""

    def __init__(self, language: str):
        self.stem = stemmer(language[:2])

    def tokenize(self, text: str) -> list[str]:
        toks = words(text)
        if self.stem:
            toks = [self.stem(t) if len(t) > 3 else t for t in toks]
        return toks


@lru_cache(maxsize=None)
def stemmer(lang: str):
    """Porter for English (rouge-score's choice), NLTK's Snowball for other languages it knows.

    NLTK is a declared dependency: its absence fails loudly rather than silently scoring Russian
    unstemmed (which changes every ROUGE number).
    """
    try:
        from nltk.stem.porter import PorterStemmer
        from nltk.stem.snowball import SnowballStemmer
    except ImportError:
        raise BenchError("ROUGE needs NLTK's stemmers (a declared dependency of bench); run `pip install -e .`") from None
    if lang == "en":
        return PorterStemmer().stem
    names = {"ru": "russian", "de": "german", "fr": "french", "es": "spanish", "it": "italian", "pt": "portuguese"}
    return SnowballStemmer(names[lang]).stem if lang in names else None


@lru_cache(maxsize=None)
def _rouge_scorer(language: str):
    tokenizer = _Tokenizer(language)  # first: a missing NLTK is a one-line error, not rouge_score's traceback
    try:
        from rouge_score import rouge_scorer
    except ImportError as e:
        raise BenchError(f"ROUGE needs rouge-score and NLTK (declared dependencies of bench; missing: {e.name}); "
                         "run `pip install -e .`") from None
    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], tokenizer=tokenizer)


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


@METRICS.register("gold_in_output")
class GoldInOutput(Metric):
    """Is the answer anywhere in what the model wrote? A diagnostic beside exact match: far above it means the
    model has the answer but not the form (it answers in sentences), which few-shot exemplars in the
    answer's form, a completion prompt or fine-tuning on the pairs can fix."""

    names = ("gold_in_output",)
    description = "the normalised gold answer occurs in the model's whole output (qa tasks; a diagnostic)"
    inputs = ("raw",)

    def score(self, answer, example, task, raw=None):
        text = f" {normalize_answer(raw if raw is not None else answer, task.language)} "
        for ref in references(example):
            r = normalize_answer(ref, task.language)
            if r and f" {r} " in text:
                return {"gold_in_output": Score("gold_in_output", 1.0, f"{ref!r} occurs in the output")}
        return {"gold_in_output": Score("gold_in_output", 0.0, "no reference occurs in the output")}
