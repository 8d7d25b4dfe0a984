"""Stacking strategies: `lora+rag+cot` is one fine-tune, one retriever and one prompting method.

`parse_arm` checks the parts (known names, at most one per family) and gives the arm a canonical
name in family order, so `rag+lora` and `lora+rag` are the same arm and `rag+zero_shot` is `rag`.
An arm's family is the family of its most expensive part (fine-tuning, else retrieval, else
prompting), read from the strategy classes; its `base_name` is the same arm without its fine-tune,
the arm a fine-tune's forgetting is measured against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Optional

from bench.config import RunConfig, split_variant
from bench.errors import BenchError
from bench.hashing import sha256_json
from bench.plugins import load_plugins
from bench.registry import STRATEGIES

DEFAULT_PROMPTING = "zero_shot"


@dataclass
class Arm:
    """One arm of the grid: an optional fine-tune, an optional retriever, and one prompting strategy."""

    finetune: Optional[object]
    retrieval: Optional[object]
    prompting: object

    @property
    def parts(self) -> list:
        return [p for p in (self.finetune, self.retrieval, self.prompting) if p is not None]

    @property
    def name(self) -> str:
        return _join([p.name for p in self.parts])

    @property
    def family(self) -> str:
        return self.parts[0].family

    @property
    def base_name(self) -> str:
        """The arm without its fine-tuning part (lora+rag -> rag; lora -> zero_shot)."""
        return _join([p.name for p in (self.retrieval, self.prompting) if p is not None])

    @property
    def key(self) -> str:
        """Canonical name plus the hash of every part's params: the strategy part of cache keys."""
        params = {p.name: asdict(p.params) if is_dataclass(p.params) else {} for p in self.parts}
        return f"{self.name}#{sha256_json(params)[:16]}"

    @property
    def without_retrieval(self) -> str:
        """The arm without its retrieval part (rag+cot -> cot): what retrieval adds is measured against it."""
        return _join([p.name for p in (self.finetune, self.prompting) if p is not None])

    @property
    def diagnostic(self) -> bool:
        """A part reads gold information (rag_oracle): the arm is a ceiling, never a recommendation."""
        return any(getattr(p, "diagnostic", False) for p in self.parts)

    def describe(self) -> dict:
        """What the manifest records of an arm (the report reads arms only from there)."""
        return {"family": self.family, "parts": {p.name: p.family for p in self.parts}, "base": self.base_name,
                "without_retrieval": self.without_retrieval, "diagnostic": self.diagnostic}


def _join(names: list[str]) -> str:
    if len(names) > 1 and names[-1] == DEFAULT_PROMPTING:
        names = names[:-1]
    return "+".join(names)


def parse_arm(spec: str, config: RunConfig) -> Arm:
    """The Arm a strategy word names (`rag+cot`), with each part's params from the config."""
    load_plugins()
    words = [w.strip() for w in spec.split("+")]
    if not any(words):
        raise BenchError(f"--strategy {spec!r}: empty strategy name")
    if not all(words):
        raise BenchError(f"--strategy {spec}: an empty name beside a '+'; stack names like rag+cot")
    slots: dict[str, object] = {}
    for w in words:
        base, label = split_variant(w, f"--strategy {spec}")
        cls = STRATEGIES.get(base)
        if cls.family in slots:
            raise BenchError(
                f"--strategy {spec}: {slots[cls.family].name} and {w} are both {cls.family} strategies; "
                "stack at most one of each family (fine-tuning, retrieval, prompting)"
            )
        slots[cls.family] = cls(config.params_for(w, cls.Params))
        if label:
            slots[cls.family].name = w  # the variant's own name: rows, cache keys and params.<name> use it
    if "prompting" not in slots:
        cls = STRATEGIES.get(DEFAULT_PROMPTING)
        slots["prompting"] = cls(config.params_for(DEFAULT_PROMPTING, cls.Params))
    return Arm(slots.get("fine-tuning"), slots.get("retrieval"), slots["prompting"])


def expand_strategies(words: tuple[str, ...]) -> tuple[str, ...]:
    """`all` means every registered single strategy."""
    load_plugins()
    out: list[str] = []
    for w in words:
        out.extend(STRATEGIES.names() if w == "all" else [w])
    return tuple(dict.fromkeys(out))
