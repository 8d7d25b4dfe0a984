"""Split documents into overlapping windows counted in tokens of the embedder's own tokenizer.

Counting in the embedder's tokens (not characters or words) is what keeps a chunk inside the window
the model was trained on. A chunk's text is a slice of the original document, so what the reader
sees is exactly what was indexed. With a fast Hugging Face tokenizer the windows cut at token
offsets; for embedders that only count tokens (the e5 C engine) they cut between words, each word
weighing the tokens it costs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from bench.types import Doc

_WORDS = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    title: str
    text: str
    index: int  # position of the chunk within its document

    def indexed_text(self, include_title: bool) -> str:
        """What is embedded and BM25-indexed: the title gives a chunk its document's context."""
        return f"{self.title}: {self.text}" if include_title and self.title.strip() else self.text


def _units(text: str, embedder, counts: dict | None = None) -> list[tuple[int, int, int]]:
    """(start, end, tokens) pieces of `text` in order; a window never splits a piece."""
    if _has_offsets(embedder):
        return [(s, e, 1) for s, e in embedder.token_offsets(text) if e > s]
    return _word_units(text, embedder, {} if counts is None else counts)


def _has_offsets(embedder) -> bool:
    return getattr(embedder, "token_offsets", None) is not None and getattr(embedder, "tokenizer", None) is not None


def _word_units(text: str, embedder, counts: dict) -> list[tuple[int, int, int]]:
    out = []
    for m in _WORDS.finditer(text):
        w = m.group()
        if w not in counts:  # words repeat across a corpus: count each once
            counts[w] = max(1, embedder.count_tokens(w))
        out.append((m.start(), m.end(), counts[w]))
    return out


def _windows(text: str, units: list[tuple[int, int, int]], window: int, overlap: int) -> list[str]:
    if not units:
        return [text.strip()] if text.strip() else []
    if sum(u[2] for u in units) <= window:
        return [text.strip()]
    chunks, start = [], 0
    while start < len(units):
        end, used = start, 0
        while end < len(units) and (used + units[end][2] <= window or end == start):
            used += units[end][2]
            end += 1
        chunks.append(text[units[start][0] : units[end - 1][1]].strip())
        if end >= len(units):
            break
        back, shared = end, 0  # step back over `overlap` tokens, but always move forward
        while back - 1 > start and shared + units[back - 1][2] <= overlap:
            back -= 1
            shared += units[back][2]
        start = back
    return [c for c in chunks if c]


def chunk_text(text: str, embedder, window: int, overlap: int) -> list[str]:
    """Windows of at most `window` tokens; consecutive windows share about `overlap` tokens."""
    return _windows(text, _units(text, embedder), window, overlap)


def chunk_docs(docs: Sequence[Doc], embedder, window: int, overlap: int) -> list[Chunk]:
    texts = [d.text for d in docs]
    if _has_offsets(embedder):  # one batched call to the (Rust) tokenizer, not one per document
        enc = embedder.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        units = [[(s, e, 1) for s, e in offs if e > s] for offs in enc["offset_mapping"]]
    else:
        counts: dict = {}
        units = [_word_units(t, embedder, counts) for t in texts]
    out: list[Chunk] = []
    for d, u in zip(docs, units):
        for i, piece in enumerate(_windows(d.text, u, window, overlap)):
            out.append(Chunk(doc_id=d.id, title=d.title, text=piece, index=i))
    return out
