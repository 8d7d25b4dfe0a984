"""Did the model abstain? Phrase-list detection of refusals, without an LLM judge.

The hallucination probe needs one yes/no per answer: an unanswerable item answered with a fact is a
hallucination, an answerable item met with "I don't know" is a false abstention. A judge model would
add its own errors and cost, so abstention is detected from phrase lists instead: TOFU's 100 English
refusal phrasings (MIT, bench/metrics/lexicons/abstain_en_tofu.txt), a short English core list and a Russian
list written for bench, plus the task's own `abstain_phrase`. Matching is on normalised text (lower
case, ё→е, punctuation and apostrophes removed, single spaces), as a substring.

The probe is two registered metrics, `abstention` and `hallucination`. On a task whose test items carry
`answerable: false`, abstaining is the right answer. Every answer is classified once (`detect`) and
the per-example score is
1.0 = abstained, 0.0 = answered; the task-level numbers need the answerable flag of every item, so
the families aggregate with their own `aggregate`:

  abstention_recall     share of unanswerable items where the model abstained      (higher better)
  abstention_precision  share of abstentions that were on unanswerable items       (higher better)
  abstention_f1         harmonic mean of the two                                   (higher better)
  hallucination_rate    share of unanswerable items given a non-empty answer that is not an abstention
                                                                                   (lower better)
  false_abstention      share of answerable items where the model abstained        (lower better)

Two metrics because the registry records one direction (higher_is_better) per metric.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Optional

from bench.metrics.base import Metric
from bench.registry import METRICS
from bench.types import Example, Score

_LEX = Path(__file__).resolve().parent / "lexicons"
FILES = {"en": ("abstain_en_core.txt", "abstain_en_tofu.txt"), "ru": ("abstain_ru.txt",)}


def normalise(text: str) -> str:
    """Lower case, ё→е, apostrophes dropped ("don't" → "dont"), other punctuation → space."""
    t = unicodedata.normalize("NFKC", text).lower().replace("ё", "е")
    t = re.sub(r"[’'`ʼ]", "", t)
    t = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in t)
    return " ".join(t.split())


@lru_cache(maxsize=None)
def phrases(language: str) -> tuple[str, ...]:
    """The normalised phrase list of a language (English core + TOFU for en; the Russian list for ru)."""
    lang = "ru" if language.startswith("ru") else "en"
    out: list[str] = []
    for name in FILES[lang]:
        path = _LEX / name
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                p = normalise(line)
                if p and p not in out:
                    out.append(p)
    return tuple(out)


def detect(answer: Optional[str], language: str = "en", extra: tuple[str, ...] = ()) -> tuple[bool, str]:
    """(abstained, matched phrase). An empty answer is not an abstention: a broken arm that writes nothing
    must not look cautious (it is counted as empty, and as wrong, by the runner and the decision).

    Both languages' lists are tried, English second, so an English refusal to a Russian question counts.
    """
    if answer is None:
        return False, ""
    text = normalise(answer)
    if not text:
        return False, ""
    padded = f" {text} "
    lists = [tuple(normalise(e) for e in extra if e and normalise(e)), phrases(language)]
    if not language.startswith("en"):
        lists.append(phrases("en"))
    for lst in lists:
        for p in lst:
            if f" {p} " in padded:
                return True, p
    return False, ""


def is_abstention(answer: Optional[str], language: str = "en", extra: tuple[str, ...] = ()) -> bool:
    return detect(answer, language, extra)[0]


def _score(names: tuple[str, ...], answer: str, example: Example, task) -> dict[str, Score]:
    """Per item: `abstained` (1/0) for the abstention names and false_abstention; for hallucination_rate,
    1 when the item got a non-empty answer that is not an abstention (an empty answer asserts nothing)."""
    abstained, phrase = detect(answer, task.language, (task.abstain_phrase,))
    empty = not normalise(answer or "")
    truth = "unanswerable" if not example.answerable else "answerable"
    what = "empty answer" if empty else (f"abstained ({phrase!r})" if abstained else "answered")
    reason = f"{what} on an {truth} item"
    asserted = 0.0 if (abstained or empty) else 1.0
    return {n: Score(n, asserted if n == "hallucination_rate" else (1.0 if abstained else 0.0), reason) for n in names}


def rates(records: list[tuple[Optional[float], Example]], name: str) -> Optional[float]:
    """The task-level value of one name from its per-item values (None values excluded; None where undefined)."""
    rec = [(v, ex) for v, ex in records if v is not None]
    un = [v for v, ex in rec if not ex.answerable]
    an = [v for v, ex in rec if ex.answerable]
    if name == "hallucination_rate":
        return sum(un) / len(un) if un else None
    if name == "false_abstention":
        return sum(an) / len(an) if an else None
    abst = [ex for v, ex in rec if v >= 0.5]
    recall = sum(un) / len(un) if un else None
    precision = sum(1 for ex in abst if not ex.answerable) / len(abst) if abst else None
    if name == "abstention_recall":
        return recall
    if name == "abstention_precision":
        return precision
    if recall is None:
        return None
    return 0.0 if not precision or not recall else 2 * precision * recall / (precision + recall)


@METRICS.register("abstention")
class Abstention(Metric):
    names = ("abstention_recall", "abstention_precision", "abstention_f1")
    description = "abstained on unanswerable items (phrase lists EN/RU); recall, precision, F1"

    def score(self, answer, example, task):
        return _score(self.names, answer, example, task)

    def aggregate(self, name, records):
        return rates(records, name)


@METRICS.register("hallucination")
class Hallucination(Metric):
    names = ("hallucination_rate", "false_abstention")
    higher_is_better = False
    description = "answered an unanswerable item (hallucination) / abstained on an answerable one"

    def score(self, answer, example, task):
        return _score(self.names, answer, example, task)

    def aggregate(self, name, records):
        return rates(records, name)
