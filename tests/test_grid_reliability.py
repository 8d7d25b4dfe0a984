"""The grid never serves a stale cell, refuses a second writer, rejects impossible arms before model work,
keeps going when one cell fails, and turns a full or read-only disk into one line (issue 13)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import RunConfig
from bench.errors import BenchError
from bench.run.grid import LOCK, lock_run, run_grid
from tests.conftest import ROOT, write_task
from tests.fakes import FakeBackend, FakePool


def _config(task_dir, model, tmp_path, **kw):
    base = dict(tasks=(str(task_dir),), strategies=("zero_shot", "few_shot"), model=str(model),
                out=str(tmp_path / "results"), seeds=(0,), run_id="x", probes="none")
    base.update(kw)
    return RunConfig().replace(**base)


def _run(cfg, fake=None):
    fake = fake or FakeBackend()
    return run_grid(cfg, progress=False, log=lambda m: None, pool=FakePool(fake)), fake


def _n(rows, strategy="zero_shot"):
    return next(r["n"] for r in rows if r["strategy"] == strategy and r["metric"] == "f1")


def test_a_reused_run_id_with_another_limit_recomputes(tmp_path, fake_gguf):
    task = write_task(tmp_path / "t", test=[{"id": f"q{i}", "instruction": f"What is {i}+{i}?", "input": "",
                                             "output": str(2 * i)} for i in range(8)])
    first, _ = _run(_config(task, fake_gguf, tmp_path, limit=3))
    assert _n(first.rows) == 3
    second, fake = _run(_config(task, fake_gguf, tmp_path, limit=5))
    assert _n(second.rows) == 5 and second.cells_reused == 0
    assert fake.calls == 2 + 2  # only the 2 new items of each arm reach the model: the rest is cached
    third, fake = _run(_config(task, fake_gguf, tmp_path, limit=5))
    assert third.cells_reused == 2 and fake.calls == 0


def test_editing_a_record_recomputes_exactly_the_cells_that_use_it(tmp_path, fake_gguf):
    task = write_task(tmp_path / "t", test=[{"id": f"q{i}", "instruction": f"What is {i}+{i}?", "input": "",
                                             "output": str(2 * i)} for i in range(6)])
    cfg = _config(task, fake_gguf, tmp_path, limit=4)
    _run(cfg)
    logs: list[str] = []

    def rerun():
        res = run_grid(cfg, progress=False, log=logs.append, pool=FakePool(FakeBackend()))
        return {c for c in ("zero_shot", "few_shot") if any(f"t__{c}__" in m and "recomputing" in m for m in logs)}, res

    def edit(name, i, field, value):
        path = task / name
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows[i][field] = value
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    edit("train.jsonl", 0, "output", "zero")  # only few_shot reads the train split
    changed, res = rerun()
    assert changed == {"few_shot"} and res.cells_reused == 1
    logs.clear()
    edit("test.jsonl", 5, "output", "eleven")  # beyond the first 4 items: no cell scored it
    changed, res = rerun()
    assert changed == set() and res.cells_reused == 2
    logs.clear()
    edit("test.jsonl", 1, "output", "three")  # scored by every cell
    changed, res = rerun()
    assert changed == {"zero_shot", "few_shot"} and res.cells_reused == 0
    f1 = next(r for r in res.rows if r["strategy"] == "zero_shot" and r["metric"] == "exact_match")
    assert f1["n"] == 4


def test_a_second_run_on_the_same_folder_refuses(tmp_path, task_dir, fake_gguf):
    cfg = _config(task_dir, fake_gguf, tmp_path)
    held = lock_run(Path(cfg.out) / "x")
    try:
        with pytest.raises(BenchError, match="another bench run is writing"):
            _run(cfg)
    finally:
        held.release()
    res, _ = _run(cfg)  # free again
    assert not res.cells_failed and (res.run_dir / LOCK).exists()


def test_incompatible_arms_are_rejected_before_any_model_work(tmp_path, task_dir, fake_gguf):
    pool = FakePool(FakeBackend())
    cfg = _config(task_dir, fake_gguf, tmp_path, strategies=("zero_shot", "rag_oracle", "cpt_lora"))
    with pytest.raises(BenchError) as e:
        run_grid(cfg, progress=False, log=lambda m: None, pool=pool)
    lines = e.value.lines
    assert len(lines) == 2 and any("rag_oracle" in x and "doc_ids" in x for x in lines)
    assert any("cpt_lora" in x and "docs.jsonl" in x for x in lines)
    assert pool.loads == 0 and not (Path(cfg.out) / "x" / "cells").exists()


def test_a_failing_cell_is_recorded_and_the_rest_finish(tmp_path, task_dir, fake_gguf):
    class Broken(FakeBackend):
        def generate(self, prompt, params, seed):
            if "plus 1?" in prompt and "### Response" in prompt and prompt.count("### Instruction") > 1:
                raise RuntimeError("out of memory")  # few_shot prompts only
            return super().generate(prompt, params, seed)

    res, _ = _run(_config(task_dir, fake_gguf, tmp_path), Broken())
    assert res.cells_failed == ["tiny__few_shot__fake-model__s0"]
    assert "out of memory" in res.errors["tiny__few_shot__fake-model__s0"]
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    assert "out of memory" in manifest["cells"]["failed"]["tiny__few_shot__fake-model__s0"]
    assert {r["strategy"] for r in res.rows} == {"zero_shot"}


RUN_WITH_FAKE = """
import sys
import bench.run.grid as grid
from tests.fakes import FakeBackend, FakePool
grid.ModelPool = lambda config: FakePool(FakeBackend())
from bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(args, tmp_path, limit_bytes=None):
    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-c", RUN_WITH_FAKE, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, preexec_fn=limit, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_a_read_only_results_folder_is_one_line(tmp_path, task_dir, fake_gguf):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    if os.geteuid() == 0:  # root ignores file modes: /sys refuses new folders to everyone
        out = Path("/sys/bench-results")
    try:
        res = _cli(["run", "--task", str(task_dir), "--strategy", "zero_shot", "--model", str(fake_gguf), "--out",
                    str(out), "--probes", "none", "--no-progress"], tmp_path)
    finally:
        (tmp_path / "ro").chmod(0o700)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().startswith("bench: error: cannot write") and len(res.stderr.strip().splitlines()) == 1


def test_a_file_size_limit_is_one_line_and_the_next_run_resumes(tmp_path, task_dir, fake_gguf):
    args = ["run", "--task", str(task_dir), "--strategy", "zero_shot,few_shot,cot", "--model", str(fake_gguf),
            "--out", str(tmp_path / "r"), "--run-id", "x", "--probes", "none", "--no-progress"]
    small = _cli(args, tmp_path, limit_bytes=6000)
    assert small.returncode == 2 and "Traceback" not in small.stderr, small.stderr
    assert small.stderr.startswith("bench: error: ") and len(small.stderr.strip().splitlines()) == 1
    full = _cli(args, tmp_path)
    assert full.returncode == 0, full.stderr
    rows = [json.loads(x) for x in (tmp_path / "r" / "x" / "rows.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"zero_shot", "few_shot", "cot"}
