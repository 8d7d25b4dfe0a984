"""The command line: bad input gets one line and exit code 2, never a traceback; a real run resumes."""

import os
import subprocess
import sys

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


@pytest.mark.parametrize("spec", ["rag+", "+rag", "rag++cot"])
def test_a_stacked_strategy_with_an_empty_part_is_refused(tmp_path, spec):
    """`rag+` once ran as plain rag: a typo must not silently become another arm."""
    _one_line_error(bench("run", "--strategy", spec, "--out", str(tmp_path)), f"--strategy {spec}", "rag+cot")


def test_an_out_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")  # a folder under a plain file cannot be made, even by root
    _one_line_error(bench("run", "--strategy", "zero_shot", "--out", str(tmp_path / "file" / "r")),
                    "cannot write", "choose another --out")


def test_a_model_that_cannot_load_is_refused_before_any_cell(tmp_path):
    """Both used to fail in every cell (exit 1 and a report of failures) instead of one line up front."""
    bad = tmp_path / "bad.gguf"
    bad.write_text("not a gguf")
    _one_line_error(bench("run", "--model", str(bad), "--out", str(tmp_path / "r")), "not a GGUF file")
    _one_line_error(bench("run", "--model", "no-such-org/no-such-model", "--out", str(tmp_path / "r")),
                    "not in the local Hugging Face cache", "HF_HUB_OFFLINE=1")
    assert not (tmp_path / "r").exists()


def test_ls_lists_registries():
    res = bench("ls", "strategies")
    assert res.returncode == 0 and "self_consistency" in res.stdout
    res = bench("ls", "models")
    assert "smollm2-135m" in res.stdout and "gemma3-270m" in res.stdout and "Hugging Face id" in res.stdout


@pytest.mark.slow
def test_killed_real_runs_resume_to_the_same_endings_with_no_partial_file(tmp_path):
    """The short version of benchmarks/kill_resume.py: SIGKILL at two random moments, resume, compare."""
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kill_resume.py"), "--kills", "2",
                          "--strategies", "zero_shot,few_shot", "--limit", "3", "--work", str(tmp_path)],
                         cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    assert "identical endings: 2/2; kills that left a partial file: 0" in res.stdout
    assert res.stdout.count("ending identical") == 2
