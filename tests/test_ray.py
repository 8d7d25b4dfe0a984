"""--executor ray on a local Ray cluster: the same rows as the local executor, also when a worker is killed."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from bench.config import RunConfig
from bench.run.grid import run_grid

ray = pytest.importorskip("ray")  # an optional extra ([ray]); CI installs it


def _config(tmp_path, name, executor):
    return RunConfig().replace(tasks=("demo",), strategies=("zero_shot", "few_shot"), limit=3, seeds=(0,),
                               probes="none", out=str(tmp_path / name), cache_dir=str(tmp_path / f"cache-{name}"),
                               run_id="r", executor=executor, threads=1,
                               generation={"max_new_tokens": 8, "temperature": 0.0})


def _quality(rows):
    return sorted((r["task"], r["strategy"], r["seed"], r["metric"], r["value"], r["n"]) for r in rows
                  if r["kind"] == "quality")


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    return _quality(run_grid(_config(tmp, "local", "local"), progress=False, log=lambda m: None).rows)


@pytest.mark.slow
def test_ray_gives_the_same_rows_as_local(tmp_path, local_rows):
    try:
        res = run_grid(_config(tmp_path, "ray", "ray"), progress=False, log=lambda m: None)
    finally:
        ray.shutdown()
    assert not res.cells_failed and _quality(res.rows) == local_rows
    # the workers' answers reached the driver's cache: a local rerun on it makes no model call
    again = run_grid(_config(tmp_path, "ray", "local").replace(run_id="again"), progress=False, log=lambda m: None)
    assert again.model_calls == 0 and _quality(again.rows) == local_rows


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_rows_are_the_same(tmp_path, local_rows):
    import psutil

    killed = []

    def killer():
        deadline = time.time() + 600
        while time.time() < deadline and not killed:
            for p in psutil.process_iter(["pid", "cmdline"]):
                if any("_worker_cell" in part for part in (p.info["cmdline"] or [])):
                    os.kill(p.info["pid"], signal.SIGKILL)
                    killed.append(p.info["pid"])
                    return
            time.sleep(0.2)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        res = run_grid(_config(tmp_path, "ray", "ray"), progress=False, log=lambda m: None)
    finally:
        ray.shutdown()
    t.join(timeout=1)
    assert killed, "no Ray worker was seen running a cell"
    assert not res.cells_failed and _quality(res.rows) == local_rows
