"""Unicode-aware terms for BM25: lowercase word characters of any script (Cyrillic included).

English keeps whole words. Inflected languages such as Russian (температура / температуре /
температуры) lose most lexical matches that way, so `prefix` stemming keeps each word's first N
characters — crude, dependency-free, and measured to help on Russian (docs/retrieval.md).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)


def terms(text: str, stemming: str = "none", prefix_len: int = 5) -> list[str]:
    words = _WORD.findall(text.casefold().replace("ё", "е"))
    if stemming == "prefix":
        return [w[:prefix_len] for w in words]
    return words
