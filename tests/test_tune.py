"""--tune: each arm's settings chosen on a validation split of train (never test), recorded in rows and costs."""

from __future__ import annotations

import json
import re

from bench.config import RunConfig
from bench.run.grid import run_grid
from bench.run.tune import validation_task
from bench.taskio import load_folder
from tests.conftest import write_task
from tests.fakes import FakeBackend, FakePool


def _task(tmp_path):
    train = [{"id": f"tr{i}", "instruction": f"What is {i} plus {i}?", "input": "", "output": str(2 * i)} for i in range(40)]
    test = [{"id": f"te{i}", "instruction": f"What is {100 + i} plus {100 + i}?", "input": "", "output": str(2 * (100 + i))}
            for i in range(6)]
    return write_task(tmp_path / "t", train=train, test=test, meta={"metrics": ["exact_match"], "main_metric": "exact_match"})


def answer(prompt: str) -> str:
    """Right only when the prompt shows five exemplars (k=5): tuning must find that."""
    i = int(re.findall(r"What is (\d+) plus", prompt)[-1])
    return str(2 * i) if prompt.count("### Instruction") == 6 else "?"


def test_tune_picks_the_setting_that_wins_on_validation_and_never_sees_test(tmp_path):
    fake = FakeBackend(answer=answer)
    cfg = RunConfig().replace(tasks=(str(_task(tmp_path)),), strategies=("few_shot",), model=str(tmp_path / "m.gguf"),
                              out=str(tmp_path / "r"), run_id="x", probes="none", tune=True, seeds=(0,))
    (tmp_path / "m.gguf").write_bytes(b"GGUF fake")  # resolves as a GGUF; a FakePool answers
    res = run_grid(cfg, progress=False, log=lambda m: None, pool=FakePool(fake))
    tuning = fake.prompts[: len(fake.prompts) - 6]  # the last six prompts are the test items
    assert len(tuning) >= 8 and all(int(re.findall(r"What is (\d+) plus", p)[-1]) < 40 for p in tuning)  # train only
    rows = [r for r in res.rows if r["metric"] == "exact_match"]
    assert rows[0]["settings"] == {"few_shot": {"k": 5}} and rows[0]["value"] == 1.0
    cost = json.loads((res.run_dir / "cells" / "t__few_shot__m__s0" / "cost.json").read_text())
    assert cost["tune"]["chosen"] == {"few_shot": {"k": 5}} and cost["tune"]["validation_items"] == 8
    again = FakeBackend(answer=answer)
    res2 = run_grid(cfg, progress=False, log=lambda m: None, pool=FakePool(again))
    assert again.calls == 0 and res2.cells_reused == 1  # the choice and every answer are reused


def test_validation_split_comes_from_train_only(tmp_path):
    task = load_folder(_task(tmp_path))
    val = validation_task(task, seed=0)
    assert {e.id for e in val.test} <= {e.id for e in task.train} and len(val.test) == 8
    assert not {e.id for e in val.test} & {e.id for e in val.train}
    assert validation_task(task, seed=0).test == val.test  # seeded
