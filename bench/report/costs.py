"""The cost ledger: every strategy's costs in one schema, priced into (estimated) money, and break-even.

A cell's cost.json mixes what the runner measured for every arm (per-query latency and tokens, peak
RSS, wall time) with one-off sections that strategies add (`train` for fine-tunes, `index` for RAG,
`data`/`prep` for data preparation). `ledger_from_cost` flattens one cost.json into a `Ledger`;
`mean_ledger` averages the seeds of one strategy (each seed trains its own adapter, so the one-off
cost of a strategy is the cost of one of them). `price` turns a ledger into money with the run's
price sheet (config `prices: {gpu_hour, cpu_hour, per_1k_tokens, per_1k_prompt_tokens,
per_1k_completion_tokens, models}`); every figure it gives is an
estimate and is labelled so. `break_even` answers, for two strategies, after how many queries the
one with the larger one-off cost is paid back by its lower per-query cost, or says that it never is.

Pure functions over dicts: no model calls, no files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional, Sequence

from bench.types import Prices


@dataclass
class Ledger:
    """One strategy's costs. Seconds, bytes and counts as measured; None where nothing was measured."""

    # one-off (setup)
    train_seconds: Optional[float] = None
    index_seconds: Optional[float] = None
    prep_seconds: Optional[float] = None
    train_device: str = "cpu"  # "gpu" when a CUDA peak was recorded or the trainer said cuda
    train_cached: Optional[bool] = None
    # per query
    latency_p50_s: Optional[float] = None
    latency_p95_s: Optional[float] = None
    latency_mean_s: Optional[float] = None
    retrieval_p50_s: Optional[float] = None
    retrieval_mean_s: Optional[float] = None
    prompt_tokens: Optional[float] = None
    completion_tokens: Optional[float] = None
    samples_per_query: Optional[float] = None
    queries: Optional[int] = None
    failed: Optional[int] = None
    serve_device: str = "cpu"
    serve_backend: str = ""  # llama, hf, endpoint: every arm of a model should show the same
    serve_format: str = ""  # the weights format it was served in (f16, q8_0, native, fp32, ...)
    # memory and size
    peak_rss_mb: Optional[float] = None
    peak_cuda_mb: Optional[float] = None
    trainable_params: Optional[float] = None
    total_params: Optional[float] = None
    trainable_share: Optional[float] = None
    adapter_bytes: Optional[float] = None
    train_tokens: Optional[float] = None
    index_bytes: Optional[float] = None
    index_vectors: Optional[float] = None
    wall_seconds: Optional[float] = None
    seeds: int = 1

    @property
    def setup_seconds(self) -> float:
        return sum(v for v in (self.train_seconds, self.index_seconds, self.prep_seconds) if v)

    @property
    def query_seconds(self) -> Optional[float]:
        """Seconds of compute per query: mean generation latency (else p50) plus mean (else p50) retrieval."""
        gen = self.latency_mean_s if self.latency_mean_s is not None else self.latency_p50_s
        if gen is None:
            return None
        ret = self.retrieval_mean_s if self.retrieval_mean_s is not None else self.retrieval_p50_s
        return gen + (ret or 0.0)

    @property
    def tokens_per_query(self) -> Optional[float]:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0.0) + (self.completion_tokens or 0.0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(setup_seconds=self.setup_seconds, query_seconds=self.query_seconds,
                 tokens_per_query=self.tokens_per_query)
        return d


def _num(x: Any) -> Optional[float]:
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def ledger_from_cost(cost: Mapping[str, Any], gpu_run: bool = False, latency_mean_s: Optional[float] = None) -> Ledger:
    """Flatten one cell's cost.json into a Ledger. `gpu_run`: the run's hardware had a CUDA device."""
    train = cost.get("train") or {}
    index = cost.get("index") or {}
    prep = cost.get("data") or cost.get("prep") or {}
    pq = cost.get("per_query") or {}
    retrieval = cost.get("retrieval") or {}
    mem = cost.get("memory") or {}
    led = Ledger()
    if train:  # the training, plus the one-off GGUF -> transformers conversion every fine-tune of a GGUF needs
        led.train_seconds = (_num(train.get("wall_seconds", train.get("seconds"))) or 0.0) \
            + (_num(train.get("conversion_seconds")) or 0.0)
        led.train_cached = bool(train.get("cached")) if "cached" in train else None
        cuda = _num(train.get("peak_cuda_mb"))
        device = str(train.get("device") or "")
        led.train_device = "gpu" if (cuda and cuda > 0) or device.startswith("cuda") else "cpu"
        led.peak_cuda_mb = cuda if cuda else None
        for k in ("trainable_params", "total_params", "trainable_share", "adapter_bytes"):
            setattr(led, k, _num(train.get(k)))
        led.train_tokens = _num(train.get("tokens"))
        if led.trainable_share is None and led.trainable_params and led.total_params:
            led.trainable_share = led.trainable_params / led.total_params
    if index:  # the build is charged to every arm that uses the index, even when this cell loaded it cached
        led.index_seconds = _num(index.get("build_seconds")) if _num(index.get("build_seconds")) is not None \
            else _num(index.get("seconds"))
        led.index_bytes = _num(index.get("bytes"))
        led.index_vectors = _num(index.get("vectors"))
    serve = cost.get("serve") or cost.get("serving") or {}
    prep_s = _num(prep.get("seconds", prep.get("wall_seconds"))) if prep else None
    export_s = _num(serve.get("export_seconds"))  # writing the served GGUF (base or merged fine-tune), once
    tune_s = _num((cost.get("tune") or {}).get("seconds"))  # --tune: choosing the arm's settings on validation items
    if prep_s is not None or export_s is not None or tune_s is not None:
        led.prep_seconds = (prep_s or 0.0) + (export_s or 0.0) + (tune_s or 0.0)
    led.serve_backend = str(serve.get("backend") or cost.get("backend") or "")
    led.serve_format = str(serve.get("format") or "")
    led.latency_p50_s = _num(pq.get("latency_p50_s"))
    led.latency_p95_s = _num(pq.get("latency_p95_s"))
    led.latency_mean_s = _num(latency_mean_s) if latency_mean_s is not None else _num(pq.get("latency_mean_s"))
    led.retrieval_p50_s = _num(retrieval.get("p50_seconds"))
    led.retrieval_mean_s = _num(retrieval.get("mean_seconds"))
    led.prompt_tokens = _num(pq.get("prompt_tokens_mean"))
    led.completion_tokens = _num(pq.get("completion_tokens_mean"))
    led.samples_per_query = _num(pq.get("samples_per_query"))
    led.queries = int(pq["queries"]) if _num(pq.get("queries")) is not None else None
    led.failed = int(pq["failed"]) if _num(pq.get("failed")) is not None else None
    led.peak_rss_mb = _num(mem.get("peak_rss_mb", train.get("peak_rss_mb")))
    led.wall_seconds = _num(cost.get("wall_seconds"))
    backend = str(cost.get("backend") or "")
    led.serve_device = "gpu" if gpu_run and backend != "llama" else "cpu"
    return led


def mean_ledger(ledgers: Sequence[Ledger]) -> Ledger:
    """Field-wise mean over seeds (maxima for peaks); strings from the first ledger."""
    if not ledgers:
        return Ledger(seeds=0)
    out = Ledger(seeds=len(ledgers))
    for f in fields(Ledger):
        if f.name == "seeds":
            continue
        vals = [getattr(l, f.name) for l in ledgers]
        if f.type in ("str",) or isinstance(vals[0], str):
            setattr(out, f.name, "gpu" if "gpu" in vals else vals[0])
            continue
        if f.name == "train_cached":
            known = [v for v in vals if v is not None]
            setattr(out, f.name, all(known) if known else None)
            continue
        nums = [v for v in vals if v is not None]
        if not nums:
            continue
        if f.name.startswith("peak_"):
            setattr(out, f.name, max(nums))
        elif f.name in ("queries", "failed"):
            setattr(out, f.name, int(round(sum(nums) / len(nums))))
        else:
            setattr(out, f.name, sum(nums) / len(nums))
    return out


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Money:
    """Estimated money from a price sheet: one-off setup and per query (and per 1k queries)."""

    setup: float
    per_query: Optional[float]
    basis: str = "estimated"  # always an estimate: measured seconds x the price sheet
    detail: dict = field(default_factory=dict)

    @property
    def per_1k(self) -> Optional[float]:
        return None if self.per_query is None else 1000 * self.per_query

    def total(self, volume: float) -> Optional[float]:
        return None if self.per_query is None else self.setup + volume * self.per_query


def prices_from(manifest_or_prices: Optional[Mapping[str, Any]]) -> dict:
    """The price sheet of a run (manifest config.prices), with defaults for missing keys, resolved for the
    run's model: per_1k_prompt_tokens and per_1k_completion_tokens are that model's token prices, and
    served_by_endpoint says whether its queries ran on someone else's machine (priced by tokens only)."""
    m = manifest_or_prices or {}
    is_manifest = "config" in m
    p = dict(((m.get("config") or {}).get("prices") if is_manifest else m) or {})
    model = (m.get("model") or {}) if is_manifest else {}
    sheet = {f.name: getattr(Prices(), f.name) for f in fields(Prices)}
    for k in ("gpu_hour", "cpu_hour", "per_1k_tokens", "per_1k_prompt_tokens", "per_1k_completion_tokens"):
        v = _num(p.get(k))
        if v is not None:
            sheet[k] = v
    models = p.get("models") or {}
    if isinstance(models, (list, tuple)):  # written as pairs by an older writer
        models = {str(name): entry for name, entry in models}
    sheet["models"] = models
    prompt, completion = Prices(**sheet).tokens_for(model.get("name"))
    out = {k: sheet[k] for k in ("gpu_hour", "cpu_hour", "per_1k_tokens")}
    out.update(per_1k_prompt_tokens=prompt, per_1k_completion_tokens=completion,
               served_by_endpoint=model.get("kind") == "endpoint")
    return out


def price(led: Ledger, prices: Mapping[str, float]) -> Money:
    """Money = device-seconds x the hourly rate of the device + tokens x their per-1k prices.

    A model served by an endpoint costs its token prices per query: the waiting machine's hours are not
    charged (a self-hosted server's hourly cost belongs in the token prices you set for it).
    """
    rate = {"gpu": prices["gpu_hour"] / 3600.0, "cpu": prices["cpu_hour"] / 3600.0}
    train = (led.train_seconds or 0.0) * rate[led.train_device]
    index = (led.index_seconds or 0.0) * rate["cpu"]
    prep = (led.prep_seconds or 0.0) * rate["cpu"]
    q = led.query_seconds
    per_query = None
    if q is not None:
        flat = prices["per_1k_tokens"]
        prompt_rate = prices.get("per_1k_prompt_tokens")
        completion_rate = prices.get("per_1k_completion_tokens")
        tokens = ((led.prompt_tokens or 0.0) * (flat if prompt_rate is None else prompt_rate)
                  + (led.completion_tokens or 0.0) * (flat if completion_rate is None else completion_rate)) / 1000.0
        machine = 0.0 if prices.get("served_by_endpoint") else q * rate[led.serve_device]
        per_query = machine + tokens
    return Money(train + index + prep, per_query,
                 detail={"train": train, "index": index, "prep": prep, "prices": dict(prices)})


# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BreakEven:
    """When does `a` (more one-off cost) become cheaper in total than `b`?"""

    a: str
    b: str
    volume: Optional[float]  # queries at which totals are equal; None when no such volume exists
    kind: str  # "crossover" | "a_dominates" | "b_dominates" | "equal" | "unknown"
    statement: str

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "volume": self.volume, "kind": self.kind, "statement": self.statement}


def break_even(name_a: str, a: Money, name_b: str, b: Money, unit: str = "$") -> BreakEven:
    """The query volume N* where setup_a + N q_a = setup_b + N q_b, or a statement that none exists.

    Ordered so that the answer reads naturally: if one strategy is cheaper both up front and per
    query it dominates (no volume changes that); if one costs more up front but less per query,
    N* = (setup_hi - setup_lo) / (q_lo_side - q_hi_side) queries pay it back.
    """
    if a.per_query is None or b.per_query is None:
        return BreakEven(name_a, name_b, None, "unknown", f"{name_a} vs {name_b}: per-query cost not measured for both")
    ds, dq = a.setup - b.setup, a.per_query - b.per_query
    eps = 1e-15
    if abs(ds) <= eps and abs(dq) <= eps:
        return BreakEven(name_a, name_b, None, "equal", f"{name_a} and {name_b} cost the same at every volume")
    if ds <= eps and dq <= eps:
        return BreakEven(name_a, name_b, None, "a_dominates",
                         f"{name_a} is never more expensive than {name_b}: no lower one-off cost or per-query cost to win back")
    if ds >= -eps and dq >= -eps:
        up = (f"the same up front ({unit}{a.setup:.4g})" if abs(ds) <= eps
              else f"more up front ({unit}{a.setup:.4g} vs {unit}{b.setup:.4g})")
        per = "the same per query" if abs(dq) <= eps else "more per query"
        return BreakEven(name_a, name_b, None, "b_dominates",
                         f"{name_b} is never more expensive than {name_a}: {name_a} costs {up} and {per}; "
                         "no volume pays it back")
    # opposite signs: the one with the larger setup has the lower per-query cost
    volume = -ds / dq
    hi, lo = (name_a, name_b) if ds > 0 else (name_b, name_a)
    return BreakEven(name_a, name_b, volume, "crossover",
                     f"{hi}'s extra one-off cost ({unit}{abs(ds):.4g}) is paid back by its lower per-query cost "
                     f"({unit}{abs(dq) * 1000:.4g} less per 1k queries) after {fmt_volume(volume)} queries; "
                     f"below that {lo} is cheaper")


def per_1k_at(money: Money, volume: float) -> Optional[float]:
    """Estimated money per 1k queries at `volume` queries, the one-off cost spread over them."""
    if money.per_query is None:
        return None
    return 1000 * (money.setup / volume + money.per_query)


def fmt_volume(v: Optional[float]) -> str:
    if v is None:
        return "–"
    if v < 1e3:
        return f"{v:,.0f}"
    if v < 1e6:
        return f"{v / 1e3:,.1f}k"
    if v < 1e9:
        return f"{v / 1e6:,.1f}M"
    return f"{v:.2e}"
