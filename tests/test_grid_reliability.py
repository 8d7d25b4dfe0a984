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
from hypothesis import given, settings
from hypothesis import strategies as st

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


RUN_UNTIL_DISK_FULL = """
import errno, sys
import bench.run.grid as grid
from tests.fakes import FakeBackend, FakePool, default_answer
answered = []
def answer(prompt):
    if len(answered) >= 4:  # the disk fills up during the second cell
        raise RuntimeError("export failed") from OSError(errno.ENOSPC, "No space left on device")
    answered.append(prompt)
    return default_answer(prompt)
grid.ModelPool = lambda config: FakePool(FakeBackend(answer=answer))
from bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_stops_the_run_in_one_line_and_the_next_run_resumes(tmp_path, task_dir, fake_gguf):
    """A cell whose write fails for lack of space stops the run (later cells would fail alike) instead of
    being counted as one failed cell; the cell finished before it is kept and reused."""
    args = ["run", "--task", str(task_dir), "--strategy", "zero_shot,few_shot,cot", "--model", str(fake_gguf),
            "--out", str(tmp_path / "r"), "--run-id", "x", "--probes", "none", "--no-progress"]
    full = subprocess.run([sys.executable, "-c", RUN_UNTIL_DISK_FULL, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    errors = [line for line in full.stderr.splitlines() if line.startswith("bench: error:")]
    assert len(errors) == 1 and errors[0].startswith("bench: error: cannot write while computing tiny/"), errors
    assert "No space left on device" in errors[0] and "run the same command again" in errors[0]
    assert len(list((tmp_path / "r" / "x" / "cells").glob("*/rows.jsonl"))) == 1
    again = _cli(args, tmp_path)
    assert again.returncode == 0, again.stderr
    manifest = json.loads((tmp_path / "r" / "x" / "manifest.json").read_text())
    assert manifest["cells"]["reused"] == 1 and manifest["cells"]["total"] == 3 and not manifest["cells"]["failed"]


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


REFUSED_WRITES = """
import resource, signal, sqlite3, sys
import numpy as np, torch
from safetensors.torch import save_file
from bench.errors import disk_full
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))
folder = sys.argv[1]
def sqlite_write():
    db = sqlite3.connect(folder + "/g.sqlite")
    db.execute("create table t(x)")
    db.executemany("insert into t values (?)", [("x" * 1000,)] * 1000)
    db.commit()
for name, write in [("safetensors", lambda: save_file({"w": torch.zeros(100000)}, folder + "/w.safetensors")),
                    ("numpy", lambda: np.zeros(100000).tofile(open(folder + "/w.bin", "wb"))),
                    ("sqlite", sqlite_write)]:
    try:
        write()
        print(name, "wrote")
    except Exception as e:
        print(name, disk_full(e) is not None, type(e).__name__)
print("other", disk_full(RuntimeError("CUDA out of memory")) is not None)
"""


def test_refused_writes_of_the_real_writers_are_recognised(tmp_path):
    """safetensors (Rust), numpy's tofile (the GGUF writer) and sqlite each report a refused write their own
    way; `disk_full` recognises all three, and not an unrelated error."""
    res = subprocess.run([sys.executable, "-c", REFUSED_WRITES, str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = dict(line.split(" ", 1) for line in res.stdout.strip().splitlines())
    assert got == {"safetensors": "True SafetensorError", "numpy": "True OSError", "sqlite": "True OperationalError",
                   "other": "False"}, got


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=3))
def test_a_jsonl_record_is_one_line_for_every_reader(tmp_path_factory, texts):
    """Whatever text a record holds (U+0085, U+2028, form feeds... found by the fuzzer in an instruction
    that came back in generations.jsonl), bench reads back what it wrote and every line reader sees one line
    per record."""
    from bench.atomic import read_jsonl, write_jsonl

    path = tmp_path_factory.mktemp("jsonl") / "rows.jsonl"
    rows = [{"prompt": t, "n": i} for i, t in enumerate(texts)]
    write_jsonl(path, rows)
    assert read_jsonl(path) == rows
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(rows)


def test_answers_with_unicode_line_breaks_are_read_back_by_the_next_run_and_the_report(tmp_path, task_dir, fake_gguf):
    """The fuzzer's case end to end: a cell's generations.jsonl holding U+0085 and U+2028 is read back by the
    next run and by the report."""
    from bench.cli import main
    def odd(prompt: str) -> str:
        return "a\x85b\u2028c\u2029d\x0ce\x1cf"

    config = RunConfig(tasks=(str(task_dir),), strategies=("zero_shot",), model=str(fake_gguf), probes="none",
                       out=str(tmp_path / "r"), run_id="x")
    first = run_grid(config, progress=False, log=lambda m: None, pool=FakePool(FakeBackend(answer=odd)))
    again = run_grid(config, progress=False, log=lambda m: None, pool=FakePool(FakeBackend(answer=odd)))
    assert first.rows and again.rows == first.rows
    assert main(["report", str(tmp_path / "r" / "x")]) == 0
    gens = [json.loads(line) for line in
            next((tmp_path / "r" / "x" / "cells").glob("*/generations.jsonl")).read_text().split("\n") if line]
    assert gens and all(g["output"] == odd("") for g in gens)


def test_a_run_killed_before_its_first_new_cell_leaves_no_stale_rows(tmp_path, fake_gguf):
    """The second run's manifest (limit 5) is on disk from its start; rows.jsonl must not keep the first run's
    limit-3 rows of cells it has just found stale while the first new cell is still computing."""
    task = write_task(tmp_path / "t", test=[{"id": f"q{i}", "instruction": f"What is {i}+{i}?", "input": "",
                                             "output": str(2 * i)} for i in range(8)])
    _run(_config(task, fake_gguf, tmp_path, limit=3))
    rows_file = tmp_path / "results" / "x" / "rows.jsonl"
    assert {r["n"] for r in map(json.loads, rows_file.read_text().splitlines()) if r["metric"] == "f1"} == {3}
    with pytest.raises(KeyboardInterrupt):
        _run(_config(task, fake_gguf, tmp_path, limit=5), FakeBackend(fail_after=0))  # killed at its first new item
    rows = [json.loads(x) for x in rows_file.read_text().splitlines()]
    assert not any(r.get("n") == 3 for r in rows)
