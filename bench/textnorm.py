"""Text normalisation shared by every scorer: Unicode-aware tokens, SQuAD-style answer normalisation.

rouge-score's default tokenizer keeps only [a-z0-9], so a Russian reference scores 0 against itself;
everything here uses Unicode word characters instead.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+", re.UNICODE)
_ARTICLES = {"en": {"a", "an", "the"}}


def words(text: str) -> list[str]:
    """Lower-cased Unicode word tokens (Cyrillic, accents and digits included)."""
    return _WORD.findall(text.lower())


def strip_punct(text: str) -> str:
    return "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)


def normalize_answer(text: str, language: str = "en") -> str:
    """SQuAD normalisation (lower case, no punctuation, no articles, single spaces), any script."""
    toks = strip_punct(text.lower()).split()
    arts = _ARTICLES.get(language[:2], set())
    return " ".join(t for t in toks if t not in arts)


def split_sentences(text: str) -> list[str]:
    """Sentences for rougeLsum: existing line breaks, then sentence-final punctuation."""
    out = []
    for line in text.splitlines():
        out.extend(s.strip() for s in re.split(r"(?<=[.!?…])\s+", line) if s.strip())
    return out
