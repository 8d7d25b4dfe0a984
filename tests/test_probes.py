"""Forgetting probes: the packaged SmolLM2 through llama.cpp gives finite numbers; caching; deltas."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest

from bench.errors import BenchError
from bench.run.probes import probe_delta, resolve, run_probes
from bench.run.probes.sets import SETS


class ScriptedScorer:
    """Log-likelihood = minus the length of the continuation: the shortest option always wins."""

    model_id = "scripted"

    def __init__(self):
        self.calls = 0

    def loglikelihood(self, context, continuation):
        self.calls += 1
        return -float(len(continuation))

    def count_tokens(self, text):
        return max(1, len(text.split()))


def test_probe_sets_resolve():
    sets = resolve("default")
    assert len(sets["mmlu"]) == 40 and len({i["subject"] for i in sets["mmlu"]}) == 40  # stratified prefix
    assert len(resolve("large")["mmlu"]) > 200
    with pytest.raises(BenchError):
        resolve("huge")
    with pytest.raises(BenchError):
        resolve({"mmlu": 0})


def test_run_probes_rows_cache_and_delta(tmp_path):
    scorer = ScriptedScorer()
    ctx = SimpleNamespace(backend=scorer, config=SimpleNamespace(resolved_cache_dir=lambda: tmp_path))
    rows = run_probes(ctx, "tiny")
    assert {r["metric"] for r in rows} == {"probe_mmlu_acc", "probe_tofu_world_facts_acc", "probe_tofu_real_authors_acc",
                                           "probe_rubq_acc", "probe_perplexity_en_perplexity"}
    for r in rows:
        for key in ("metric", "value", "n", "n_failed", "ci_low", "ci_high", "higher_is_better", "items"):
            assert key in r
    calls = scorer.calls
    again = run_probes(ctx, "tiny")
    assert scorer.calls == calls and again == rows  # cached by model_id
    d = probe_delta(rows[0], rows[0])
    assert d["delta"] == 0.0 and d["ci_low"] < 0 < d["ci_high"]  # identical answers on a few items: no zero-width interval


@pytest.mark.slow
def test_probes_on_packaged_smollm2(tmp_path):
    from bench.models.llama import LlamaBackend
    from bench.models.resolve import resolve_model

    spec = resolve_model("smollm2-135m", tmp_path)
    backend = LlamaBackend(spec, threads=2)
    try:
        # one item of each probe keeps this under a minute on a busy 2-core machine; "tiny" runs in the test above
        small = {"mmlu": 2, "tofu_world_facts": 1, "tofu_real_authors": 1, "rubq": 1, "perplexity_en": 1}
        rows = run_probes(SimpleNamespace(backend=backend), small, use_cache=False)
    finally:
        backend.close()
    assert len(rows) == len(SETS["tiny"])
    for r in rows:
        assert r["n_failed"] == 0, r["metric"]
        assert r["value"] is not None and math.isfinite(r["value"]), r["metric"]
    ppl = next(r for r in rows if r["metric"].endswith("perplexity"))
    assert 1.0 < ppl["value"] < 1000.0


@dataclasses.dataclass
class ProbeCtx:
    """The two fields of a CellContext the probes read."""

    backend: object
    config: object


def test_probe_measures_add_deltas_against_the_base(tmp_path):
    from bench.run.probes.hook import probe_measures

    class Shifted(ScriptedScorer):
        model_id = "adapted"

        def loglikelihood(self, context, continuation):
            self.calls += 1
            return -float(len(continuation)) * (1.5 if "Answer" in context else 1.2)

    cfg = SimpleNamespace(resolved_cache_dir=lambda: tmp_path)
    measures, items = probe_measures(ProbeCtx(Shifted(), cfg), "tiny", base_backend=ScriptedScorer())
    deltas = [m for m in measures if m.scorer == "probe_delta"]
    assert len(deltas) == 5 and all(m.kind == "probe" for m in measures)
    assert set(items) == {m.metric for m in measures if m.scorer == "probe"}
    ppl = next(m for m in deltas if "perplexity" in m.metric)
    assert ppl.value > 0  # lower likelihood -> higher perplexity
    same, _ = probe_measures(ProbeCtx(ScriptedScorer(), cfg), "tiny", base_backend=ScriptedScorer())
    assert not [m for m in same if m.scorer == "probe_delta"]
