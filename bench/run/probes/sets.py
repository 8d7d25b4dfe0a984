"""Which probe items a probe set means: `default` (about a minute per model on 2 free cores), `large`, `tiny` (tests).

Every set is a fixed prefix of the committed files in bench/probes/data (derived by
scripts/derive_probe_data.py), so the base model and every adapted model see exactly the same items.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from bench.errors import BenchError

DATA = Path(__file__).resolve().parent / "data"

# probe name -> (file, language, kind)
PROBES = {
    "mmlu": ("mmlu_subset.jsonl", "en", "mc"),
    "tofu_world_facts": ("tofu_world_facts.jsonl", "en", "mc"),
    "tofu_real_authors": ("tofu_real_authors.jsonl", "en", "mc"),
    "rubq": ("rubq_mc.jsonl", "ru", "mc"),
    "perplexity_en": ("perplexity_en.jsonl", "en", "perplexity"),
}

# set name -> {probe: number of items (None = all)}
SETS = {
    "tiny": {"mmlu": 4, "tofu_world_facts": 2, "tofu_real_authors": 2, "rubq": 2, "perplexity_en": 1},
    "default": {"mmlu": 40, "tofu_world_facts": 10, "tofu_real_authors": 10, "rubq": 20, "perplexity_en": 2},
    "large": {"mmlu": None, "tofu_world_facts": None, "tofu_real_authors": None, "rubq": None, "perplexity_en": None},
}


@lru_cache(maxsize=None)
def load_items(probe: str) -> tuple[dict, ...]:
    fname = PROBES[probe][0]
    path = DATA / fname
    if not path.is_file():
        raise BenchError(f"{path}: probe data missing; regenerate with scripts/derive_probe_data.py")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise BenchError(f"{path}:{n}: invalid JSON; restore the file from git") from None
    return tuple(rows)


def resolve(which: str | dict) -> dict[str, tuple[dict, ...]]:
    """{probe: items} for a set name, or for an explicit {probe: n} mapping."""
    if isinstance(which, str):
        if which not in SETS:
            raise BenchError(f"probes: unknown probe set {which!r}; choose one of {', '.join(SETS)}")
        spec = SETS[which]
    else:
        spec = dict(which)
    out = {}
    for probe, n in spec.items():
        if probe not in PROBES:
            raise BenchError(f"probes: unknown probe {probe!r}; known: {', '.join(PROBES)}")
        if n is not None and (not isinstance(n, int) or n < 1):
            raise BenchError(f"probes: {probe} needs a positive item count or null (all), got {n!r}")
        items = load_items(probe)
        out[probe] = items if n is None else items[:n]
    return out
