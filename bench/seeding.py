"""Seeds: one run seed per cell, and derived seeds for each random purpose (few-shot draw, sampling).

Local RNG objects are used for selections so that no strategy leans on global random state.
"""

from __future__ import annotations

import random

from bench.hashing import sha256_json


def derive_seed(seed: int, *purpose: object) -> int:
    """A stable 31-bit seed for (run seed, purpose...), e.g. derive_seed(0, "few_shot", example_id)."""
    return int(sha256_json([seed, *purpose])[:8], 16) & 0x7FFFFFFF


def rng(seed: int, *purpose: object) -> random.Random:
    return random.Random(derive_seed(seed, *purpose))


def set_global_seed(seed: int) -> int:
    """Seed random, numpy and torch (training and HF sampling use the global generators)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % (2**32))
    except ImportError:
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
    return seed
