"""The grid runner with a fake model: resume, zero model calls on rerun, cache keys, atomic rows."""

import json

import pytest

from bench.config import RunConfig
from bench.run.cache import GenerationCache
from bench.run.grid import run_grid
from tests.fakes import FakeBackend, FakePool


def _config(task_dir, fake_gguf, tmp_path, **kw):
    base = dict(tasks=(str(task_dir),), strategies=("zero_shot", "few_shot", "cot"), model=str(fake_gguf),
                out=str(tmp_path / "results"), seeds=(0, 1))
    base.update(kw)
    return RunConfig().replace(**base)


def _values(rows):
    return sorted((r["task"], r["strategy"], r["seed"], r["metric"], r["value"], r["n"], r["n_failed"])
                  for r in rows if r["kind"] == "quality")


def test_grid_writes_results_layout(task_dir, fake_gguf, tmp_path):
    cfg = _config(task_dir, fake_gguf, tmp_path)
    res = run_grid(cfg, progress=False, log=lambda m: None, pool=FakePool(FakeBackend()))
    assert res.cells_total == 6 and res.cells_reused == 0 and not res.cells_failed
    run = res.run_dir
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["seeds"] == [0, 1] and manifest["tasks"]["tiny"]["files_sha256"]
    assert manifest["versions"]["transformers"] and manifest["hardware"]["cpus"]
    rows = [json.loads(l) for l in (run / "rows.jsonl").read_text().splitlines()]
    required = {"task", "strategy", "model", "seed", "metric", "value", "n", "n_failed", "ci_low", "ci_high"}
    assert all(required <= r.keys() for r in rows)
    cell = run / "cells" / "tiny__few_shot__fake-model__s0"
    gens = [json.loads(l) for l in (cell / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 4 and {"prompt", "output", "prompt_tokens", "completion_tokens", "seconds"} <= gens[0].keys()
    scores = [json.loads(l) for l in (cell / "scores.jsonl").read_text().splitlines()]
    assert len(scores[0]["info"]["exemplars"]) == 3
    cost = json.loads((cell / "cost.json").read_text())
    assert cost["per_query"]["queries"] == 4 and cost["per_query"]["latency_p50_s"] > 0


def test_second_run_makes_zero_model_calls(task_dir, fake_gguf, tmp_path):
    cfg = _config(task_dir, fake_gguf, tmp_path)
    fake = FakeBackend()
    first = run_grid(cfg, progress=False, log=lambda m: None, pool=FakePool(fake))
    calls = fake.calls
    assert calls == first.model_calls > 0
    pool = FakePool(fake)
    second = run_grid(cfg, progress=False, log=lambda m: None, pool=pool)
    assert fake.calls == calls and second.model_calls == 0 and second.cells_reused == 6
    assert pool.loads == 0  # not even loaded
    assert _values(first.rows) == _values(second.rows)
    # a fresh run folder with the same cache: recomputed from the generation cache, still no model call
    third = run_grid(cfg.replace(run_id="again"), progress=False, log=lambda m: None, pool=FakePool(fake))
    assert fake.calls == calls and third.cells_reused == 0
    assert _values(third.rows) == _values(first.rows)


def test_a_rerun_keeps_the_load_the_cells_were_computed_under(task_dir, fake_gguf, tmp_path, monkeypatch):
    """The manifest lists every invocation; the report's header names the load of the one that computed
    the cells, not of a later rerun that only reused them."""
    import bench.results as results
    from bench.report.render import _load_text

    cfg = _config(task_dir, fake_gguf, tmp_path)
    monkeypatch.setattr(results.os, "getloadavg", lambda: (1.5, 1.25, 1.0))
    first = run_grid(cfg, progress=False, log=lambda m: None, pool=FakePool(FakeBackend()))
    monkeypatch.setattr(results.os, "getloadavg", lambda: (0.25, 0.5, 0.75))
    run_grid(cfg, progress=False, log=lambda m: None, pool=FakePool(FakeBackend()))
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    runs = manifest["invocations"]
    assert [r["computed"] for r in runs] == [6, 0] and [r["load_avg"] for r in runs] == [[1.5, 1.25, 1.0], [0.25, 0.5, 0.75]]
    assert manifest["hardware"]["load_avg"] == [0.25, 0.5, 0.75]  # this invocation's machine state
    text = _load_text(manifest)
    assert text.startswith("load average at start [1.5, 1.25, 1.0] (2 invocations") and "0.25" not in text


def test_killed_run_resumes_with_the_same_rows(task_dir, fake_gguf, tmp_path):
    clean = run_grid(_config(task_dir, fake_gguf, tmp_path / "a"), progress=False, log=lambda m: None,
                     pool=FakePool(FakeBackend()))
    cfg = _config(task_dir, fake_gguf, tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        run_grid(cfg, progress=False, log=lambda m: None, pool=FakePool(FakeBackend(fail_after=10)))
    partial = [json.loads(l) for l in (tmp_path / "b" / "results").glob("*/rows.jsonl").__next__().read_text().splitlines()]
    assert 0 < len({(r["strategy"], r["seed"]) for r in partial}) < 6  # some cells done, not all
    fake = FakeBackend()
    resumed = run_grid(cfg, progress=False, log=lambda m: None, pool=FakePool(fake))
    assert resumed.cells_reused == 2  # 10 calls finished two cells of four items
    # only the unfinished cells were redone; the killed chunk (the third cell's calls) is the most that is lost
    assert fake.calls == 24 - 8
    assert _values(resumed.rows) == _values(clean.rows)


def test_two_models_never_share_cache_entries(task_dir, tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"GGUF weights A")  # GGUF magic: they resolve as model files (a FakePool answers)
    b.write_bytes(b"GGUF weights B")
    cache_dir = str(tmp_path / "cache")
    fa, fb = FakeBackend(model_id="sha-a"), FakeBackend(model_id="sha-b")
    run_grid(_config(task_dir, a, tmp_path, cache_dir=cache_dir, strategies=("zero_shot",), seeds=(0,)), progress=False,
             log=lambda m: None, pool=FakePool(fa))
    run_grid(_config(task_dir, b, tmp_path, cache_dir=cache_dir, strategies=("zero_shot",), seeds=(0,)), progress=False,
             log=lambda m: None, pool=FakePool(fb))
    assert fa.calls == fb.calls == 4  # model B got no hit from model A's identical prompts
    assert len(GenerationCache(tmp_path / "cache" / "generations.sqlite")) == 8


def test_cache_key_covers_every_input():
    base = dict(model="m", backend="llama", strategy="s#1", prompt="p", params={"t": 0}, seed=0, sample=0)
    keys = {GenerationCache.key(**base)}
    for k, v in [("model", "m2"), ("strategy", "s#2"), ("prompt", "p2"), ("params", {"t": 1}), ("seed", 1), ("sample", 1)]:
        keys.add(GenerationCache.key(**{**base, k: v}))
    assert len(keys) == 7


def test_generation_failure_is_counted(task_dir, fake_gguf, tmp_path):
    from bench.errors import BenchError

    class TooLong(FakeBackend):
        def generate(self, prompt, params, seed):
            if "2 plus 3" in prompt:
                raise BenchError("prompt of 9999 tokens does not fit the 4096-token context")
            return super().generate(prompt, params, seed)

    res = run_grid(_config(task_dir, fake_gguf, tmp_path, strategies=("zero_shot",), seeds=(0,)), progress=False,
                   log=lambda m: None, pool=FakePool(TooLong()))
    f1 = next(r for r in res.rows if r["metric"] == "f1")
    assert f1["n"] == 3 and f1["n_failed"] == 1


def test_broken_cell_is_recorded_and_others_finish(task_dir, fake_gguf, tmp_path):
    class Broken(FakeBackend):
        def generate(self, prompt, params, seed):
            if "Answer:" in prompt:  # only the cot arm asks for an answer line
                raise RuntimeError("backend crashed")
            return super().generate(prompt, params, seed)

    res = run_grid(_config(task_dir, fake_gguf, tmp_path, seeds=(0,)), progress=False, log=lambda m: None,
                   pool=FakePool(Broken()))
    assert res.cells_failed == ["tiny__cot__fake-model__s0"]
    assert (res.run_dir / "cells" / "tiny__cot__fake-model__s0" / "error.txt").read_text().count("backend crashed")
    assert {r["strategy"] for r in res.rows} == {"zero_shot", "few_shot"}


def test_hardware_names_the_gpu_without_importing_torch(tmp_path, monkeypatch):
    """The manifest's GPU comes from nvidia-smi when the run has not imported torch (importing it only to
    ask cost every llama.cpp run 1.3 s), and there is no GPU entry when there is no nvidia-smi."""
    import subprocess
    import sys

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200'\necho 'NVIDIA H200'\n")
    smi.chmod(0o755)
    code = ("import sys, bench.results as r; h = r.hardware(); "
            "print(h.get('cuda'), 'torch' in sys.modules)")
    for path, want in ((str(tmp_path), "NVIDIA H200 False"), ("/nonexistent", "None False")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PATH": path, "HOME": str(tmp_path)}).stdout.strip()
        assert out == want
