"""The run config: one typed, frozen object that says everything a run depends on.

It is built from defaults, then a YAML file (`--config run.yaml`), then command-line flags, and it
rejects unknown keys with a did-you-mean. Strategy hyperparameters live under `params:` keyed by
strategy name and are checked against that strategy's own `Params` dataclass, so a new strategy adds
its knobs without touching this file:

    tasks: [demo]
    strategies: [zero_shot, few_shot]
    model: smollm2-135m
    seeds: [0, 1]
    generation: {max_new_tokens: 64}
    params:
      few_shot: {k: 3, selection: similar}
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from bench.errors import BenchError
from bench.plugins import load_plugins
from bench.registry import STRATEGIES
from bench.taskio import BAD_TEXT, SAFE_NAME, read_yaml_file
from bench.types import GGUF_TYPES, GenParams, Prices

# The default matrix: every family on built-in tasks, sized for ~15 minutes on 2 CPU cores.
# The default run: two built-in tasks whose right answer is known by construction (docs/tasks.md: codes needs
# fine-tuning, capitals is answered by the base model zero-shot), one arm of each family, 40 test items each,
# so that `bench run` decides both within DESIGN.md's 10 minutes on 2 cores (README: the measured time).
DEFAULT_TASKS = ("codes", "capitals")
DEFAULT_STRATEGIES = ("zero_shot", "few_shot", "rag", "lora")
DEFAULT_LIMIT = 40
DEFAULT_MODEL = "smollm2-135m"
BACKENDS = ("auto", "llama", "hf")
PROBE_SETS = ("none", "tiny", "default", "large")
EXECUTORS = ("local", "ray")
SERVE_FORMATS = ("auto", "native", *GGUF_TYPES)  # native: the model file as shipped (e.g. Q4_1)
INT_RANGE = (-(2**31), 2**31 - 1)  # every whole number of a config fits a C int (threads, seeds, steps, tokens)
SEED_RANGE = (0, INT_RANGE[1])  # a seed numpy, torch and llama.cpp all accept


@dataclass(frozen=True)
class DecisionConfig:
    """How the report decides (bench.report.decide): equivalence margin, error rate, quality floor."""

    margin: float = 0.05  # a cheaper arm may replace the best only if it is worse by less than this (0-1 metrics)
    alpha: float = 0.05  # family-wise error rate of the comparisons behind one verdict
    floor: float = 0.1  # a pick below this main-metric value is not recommended (0-1 metrics)


@dataclass(frozen=True)
class EndpointConfig:
    """An OpenAI-compatible server that serves `model: openai/NAME` (bench.models.endpoint).

    The API key is read from the environment variable named by api_key_env and is never stored.
    """

    base_url: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 4


@dataclass(frozen=True)
class SupportConfig:
    """Judge-free source-support checks (bench.metrics.support); nli_model adds a model-based check."""

    nli_model: Optional[str] = None  # an NLI / fact-checking cross-encoder (HF id or path); off by default


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on (see the module docstring); frozen, and unknown keys are rejected."""

    tasks: tuple[str, ...] = DEFAULT_TASKS
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    model: str = DEFAULT_MODEL
    backend: str = "auto"  # auto: llama.cpp for GGUF models, transformers otherwise
    seeds: tuple[int, ...] = (0,)
    limit: Optional[int] = DEFAULT_LIMIT  # first N test items of each task (null = all)
    out: str = "results"
    run_id: Optional[str] = None  # default: derived from the config, so a rerun resumes
    threads: int = 0  # 0 = one per physical core
    cache_dir: Optional[str] = None  # default: <out>/.cache
    generation: GenParams = GenParams()
    params: tuple[tuple[str, Any], ...] = ()  # (strategy name, its Params instance)
    prices: Prices = Prices()
    target_model: Optional[str] = None  # a model to estimate GPU cost for in the report
    probes: str = "tiny"  # forgetting probes on every arm's model: none | tiny | default | large
    strata: bool = False  # label test items known/unknown (SliCK) on the base model; metrics per stratum
    decision: DecisionConfig = DecisionConfig()
    until_decided: bool = False  # evaluate test items in rounds until every task is decided (or the budget ends)
    max_items: Optional[int] = None  # with until_decided: at most this many test items per task
    budget: Optional[str] = None  # with until_decided: wall-clock budget such as 30m, 2h, 90s
    tune: bool = False  # choose each arm's settings on a validation split carved from train
    executor: str = "local"  # local (one process) | ray
    ray_address: Optional[str] = None  # a running Ray cluster (default: start a local one)
    endpoint: EndpointConfig = EndpointConfig()
    support: SupportConfig = SupportConfig()
    serve_format: str = "auto"  # the weights format every arm of a GGUF model is served in (bench.models.serving)

    # -- access ---------------------------------------------------------------------------------
    def params_for(self, strategy_name: str, params_cls: type) -> Any:
        """The Params of one strategy: from the config if given, else the class defaults."""
        for name, p in self.params:
            if name == strategy_name:
                return p
        return params_cls()

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path(self.out) / ".cache"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["params"] = {name: dataclasses.asdict(p) for name, p in self.params}
        return d

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> "RunConfig":
        """A validated config from a mapping (a parsed YAML file); BenchError starting with `where` otherwise."""
        if data is not None and not isinstance(data, dict):
            raise BenchError(f"{where}: a run config is a mapping of keys (tasks, strategies, model, ...), "
                             f"got {type(data).__name__}")
        data = dict(data or {})
        raw_params = data.pop("params", None) or {}
        cfg = _build(cls, data, where)
        return cfg.with_params(raw_params, where)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RunConfig":
        """A validated config from a YAML file, read with the checks of bench.taskio (size, encoding, duplicate
        keys, nesting, aliases); any problem is one BenchError naming the file."""
        p = Path(path)
        if not p.exists() and not p.is_symlink():
            raise BenchError(f"--config {p}: no such file; pass a YAML run config")
        data = read_yaml_file(p)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise BenchError(f"{p}: a run config is a YAML mapping of keys (tasks, strategies, model, ...), "
                             f"got {type(data).__name__}")
        return cls.from_dict(data, where=str(p))

    def replace(self, **changes: Any) -> "RunConfig":
        raw_params = changes.pop("params", None)
        cfg = _build(RunConfig, {**_shallow(self), **changes}, "command line")
        if raw_params is not None:
            return cfg.with_params(raw_params, "command line")
        cfg.validate("command line")
        return cfg

    def with_params(self, raw: dict, where: str) -> "RunConfig":
        """Validate `params:` against each strategy's Params dataclass."""
        if not isinstance(raw, dict):
            raise BenchError(f"{where}: params must map strategy names to their settings")
        load_plugins()
        merged = dict(self.params)
        for name, values in raw.items():
            if not isinstance(name, str):
                raise BenchError(f"{where}: params: key {name!r} must be a strategy name")
            try:
                strat = STRATEGIES.get(split_variant(name, f"{where}: params")[0])
            except BenchError as e:
                raise BenchError(f"{where}: params: {e}") from None
            if isinstance(values, dict):
                values = _build(strat.Params, values, f"{where}: params.{name}")
            elif not isinstance(values, strat.Params):
                raise BenchError(f"{where}: params.{name} must be a mapping of settings")
            check = getattr(values, "validate", None)
            if check:
                problem = check()
                if problem:
                    raise BenchError(f"{where}: params.{name}: {problem}")
            merged[name] = values
        cfg = dataclasses.replace(self, params=tuple(sorted(merged.items())))
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "config") -> None:
        if not self.tasks:
            raise BenchError(f"{where}: tasks is empty; name at least one task (see `bench ls tasks`)")
        if not self.strategies:
            raise BenchError(f"{where}: strategies is empty; name at least one (see `bench ls strategies`)")
        if not self.seeds:
            raise BenchError(f"{where}: seeds is empty; give at least one seed, e.g. --seeds 0")
        for seed in self.seeds:
            if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
                raise BenchError(f"{where}: seed {seed} is out of range; use whole numbers from 0 to {SEED_RANGE[1]}")
        if self.run_id is not None and not SAFE_NAME.fullmatch(self.run_id):
            raise BenchError(f"{where}: run_id {self.run_id[:60]!r} must be one folder name: 1-100 letters, digits or "
                             "_ . + -, not starting with . or - (it must not leave the results folder)")
        if self.limit is not None and self.limit < 1:
            raise BenchError(f"{where}: limit must be a positive number of test items, got {self.limit}")
        if self.backend not in BACKENDS:
            raise BenchError(f"{where}: backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.probes not in PROBE_SETS:
            raise BenchError(f"{where}: probes must be one of {', '.join(PROBE_SETS)}, got {self.probes!r}")
        if self.threads < 0:
            raise BenchError(f"{where}: threads must be >= 0 (0 = one per core), got {self.threads}")
        if self.serve_format not in SERVE_FORMATS:
            raise BenchError(f"{where}: serve_format must be one of {', '.join(SERVE_FORMATS)}, got {self.serve_format!r}")
        if self.executor not in EXECUTORS:
            raise BenchError(f"{where}: executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        d = self.decision
        if not 0 <= d.margin < 1:
            raise BenchError(f"{where}: decision.margin must be in [0, 1) (a difference of the main metric), got {d.margin}")
        if not 0 < d.alpha < 0.5:
            raise BenchError(f"{where}: decision.alpha must be in (0, 0.5), got {d.alpha}")
        if self.max_items is not None and self.max_items < 1:
            raise BenchError(f"{where}: max_items must be a positive number of test items, got {self.max_items}")
        if self.budget is not None:
            budget_seconds(self.budget, where)
        e = self.endpoint
        if e.max_concurrency < 1 or e.timeout_s <= 0 or e.max_retries < 0:
            raise BenchError(f"{where}: endpoint needs max_concurrency >= 1, timeout_s > 0 and max_retries >= 0")
        g = self.generation
        if g.max_new_tokens < 1:
            raise BenchError(f"{where}: generation.max_new_tokens must be >= 1, got {g.max_new_tokens}")
        if g.temperature < 0:
            raise BenchError(f"{where}: generation.temperature must be >= 0, got {g.temperature}")
        if not 0 < g.top_p <= 1:
            raise BenchError(f"{where}: generation.top_p must be in (0, 1], got {g.top_p}")


VARIANT_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


def split_variant(word: str, where: str = "--strategy") -> tuple[str, Optional[str]]:
    """`lora@r64` -> ("lora", "r64"): a registered strategy and the label of one of its settings' variants.

    A variant is the same strategy under its own name with its own `params.<name>`, so one run can hold
    `lora`, `lora@r64` and `lora@docs` side by side (a study's arms); the label is letters, digits, _ . -.
    """
    base, sep, label = word.partition("@")
    if not sep:
        return word, None
    if not VARIANT_LABEL.fullmatch(label):
        raise BenchError(f"{where}: strategy variant {word!r}: the part after @ must be 1-40 letters, digits, "
                         "_ . or - (e.g. lora@r64)")
    return base, label


def budget_seconds(text: str, where: str = "--budget") -> float:
    """Seconds of a budget such as 90s, 30m, 2h or 1h30m (a bare number is minutes)."""
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t) * 60
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?", t)
    if not t or parts is None or not any(parts.groups()):
        raise BenchError(f"{where}: budget {text!r} is not a duration; write e.g. 90s, 30m, 2h or 1h30m")
    h, m, s = (float(g or 0) for g in parts.groups())
    seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise BenchError(f"{where}: budget must be positive, got {text!r}")
    return seconds


def _shallow(obj: Any) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _build(cls: type, data: dict, where: str) -> Any:
    """Build a (nested) frozen dataclass from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise BenchError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise BenchError(f"{where}: key {key!r} is not a name; known keys: {', '.join(sorted(known))}")
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(sorted(known))}"
            raise BenchError(f"{where}: unknown key {key!r}{hint}")
        kwargs[key] = _coerce(value, hints[key], f"{where}: {key}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` as the type `hint` says (a list from a comma string, a number from its text); BenchError otherwise."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return _build(hint, value, where)
    if origin is tuple:
        if value is None:
            return ()
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [v.strip() for v in value.split(",")] if isinstance(value, str) else [value]
        if not isinstance(value, (list, tuple)):
            raise BenchError(f"{where}: expected a list, got {_show(value)}")
        if args and args[0] is not Any and args[-1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        return tuple(value)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise BenchError(f"{where}: expected true or false, got {_show(value)}")
    if hint in (int, float):
        return _number(value, hint, where)
    if hint is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise BenchError(f"{where}: expected a string, got {_show(value)}")
        text = str(value)
        if BAD_TEXT.search(text):
            raise BenchError(f"{where}: the text holds NUL or a lone surrogate (not text); remove it")
        return text
    return value


def _number(value: Any, hint: type, where: str) -> Any:
    """A finite float or a whole number within INT_RANGE, from a number or its text."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BenchError(f"{where}: expected a number, got {_show(value)}")
    if isinstance(value, str):
        try:
            value = int(value) if hint is int and value.strip().lstrip("+-").isdigit() else float(value)
        except (TypeError, ValueError):
            raise BenchError(f"{where}: expected a number, got {_show(value)}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise BenchError(f"{where}: expected a finite number, got {value}")
    if hint is float:
        return float(value)
    if isinstance(value, float) and not value.is_integer():
        raise BenchError(f"{where}: expected a whole number, got {value!r}")
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise BenchError(f"{where}: {int(value)} is out of range; use a whole number from {INT_RANGE[0]} to "
                         f"{INT_RANGE[1]}")
    return int(value)


def _show(value: Any, limit: int = 60) -> str:
    """repr of a user's value, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
