"""The `codes` generator: a catalogue-code format that only the training pairs teach (fine-tuning should win).

Why: bench's verdict must be checkable against a task whose right strategy is known by construction.
Here every item is a product record ("name: blue steel kettle; lot: 47") and the answer is its
catalogue code: a two-letter code of the product kind, taken from an arbitrary table, a hyphen, and the
lot number ("QV-47"). The table is drawn at random (no letter of a code occurs in its kind's word), so
no model can guess it zero-shot; with `kinds` kinds, k random exemplars show the needed kind rarely
(1 - (1 - 1/kinds)^k: 12 % for k = 3 and 24 kinds); every kind appears `train_per_kind` times in train,
so a fine-tune sees the whole table. There is no docs.jsonl: retrieval falls back to the train split
(DESIGN.md), where the nearest records of the same kind do show the right letters, but never this
item's answer: every code occurs once in the whole task, so a retrieved answer is never the right one
to copy and the reader has to apply the rule (kind letters from a neighbour, lot from its own record).
Deterministic from the config (per-item streams of bench.synth.common).
"""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from bench.errors import BenchError
from bench.synth.common import check_range, stream, write_task_folder

VERSION = "1.0"

KINDS = ("kettle", "lamp", "chair", "table", "blender", "toaster", "backpack", "umbrella", "helmet", "jacket",
         "boots", "tent", "drill", "hammer", "ladder", "bicycle", "guitar", "camera", "mirror", "pillow",
         "blanket", "teapot", "vase", "clock", "bucket", "shovel", "scarf", "wallet", "saddle", "kayak")
COLOURS = ("red", "blue", "green", "black", "white", "grey", "yellow", "brown", "orange", "purple")
MATERIALS = ("steel", "oak", "glass", "plastic", "leather", "cotton", "bamboo", "copper", "wool", "ceramic")
LETTERS = tuple(string.ascii_uppercase)
INSTRUCTION = "Give the catalogue code of this product."
TASK_INSTRUCTION = "Reply with the product's catalogue code only."


@dataclass(frozen=True)
class CodesConfig:
    seed: int = 0
    kinds: int = 24              # product kinds, each with its own two-letter code
    train_per_kind: int = 10     # train records of every kind (a fine-tune sees each code this often)
    test_per_kind: int = 6       # test records of every kind
    lot_min: int = 10            # lot numbers are drawn from [lot_min, lot_max]
    lot_max: int = 99

    def validate(self, where: str = "codes config") -> None:
        check_range(where, "seed", self.seed, 0, 2**63 - 1)
        check_range(where, "kinds", self.kinds, 2, len(KINDS))
        check_range(where, "train_per_kind", self.train_per_kind, 1, 1000)
        check_range(where, "test_per_kind", self.test_per_kind, 1, 1000)
        check_range(where, "lot_min", self.lot_min, 0, 10**6)
        check_range(where, "lot_max", self.lot_max, self.lot_min, 10**6)
        if self.train_per_kind + self.test_per_kind > self.lot_max - self.lot_min + 1:
            raise BenchError(f"{where}: train_per_kind + test_per_kind ({self.train_per_kind + self.test_per_kind}) "
                             f"exceeds the {self.lot_max - self.lot_min + 1} distinct lots of a kind; widen lot_min..lot_max")


TINY = CodesConfig(seed=5, kinds=4, train_per_kind=3, test_per_kind=2)


def code_table(cfg: CodesConfig) -> dict[str, str]:
    """Kind -> two capital letters, none of them in the kind's word, every code different."""
    cfg.validate()
    table: dict[str, str] = {}
    for kind in KINDS[: cfg.kinds]:
        allowed = [c for c in LETTERS if c.lower() not in kind]
        for attempt in range(1000):
            r = stream(cfg.seed, "code", f"{kind}:{attempt}")
            code = "".join(r.sample(allowed, 2))
            if code not in table.values():
                table[kind] = code
                break
        else:  # pragma: no cover (26 letters leave hundreds of codes for 30 kinds)
            raise BenchError(f"codes generator: no free code for kind {kind!r}")
    return table


def catalogue_code(code: str, lot: int) -> str:
    """The rule: the kind's code, a hyphen, the lot number."""
    return f"{code}-{lot}"


def _records(cfg: CodesConfig, table: dict[str, str]) -> dict[str, list[dict]]:
    """Every split's records by kind; the lots of one kind never repeat, so no code occurs twice."""
    out: dict[str, list[dict]] = {"train": [], "test": []}
    for kind, code in table.items():
        lots = list(range(cfg.lot_min, cfg.lot_max + 1))
        stream(cfg.seed, "lots", kind).shuffle(lots)
        taken = iter(lots)
        for split, n in (("train", cfg.train_per_kind), ("test", cfg.test_per_kind)):
            for j in range(n):
                r = stream(cfg.seed, f"record:{split}", f"{kind}:{j}")
                lot = next(taken)
                colour, material = r.choice(COLOURS), r.choice(MATERIALS)
                out[split].append({
                    "id": f"{split}-{kind}-{j}", "instruction": INSTRUCTION,
                    "input": f"name: {colour} {material} {kind}; lot: {lot}",
                    "output": catalogue_code(code, lot), "kind_code": code, "product_kind": kind,
                    "colour": colour, "material": material, "lot": lot,
                })
    return out


def _interleave(cfg: CodesConfig, rows: list[dict], split: str) -> list[dict]:
    """Rounds over the kinds (each round in its own seeded order), so any prefix (`--limit N`) spans the kinds."""
    by_kind: dict[str, list[dict]] = {}
    for row in rows:
        by_kind.setdefault(row["product_kind"], []).append(row)
    out: list[dict] = []
    for rnd in range(max(len(v) for v in by_kind.values())):
        kinds = sorted(by_kind, key=lambda k: stream(cfg.seed, f"order:{split}:{rnd}", k).random())
        out.extend(by_kind[k][rnd] for k in kinds if rnd < len(by_kind[k]))
    return out


def task_meta(cfg: CodesConfig, name: str) -> dict:
    return {
        "name": name, "version": VERSION,
        "description": (
            "Built so that fine-tuning is the right strategy: each product record gets a catalogue code made of "
            f"an arbitrary two-letter code of its kind ({cfg.kinds} kinds, a random table no model knows and no "
            "letter of which occurs in the kind's word) and its lot number, e.g. 'QV-47'. The table cannot be "
            "guessed zero-shot, 3 random exemplars rarely show the needed kind, and every kind occurs "
            f"{cfg.train_per_kind} times in train, so a fine-tune sees the whole table. No documents: retrieval "
            "searches the train split, whose answers are never this item's answer (every code is unique)."),
        "language": "en", "kind": "qa", "metrics": ["exact_match", "f1"], "main_metric": "exact_match",
        "source": f"generated by bench.synth.codes v{VERSION} (seed {cfg.seed}); see manifest.json",
        "license": "CC0-1.0 (synthetic)",
        "instruction": TASK_INSTRUCTION,
    }


def generate(cfg: CodesConfig, out: Path, name: Optional[str] = None) -> dict:
    """Write the task folder (task.yaml, train.jsonl, test.jsonl, manifest.json); returns the manifest."""
    table = code_table(cfg)
    recs = _records(cfg, table)
    train, test = _interleave(cfg, recs["train"], "train"), _interleave(cfg, recs["test"], "test")
    stats = {"kinds": len(table), "train": len(train), "test": len(test), "code_table": table}
    return write_task_folder(Path(out), task_meta(cfg, name or "codes"), {"train": train, "test": test},
                             generator="bench.synth.codes", version=VERSION, seed=cfg.seed, config=asdict(cfg),
                             stats=stats)
