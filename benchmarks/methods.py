"""The seeds' remaining fine-tuning methods side by side on a task whose output format only training teaches.

Runs `bench run` with `dpo`, `spin`, `gan_prompt`, `prompt_tuning` and `lora` (and `zero_shot` as the
floor) on the `codes` task (bench.synth.codes: each product record's answer is an arbitrary two-letter code
of its kind plus its lot number, "QV-47", so the format and the table must be learned from the training
pairs), then prints, per arm, the main metric with its interval, the failures, training time, trainable
parameters and the method's own figures (SPIN's quality per iteration, gan_prompt's discriminator
accuracy and why it stopped). gan_prompt and prompt_tuning use the same number of soft tokens, so the
comparison shows what conditioning the prompt on the input (and the adversarial loss) adds to a static
soft prompt. The figures go to docs/finetuning.md; take them on an idle machine.

    python benchmarks/methods.py [--kinds 8] [--train-per-kind 6] [--test-per-kind 5] [--seeds 0]
                                 [--epochs 3] [--virtual-tokens 16] [--out DIR] [--cache DIR] [--threads 2]

A second call with the same arguments and --out reuses every finished cell (bench's own resume).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from bench.cli import main as bench_main  # noqa: E402
from bench.cpu import cpu_info  # noqa: E402
from bench.results import CELLS, COST, cell_id, load_rows, read_json  # noqa: E402
from bench.synth.codes import CodesConfig, generate  # noqa: E402

ARMS = ("zero_shot", "prompt_tuning", "gan_prompt", "lora", "dpo", "spin")


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_config(args: argparse.Namespace, task: Path, out: Path) -> dict:
    """One config for every arm: the same epochs, validation and soft-token count where they apply."""
    shared = {"max_steps": 0, "epochs": args.epochs}
    return {
        "tasks": [str(task)], "strategies": list(ARMS), "seeds": args.seeds, "out": str(out), "threads": args.threads,
        "cache_dir": str(args.cache) if args.cache else None, "probes": "none",
        "params": {
            "lora": shared, "dpo": shared, "spin": {"max_steps": 0, "epochs": min(args.epochs, 2.0)},
            "prompt_tuning": {**shared, "num_virtual_tokens": args.virtual_tokens},
            "gan_prompt": {**shared, "num_virtual_tokens": args.virtual_tokens},
        },
    }


def cell_cost(run_dir: Path, row: dict) -> dict:
    """cost.json of the cell a row belongs to ({} when missing)."""
    path = run_dir / CELLS / cell_id(row["task"], row["strategy"], row["model"], row["seed"]) / COST
    return read_json(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", type=int, default=8)
    ap.add_argument("--train-per-kind", type=int, default=6)
    ap.add_argument("--test-per-kind", type=int, default=5)
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--virtual-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=cpu_info().physical)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="bench-methods-"))
    task = out / "codes"
    cfg = CodesConfig(seed=0, kinds=args.kinds, train_per_kind=args.train_per_kind, test_per_kind=args.test_per_kind)
    if not (task / "task.yaml").is_file():
        generate(cfg, task, name="codes")
    config = out / "run.yaml"
    config.write_text(yaml.safe_dump(run_config(args, task, out / "results")), encoding="utf-8")
    print(f"# {cpu_info().summary()}; {args.threads} threads; {load()}")
    print(f"# codes task: {args.kinds} kinds, {args.kinds * args.train_per_kind} train, "
          f"{args.kinds * args.test_per_kind} test items; {args.epochs} epochs; seeds {args.seeds}")
    t0 = time.perf_counter()
    code = bench_main(["run", "--config", str(config), "--run-id", "methods", "--no-progress"])
    print(f"# bench run exit {code} after {time.perf_counter() - t0:.0f} s; {load()}")
    run_dir = out / "results" / "methods"
    _, rows = load_rows(run_dir)
    main_metric = next((r["metric"] for r in rows if r.get("main")), "exact_match")
    print(f"\n| arm | seed | {main_metric} [interval] | n (failed) | train s | trainable params | notes |")
    print("|---|---|---|---|---|---|---|")
    for arm in ARMS:
        for r in sorted((r for r in rows if r["strategy"] == arm and r["metric"] == main_metric
                         and not r.get("stratum")), key=lambda r: r["seed"]):
            train = cell_cost(run_dir, r).get("train", {})
            notes = []
            for it in train.get("iterations") or []:
                if len(train["iterations"]) > 1:
                    notes.append(f"it{it['iteration']}: val exact {it.get('val_exact_before')} -> "
                                 f"{it.get('val_exact_after')}, margin {it.get('reward_margin')}")
            if "disc_accuracy" in train:
                notes.append(f"disc. accuracy {train['disc_accuracy']} ({train.get('stop_reason')})")
            if "pairs" in train:
                notes.append(f"pairs {train['pairs'].get('pairs')} (identical {train['pairs'].get('identical')})")
            ci = f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r.get("ci_low") is not None else ""
            print(f"| {arm} | {r['seed']} | {r['value']:.3f} {ci} | {r['n']} ({r['n_failed']}) | "
                  f"{train.get('train_seconds', '')} | {train.get('trainable_params', '')} | {'; '.join(notes)} |")
    print(f"\n# results: {run_dir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
