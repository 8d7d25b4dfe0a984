"""The shared data shapes of bench: what flows between tasks, strategies, backends and scorers.

Everything here is a plain frozen dataclass so that it can be hashed into cache keys and written to
JSON without surprises.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass(frozen=True)
class Example:
    """One Alpaca-style item of a task split (DESIGN.md: id, instruction, input, output)."""

    id: str
    instruction: str
    input: str
    output: str
    answerable: bool = True
    doc_ids: tuple[str, ...] = ()
    stratum: Optional[str] = None
    extra: tuple[tuple[str, Any], ...] = ()  # any further fields of the line, kept for task-specific scorers

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.extra).get(key, default)


@dataclass(frozen=True)
class Doc:
    """One document of a task's RAG corpus (docs.jsonl: id, title, text)."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Task:
    """A loaded, validated task folder."""

    name: str
    version: str
    description: str
    language: str
    kind: str  # "qa" | "generation"
    metrics: tuple[str, ...]
    main_metric: str
    source: str
    license: str
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    docs: tuple[Doc, ...] = ()
    abstain_phrase: str = "I don't know"
    instruction: str = ""
    path: Optional[Path] = None
    files_sha256: tuple[tuple[str, str], ...] = ()  # (file name, sha256)
    extra: tuple[tuple[str, Any], ...] = ()  # further task.yaml keys, e.g. {"scorers": ...}

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.extra).get(key, default)

    @property
    def sha256(self) -> str:
        from bench.hashing import sha256_json

        return sha256_json(self.files_sha256)


@dataclass(frozen=True)
class GenParams:
    """Decoding parameters; greedy when temperature is 0."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Generation:
    """One model call: what went in, what came out, and what it cost."""

    prompt: str
    output: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    cached: bool = False
    finish_reason: str = ""


@dataclass
class Prediction:
    """A strategy's answer to one example: the extracted answer and the raw generations behind it."""

    example_id: str
    answer: Optional[str]  # None = the strategy failed on this example (counted in n_failed)
    generations: list[Generation] = field(default_factory=list)
    error: Optional[str] = None
    info: dict = field(default_factory=dict)  # strategy extras: retrieved ids, votes, ...


@dataclass(frozen=True)
class Score:
    """A per-example metric value with the reason it got that value; value None = could not score."""

    metric: str
    value: Optional[float]
    reason: str = ""
