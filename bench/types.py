"""The shared data shapes of bench: what flows between tasks, strategies, backends, scorers and reports.

Everything here is a plain frozen dataclass so that it can be hashed into cache keys and written to
JSON without surprises. `Row` is the one constructor of a rows.jsonl line (DESIGN.md): a `CellKey`
(which cell) plus a `Measure` (one metric's value over the cell's items).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from bench.errors import BenchError
from bench.hashing import sha256_json


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
class Call:
    """One model call a strategy asks for, before rendering: chat messages, decoding parameters (None = the
    run's), the sample index (self-consistency's n samples of one prompt are samples 0..n-1), and the
    prompt form ("auto", "chat" or "completion": see bench.prompts.PromptForm)."""

    messages: tuple[Mapping[str, str], ...]
    params: Optional["GenParams"] = None
    sample: int = 0
    form: str = "auto"


@dataclass(frozen=True)
class GenRequest:
    """One completion to compute: a rendered prompt, its decoding parameters and its sampling seed.

    A backend's generate_batch takes many at once; requests with the same prompt (self-consistency's
    samples) can share the prompt's processing.
    """

    prompt: str
    params: GenParams
    seed: int = 0


@dataclass(frozen=True)
class Generation:
    """One model call: what went in, what came out, and what it cost."""

    prompt: str
    output: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    cached: bool = False
    finish_reason: str = ""  # "stop", "length", or "error" (then `error` says what; such a generation is never cached)
    error: Optional[str] = None  # why this one request failed (e.g. the prompt does not fit the context)


@dataclass
class Prediction:
    """A strategy's answer to one example: the extracted answer and the raw generations behind it."""

    example_id: str
    answer: Optional[str]  # None = the strategy failed on this example (counted in n_failed)
    generations: list[Generation] = field(default_factory=list)
    error: Optional[str] = None
    info: dict = field(default_factory=dict)  # strategy extras: retrieved ids, votes, ...
    sources: tuple[str, ...] = ()  # texts the arm showed the model besides the item (retrieved passages)
    raw: Optional[str] = None  # the model's final output before answer extraction (bench.prompts.final_answer)


@dataclass(frozen=True)
class Score:
    """A per-example metric value with the reason it got that value; value None = could not score."""

    metric: str
    value: Optional[float]
    reason: str = ""


@dataclass(frozen=True)
class Passage:
    """A retrieved piece of text: which document it came from, its rank and score."""

    doc_id: str
    title: str
    text: str
    score: float = 0.0
    rank: int = 0


GGUF_TYPES = ("f32", "f16", "bf16", "q8_0")  # the weight types bench exports a GGUF in (bench.models.convert)
TOKEN_PRICES = ("per_1k_tokens", "per_1k_prompt_tokens", "per_1k_completion_tokens")


@dataclass(frozen=True)
class Prices:
    """A price sheet that turns measured costs into money (estimates, marked as such in reports).

    Machine time is priced by the hour. Tokens are priced by the 1k, as a hosted API charges them (or
    as your own server costs): prompt and completion tokens at their own prices when given, else both at
    per_1k_tokens. `models` gives particular models their own token prices, so one sheet serves runs of
    several models: {"openai/gpt-4o-mini": {per_1k_prompt_tokens: 0.00015, per_1k_completion_tokens: 0.0006}}.
    """

    gpu_hour: float = 2.0
    cpu_hour: float = 0.05
    per_1k_tokens: float = 0.0
    per_1k_prompt_tokens: Optional[float] = None  # None = per_1k_tokens
    per_1k_completion_tokens: Optional[float] = None  # None = per_1k_tokens
    models: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        models = self.models or {}
        if not isinstance(models, Mapping):
            raise BenchError("prices.models: map model names to their token prices, e.g. "
                             "{openai/NAME: {per_1k_prompt_tokens: 0.1, per_1k_completion_tokens: 0.3}}")
        clean: dict[str, dict[str, float]] = {}
        for name, entry in models.items():
            if not isinstance(entry, Mapping):
                raise BenchError(f"prices.models.{name}: expected a mapping of {', '.join(TOKEN_PRICES)}")
            for key, value in entry.items():
                if key not in TOKEN_PRICES:
                    raise BenchError(f"prices.models.{name}: unknown key {key!r}; known: {', '.join(TOKEN_PRICES)}")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                    raise BenchError(f"prices.models.{name}.{key}: expected a price >= 0, got {value!r}")
            clean[str(name)] = {k: float(v) for k, v in sorted(entry.items())}
        object.__setattr__(self, "models", clean)

    def __hash__(self) -> int:
        return hash(sha256_json(asdict(self)))

    def tokens_for(self, model: Optional[str]) -> tuple[float, float]:
        """(price per 1k prompt tokens, per 1k completion tokens) for `model` (its own entry, else the sheet's)."""
        entry = self.models.get(model or "", {})
        flat = entry.get("per_1k_tokens", self.per_1k_tokens)

        def pick(key: str, sheet: Optional[float]) -> float:
            if key in entry:
                return entry[key]
            if "per_1k_tokens" in entry:
                return flat
            return sheet if sheet is not None else flat

        return pick("per_1k_prompt_tokens", self.per_1k_prompt_tokens), pick("per_1k_completion_tokens",
                                                                            self.per_1k_completion_tokens)


# -- rows.jsonl -------------------------------------------------------------------------------------
ROW_KINDS = ("quality", "cost", "probe", "stratum")


@dataclass(frozen=True)
class CellKey:
    """Which cell a row belongs to: (task, strategy, model, seed) and what identifies each."""

    task: str
    task_version: str
    strategy: str  # the arm's canonical name, e.g. lora+rag
    family: str  # the arm's strategy family (fine-tuning if any part trains, else retrieval, else prompting)
    model: str
    model_sha256: str
    seed: int


@dataclass(frozen=True)
class Measure:
    """One metric's value over a set of items, with its interval and how many items failed.

    kind: quality (a task metric), cost (latency, tokens), probe (forgetting probes and their deltas),
    stratum (a quality metric within one SliCK stratum). scorer: the registered metric that reports it.
    extra: kind-specific fields (a probe's language and timing, a delta's base value, ...).
    """

    metric: str
    value: Optional[float]
    n: int
    n_failed: int = 0
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    higher_is_better: bool = True
    main: bool = False
    kind: str = "quality"
    scorer: Optional[str] = None
    stratum: Optional[str] = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """One line of rows.jsonl: a Measure of one cell. `to_dict` is the line; `from_dict` reads one back."""

    key: CellKey
    measure: Measure

    def to_dict(self) -> dict:
        m = asdict(self.measure)
        extra = m.pop("extra") or {}
        return {**asdict(self.key), **m, **extra}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Row":
        key_names = CellKey.__dataclass_fields__
        measure_names = [f for f in Measure.__dataclass_fields__ if f != "extra"]
        key = CellKey(**{k: d.get(k) for k in key_names})
        extra = {k: v for k, v in d.items() if k not in key_names and k not in measure_names}
        return cls(key, Measure(**{k: d.get(k) for k in measure_names if k in d}, extra=extra))
