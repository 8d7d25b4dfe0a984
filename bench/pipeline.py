"""Stacking strategies: `lora+rag+cot` is one fine-tune, one retriever and one prompting method.

`parse_arm` checks the parts (known names, at most one per family) and gives the arm a canonical
name in family order, so `rag+lora` and `lora+rag` are the same arm and `rag+zero_shot` is `rag`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Optional

from bench.config import RunConfig
from bench.errors import BenchError
from bench.hashing import sha256_json
from bench.registry import STRATEGIES, load_all


@dataclass
class Arm:
    finetune: Optional[object]
    retrieval: Optional[object]
    prompting: object

    @property
    def parts(self) -> list:
        return [p for p in (self.finetune, self.retrieval, self.prompting) if p is not None]

    @property
    def name(self) -> str:
        names = [p.name for p in self.parts]
        if len(names) > 1 and names[-1] == "zero_shot":
            names.pop()
        return "+".join(names)

    @property
    def key(self) -> str:
        """Canonical name plus the hash of every part's params: the strategy part of cache keys."""
        params = {p.name: asdict(p.params) if is_dataclass(p.params) else {} for p in self.parts}
        return f"{self.name}#{sha256_json(params)[:16]}"


def parse_arm(spec: str, config: RunConfig) -> Arm:
    load_all()
    words = [w.strip() for w in spec.split("+") if w.strip()]
    if not words:
        raise BenchError(f"--strategy {spec!r}: empty strategy name")
    slots: dict[str, object] = {}
    for w in words:
        cls = STRATEGIES.get(w)
        if cls.family in slots:
            raise BenchError(
                f"--strategy {spec}: {slots[cls.family].name} and {w} are both {cls.family} strategies; "
                "stack at most one of each family (fine-tuning, retrieval, prompting)"
            )
        slots[cls.family] = cls(config.params_for(w, cls.Params))
    if "prompting" not in slots:
        slots["prompting"] = STRATEGIES.get("zero_shot")(config.params_for("zero_shot", STRATEGIES.get("zero_shot").Params))
    return Arm(slots.get("finetune"), slots.get("retrieval"), slots["prompting"])


def expand_strategies(words: tuple[str, ...]) -> tuple[str, ...]:
    """`all` means every registered single strategy."""
    load_all()
    out: list[str] = []
    for w in words:
        out.extend(STRATEGIES.names() if w == "all" else [w])
    return tuple(dict.fromkeys(out))
