"""The terminal is for the user: library logs, warnings and C-level stderr of a run land in its run.log."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

NOISY_RUN = """
import logging, os, sys, warnings
import bench.run.grid as grid
from tests.fakes import FakeBackend, FakePool

class Noisy(FakeBackend):
    def generate(self, prompt, params, seed):
        warnings.warn("a library's deprecation warning")
        logging.getLogger("transformers").warning("a library's log line")
        os.write(2, b"a C library's stderr line\\n")
        return super().generate(prompt, params, seed)

grid.ModelPool = lambda config: FakePool(Noisy())
from bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_library_noise_goes_to_the_run_log_not_the_terminal(tmp_path, task_dir, fake_gguf):
    res = subprocess.run([sys.executable, "-c", NOISY_RUN, "run", "--task", str(task_dir), "--strategy", "zero_shot",
                          "--model", str(fake_gguf), "--out", str(tmp_path / "r"), "--run-id", "x", "--probes", "none"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    for noise in ("deprecation warning", "a library's log line", "C library's stderr line"):
        assert noise not in res.stderr and noise not in res.stdout
    log = (tmp_path / "r" / "x" / "run.log").read_text()
    for noise in ("deprecation warning", "a library's log line", "C library's stderr line"):
        assert noise in log
    assert "report:" in res.stdout
