"""Text normalisation shared by every scorer: Unicode-aware tokens, SQuAD-style answer normalisation.

rouge-score's default tokenizer keeps only [a-z0-9], so a Russian reference scores 0 against itself;
everything here uses Unicode word characters instead. `terms` is the BM25 view of the same words:
English keeps whole words; inflected languages such as Russian (температура / температуре /
температуры) lose most lexical matches that way, so `prefix` stemming keeps each word's first N
characters — crude, dependency-free, and measured to help on Russian (docs/retrieval.md).
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


def terms(text: str, stemming: str = "none", prefix_len: int = 5) -> list[str]:
    """BM25 terms: lower-cased (casefold, ё→е) Unicode words, optionally cut to their first prefix_len characters."""
    found = _WORD.findall(text.casefold().replace("ё", "е"))
    if stemming == "prefix":
        return [w[:prefix_len] for w in found]
    return found
