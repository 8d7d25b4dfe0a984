#!/usr/bin/env python
"""Crashes lose nothing: SIGKILL a real small grid at random moments, resume, compare with an unbroken run.

Why: a run is hours of model work on a real task; a power cut, an OOM kill or a Ctrl-C twice must cost
only the cell in flight. This script runs a small grid (demo task: zero_shot, rag, lora with a short
training, so the kills land during generation, index build, training, export and report writing) once
without interruption, then for each trial starts the same grid in a fresh results folder, kills the whole
process group with SIGKILL after a random delay, checks that no file in the results folder is partial
(every JSON file parses, every JSONL line parses), resumes the run to its end and compares its outputs
with the unbroken run's: rows.jsonl without the timing rows and fields, every cell's scores.jsonl, and
every generation's output text. It prints one line per trial and the count of identical endings.

The model conversions (GGUF -> transformers, the serving export) are made once and copied into every
trial's cache, so each trial redoes the grid's own work (generation, index, training) and not minutes
of one-off conversion.

    python benchmarks/kill_resume.py                 # 20 kills (about 20-30 minutes on 2 cores)
    python benchmarks/kill_resume.py --kills 3 --strategies zero_shot,rag     # a short version
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.pop("BENCH_MODELS_DIR", None)  # warm caches are set up by copying <out>/.cache/models

TIMING_KEYS = {"seconds", "cached", "wall_seconds", "latency_p50_s", "latency_p95_s"}


def bench_cmd(out: Path, config: Path, strategies: str, limit: int) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--task", "demo", "--strategy", strategies, "--limit", str(limit),
            "--probes", "none", "--run-id", "kr", "--out", str(out), "--config", str(config), "--no-progress"]


def write_config(path: Path) -> Path:
    """The grid's run config: a short lora (4 steps) so a trial takes a minute, not ten."""
    path.write_text("threads: 2\nparams:\n  lora: {max_steps: 4, epochs: 1, batch_size: 4, eval_every: 2}\n",
                    encoding="utf-8")
    return path


def run(cmd: list[str], env: dict, log: Path) -> int:
    with log.open("ab") as f:
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode


def partial_files(folder: Path) -> list[str]:
    """Files of the results folder that do not parse (a torn write): JSON, JSONL."""
    bad = []
    for p in folder.rglob("*"):
        if not p.is_file() or ".cache" in p.parts or p.name.endswith(".lock") or p.name == "run.log":
            continue
        try:
            if p.suffix == ".json":
                json.loads(p.read_text(encoding="utf-8"))
            elif p.suffix == ".jsonl":
                for line in p.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            bad.append(f"{p.relative_to(folder)}: {e}")
    return bad


def ending(run_dir: Path) -> dict:
    """What must be identical: quality rows without timing, every cell's scores and generated texts."""
    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = sorted(json.dumps({k: v for k, v in r.items() if k not in TIMING_KEYS}, sort_keys=True)
                  for r in rows if r.get("kind") != "cost")
    cells = {}
    for c in sorted((run_dir / "cells").iterdir()):
        scores = (c / "scores.jsonl").read_text(encoding="utf-8") if (c / "scores.jsonl").is_file() else ""
        gens = [json.loads(line) for line in (c / "generations.jsonl").read_text(encoding="utf-8").splitlines()] \
            if (c / "generations.jsonl").is_file() else []
        cells[c.name] = {"scores": scores, "outputs": [(g["example_id"], g["sample"], g["output"]) for g in gens]}
    rec = json.loads((run_dir / "recommendation.json").read_text(encoding="utf-8"))
    # the verdict, not the leader: among arms with equal scores the leader is the cheaper by measured seconds,
    # which differ from run to run (timing is not a result)
    return {"rows": rows, "cells": cells, "recommendation": {t: (d.get("strategy"), d.get("decided"))
                                                             for t, d in rec.items()}}


def differences(got: dict, want: dict) -> str:
    """Which part of an ending differs, for the report line."""
    if got["rows"] != want["rows"]:
        extra = sorted(set(got["rows"]) - set(want["rows"]))[:1]
        return f"rows differ (e.g. {extra[0][:160] if extra else 'missing rows'})"
    for cell in sorted(set(got["cells"]) | set(want["cells"])):
        if got["cells"].get(cell) != want["cells"].get(cell):
            return f"cell {cell} differs"
    return f"recommendation differs: {got['recommendation']} vs {want['recommendation']}"


def seed_cache(models: Path, out: Path) -> None:
    """Copy the one-off model conversions into a fresh results folder's cache."""
    if models.is_dir():
        shutil.copytree(models, out / ".cache" / "models")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="trials: one SIGKILL and one resume each")
    ap.add_argument("--strategies", default="zero_shot,rag,lora")
    ap.add_argument("--limit", type=int, default=6, help="test items of the demo task")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temp dir, removed)")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    from bench.cpu import cpu_info

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    config = write_config(work / "run.yaml")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    log = work / "bench.log"
    print(f"CPU: {cpu_info().model}; load average {os.getloadavg()[0]:.2f}; grid demo x {args.strategies}, "
          f"limit {args.limit}; work {work}")

    cold = work / "cold"
    if run(bench_cmd(cold, config, args.strategies, args.limit), env, log) != 0:
        sys.exit(f"the unbroken run failed; see {log}")
    models = cold / ".cache" / "models"
    ref_out = work / "reference"
    seed_cache(models, ref_out)
    t0 = time.perf_counter()
    if run(bench_cmd(ref_out, config, args.strategies, args.limit), env, log) != 0:
        sys.exit(f"the reference run failed; see {log}")
    duration = time.perf_counter() - t0
    reference = ending(ref_out / "kr")
    if ending(cold / "kr") != reference:
        print("note: the cold and the warm unbroken runs differ (nondeterminism outside crashes)")
    print(f"unbroken run (conversions cached): {duration:.1f} s; kills drawn uniformly in [1 s, {duration:.0f} s]")

    rnd = random.Random(args.seed)
    identical, torn = 0, 0
    for k in range(1, args.kills + 1):
        out = work / f"trial{k:02d}"
        seed_cache(models, out)
        moment = rnd.uniform(1.0, duration)
        with log.open("ab") as f:
            proc = subprocess.Popen(bench_cmd(out, config, args.strategies, args.limit), stdout=f,
                                    stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        try:
            proc.wait(timeout=moment)
            finished_before = True
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            finished_before = False
        run_dir = out / "kr"
        done = sorted(c.name.split("__")[1] for c in (run_dir / "cells").glob("*") if (c / "rows.jsonl").is_file()) \
            if (run_dir / "cells").is_dir() else []
        bad = partial_files(run_dir) if run_dir.is_dir() else []
        torn += bool(bad)
        rc = run(bench_cmd(out, config, args.strategies, args.limit), env, log)
        got = ending(run_dir) if rc == 0 else None
        same = got == reference
        identical += same
        print(f"kill {k:2d} at {moment:5.1f} s ({'finished first' if finished_before else 'killed'}; cells done: "
              f"{','.join(done) or '-'}): {'no partial file' if not bad else 'PARTIAL ' + '; '.join(bad[:3])}; "
              f"resume exit {rc}, ending "
              f"{'identical' if same else 'DIFFERENT: ' + (differences(got, reference) if got else 'no ending')}")
        shutil.rmtree(out, ignore_errors=True)
    print(f"identical endings: {identical}/{args.kills}; kills that left a partial file: {torn}; "
          f"load average {os.getloadavg()[0]:.2f}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if identical == args.kills and not torn else 1)


if __name__ == "__main__":
    main()
