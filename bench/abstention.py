"""Did the model abstain? Phrase-list detection of refusals, without an LLM judge.

The hallucination probe needs one yes/no per answer: an unanswerable item answered with a fact is a
hallucination, an answerable item met with "I don't know" is a false abstention. A judge model would
add its own errors and cost, so abstention is detected from phrase lists instead: TOFU's 100 English
refusal phrasings (MIT, bench/lexicons/abstain_en_tofu.txt), a short English core list and a Russian
list written for bench, plus the task's own `abstain_phrase`. Matching is on normalised text (lower
case, ё→е, punctuation and apostrophes removed, single spaces), as a substring.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Optional

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
    """(abstained, matched phrase). An empty answer counts as an abstention (nothing was asserted).

    Both languages' lists are tried, English second, so an English refusal to a Russian question counts.
    """
    if answer is None:
        return False, ""
    text = normalise(answer)
    if not text:
        return True, "<empty answer>"
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
