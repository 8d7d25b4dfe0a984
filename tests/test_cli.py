"""The command line: bad input gets one line and exit code 2, never a traceback; a real run resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_task


def bench(*args, timeout=600, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=kw.get("cwd", ROOT), env=env)


def _one_line_error(res, *fragments):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    err = res.stderr.strip().splitlines()
    assert err and err[-1].startswith("bench: error:")
    for f in fragments:
        assert f in err[-1], err[-1]


def test_unknown_strategy_suggests(tmp_path):
    _one_line_error(bench("run", "--strategy", "few_shoot", "--out", str(tmp_path)), "did you mean few_shot")


def test_unknown_model_and_task(tmp_path):
    _one_line_error(bench("run", "--model", "smolm2", "--out", str(tmp_path)), "--model smolm2", "smollm2-135m")
    _one_line_error(bench("run", "--task", "./no/such/folder", "--out", str(tmp_path)), "no such folder")


def test_malformed_task_names_file_and_line(tmp_path):
    folder = write_task(tmp_path / "bad")
    (folder / "train.jsonl").write_text('{"id": "a", "instruction": "q", "input": "", "output": "x"}\nnot json\n')
    res = bench("run", "--task", str(folder), "--out", str(tmp_path / "r"))
    _one_line_error(res, "train.jsonl:2: invalid JSON")
    assert not (tmp_path / "r").exists()  # a bad task never produces a partial run
    v = bench("validate", str(folder))
    assert v.returncode == 2 and "train.jsonl:2: invalid JSON" in v.stdout


def test_bad_config_file(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("strategy: [zero_shot]\n")
    _one_line_error(bench("run", "--config", str(cfg)), "unknown key 'strategy'; did you mean strategies")
    _one_line_error(bench("run", "--config", str(tmp_path / "missing.yaml")), "no such file")
    _one_line_error(bench("report", str(tmp_path)), "not a run folder")


def test_ls_lists_registries():
    res = bench("ls", "strategies")
    assert res.returncode == 0 and "self_consistency" in res.stdout
    res = bench("ls", "models")
    assert "smollm2-135m" in res.stdout and "gemma3-270m" in res.stdout and "Hugging Face id" in res.stdout


def _quality(run_dir: Path):
    rows = [json.loads(l) for l in (run_dir / "rows.jsonl").read_text().splitlines()]
    return sorted((r["strategy"], r["metric"], r["value"]) for r in rows if r["kind"] == "quality")


@pytest.mark.slow
def test_killed_real_run_resumes_to_the_same_rows(tmp_path):
    args = ["run", "--task", "demo", "--strategy", "zero_shot,few_shot,cot", "--limit", "3", "--max-new-tokens", "8",
            "--threads", "2", "--no-progress", "--run-id", "r"]
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args, "--out", str(out_a)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out_a / "r" / "cells").glob("*/rows.jsonl")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list((out_a / "r" / "cells").glob("*/rows.jsonl"))
    assert 1 <= len(done) < 3, "kill should land after the first cell and before the last"
    resumed = bench(*args, "--out", str(out_a))
    assert resumed.returncode == 0, resumed.stderr
    assert "reused" in resumed.stdout and "report:" in resumed.stdout.strip().splitlines()[-1]
    clean = bench(*args, "--out", str(out_b))
    assert clean.returncode == 0, clean.stderr
    assert _quality(out_a / "r") == _quality(out_b / "r")
    again = bench(*args, "--out", str(out_a))
    assert "model calls: 0" in again.stdout and "(3 reused" in again.stdout
