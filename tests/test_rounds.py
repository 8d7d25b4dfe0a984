"""--until-decided: rounds on a seeded random order of the items, a sequential verdict after each, growth only
where undecided, cached items never re-run (issue 10 point 3)."""

from __future__ import annotations

import json
import re

from bench.config import RunConfig
from bench.run.grid import run_grid
from bench.seeding import derive_seed
from tests.conftest import write_task
from tests.fakes import FakeBackend, FakePool

N = 200


def answer(prompt: str) -> str:
    """few_shot (several instruction blocks) is right on ~75 % of items, zero_shot on ~45 %, per item fixed."""
    i = int(re.findall(r"What is (\d+) plus", prompt)[-1])
    few = prompt.count("### Instruction") > 1
    right = derive_seed(0, "item", i, few) % 100 < (75 if few else 45)  # independent per arm
    return str(2 * i) if right else "no idea"


def _config(tmp_path, **kw):
    task = write_task(tmp_path / "t", train=[{"id": f"tr{i}", "instruction": f"What is {1000 + i} plus {1000 + i}?",
                                              "input": "", "output": str(2 * (1000 + i))} for i in range(5)],
                      test=[{"id": f"q{i}", "instruction": f"What is {i} plus {i}?", "input": "", "output": str(2 * i)}
                            for i in range(N)], meta={"metrics": ["exact_match"], "main_metric": "exact_match"})
    base = dict(tasks=(str(task),), strategies=("zero_shot", "few_shot"), model=str(tmp_path / "m.gguf"),
                out=str(tmp_path / "results"), run_id="r", probes="none", until_decided=True, limit=10)
    (tmp_path / "m.gguf").write_bytes(b"GGUF fake")  # resolves as a GGUF; a FakePool answers
    return RunConfig().replace(**{**base, **kw})


def test_rounds_grow_until_decided_on_a_random_order(tmp_path):
    fake = FakeBackend(answer=answer)
    res = run_grid(_config(tmp_path), progress=False, log=lambda m: None, pool=FakePool(fake))
    rounds = res.rounds
    assert len(rounds) >= 2 and rounds[0]["items"]["t"] == 10
    sizes = [r["items"]["t"] for r in rounds]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)  # every round adds items
    assert rounds[-1]["decided"]["t"] and not any(r["decided"]["t"] for r in rounds[:-1])
    assert rounds[-1]["strategy"]["t"] == "few_shot"
    rec = json.loads((res.run_dir / "recommendation.json").read_text()) if (res.run_dir / "recommendation.json").exists() else None
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    assert manifest["rounds"] == rounds
    # items were evaluated in a seeded random order, not the file order
    scores = [json.loads(x) for x in (res.run_dir / "cells" / "t__zero_shot__m__s0" / "scores.jsonl").read_text().splitlines()]
    ids = [s["example_id"] for s in scores]
    assert len(ids) == sizes[-1] and ids != [f"q{i}" for i in range(len(ids))]
    # every item of every round was generated once: cached answers are never re-run
    assert fake.calls == 2 * sizes[-1]
    assert rec is None  # the report is the caller's job (bench run writes it)


def test_a_later_larger_run_extends_an_earlier_one(tmp_path):
    fake = FakeBackend(answer=answer)
    small = run_grid(_config(tmp_path, max_items=20), progress=False, log=lambda m: None, pool=FakePool(fake))
    assert small.rounds[-1]["items"]["t"] == 20 and not small.rounds[-1]["decided"]["t"]
    calls = fake.calls
    assert calls == 2 * 20
    big = run_grid(_config(tmp_path, max_items=N), progress=False, log=lambda m: None, pool=FakePool(fake))
    final = big.rounds[-1]["items"]["t"]
    assert big.rounds[-1]["decided"]["t"] and fake.calls - calls == 2 * (final - 20)  # only the new items


def test_a_failed_arm_does_not_stop_the_rounds(tmp_path):
    """cot fails on every item; the rounds go on deciding between the arms that work (a failed arm is counted
    as failed, not as an arm not computed yet, which would make every round 'no recommendation')."""

    class CotBroken(FakeBackend):
        def generate(self, prompt, params, seed):
            if "step by step" in prompt:
                raise RuntimeError("out of memory")
            return super().generate(prompt, params, seed)

    res = run_grid(_config(tmp_path, strategies=("zero_shot", "few_shot", "cot")), progress=False,
                   log=lambda m: None, pool=FakePool(CotBroken(answer=answer)))
    assert res.cells_failed == ["t__cot__m__s0"]
    assert len(res.rounds) >= 2 and res.rounds[-1]["strategy"]["t"] == "few_shot"
