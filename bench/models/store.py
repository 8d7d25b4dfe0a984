"""Where converted weights live: one folder that every results folder can share.

A GGUF's transformers conversion (`hf/<sha>`), its serving exports (`served/<sha>-<type>.gguf`) and an
assembled packaged model are keyed by the sha256 of the file they come from, and each is written to a
temporary name and renamed into place. So one store can serve any number of results folders and
processes at once, and a result never depends on which folder the weights were read from.

By default the store is `<cache_dir>/models` (the run's own cache). Set `BENCH_MODELS_DIR` to share one
store between runs, studies and test sessions: SmolLM2's conversion and exports take ~0.8 GB per copy.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "BENCH_MODELS_DIR"


def models_dir(cache_dir: str | Path) -> Path:
    """The folder that holds converted weights for a run whose cache is `cache_dir`."""
    shared = os.environ.get(ENV, "").strip()
    return Path(shared).expanduser() if shared else Path(cache_dir) / "models"
