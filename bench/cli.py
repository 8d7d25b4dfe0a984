"""The `bench` command line: run, report, ls, validate, estimate, import.

    bench run                                   # the default matrix on the built-in tasks
    bench run --task demo,./my_task --strategy zero_shot,rag+cot --model smollm2-135m --seeds 0,1
    bench run --until-decided --max-items 200 --budget 30m
    bench run --model openai/NAME --base-url http://127.0.0.1:8000/v1 --strategy zero_shot,rag
    bench report results/<run_id> [--format md|html|csv]
    bench import data.csv --out my_task --input question --output answer
    bench estimate --model llama-3-8b --strategy qlora [--seq-len 1024 --batch 2]
    bench study rag_vs_finetuning [--quick]      # a study: its run, then its claims checked (study.md)
    bench ls tasks|strategies|metrics|models
    bench validate ./my_task

Bad input exits with code 2 and one line saying what and where; nothing computed is lost, and the
same `bench run` resumes an interrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import sqlite3
import sys
from typing import Optional

from bench import atomic, importer
from bench.config import BACKENDS, DEFAULT_LIMIT, DEFAULT_TASKS, EXECUTORS, PROBE_SETS, RunConfig
from bench.errors import BenchError
from bench.logs import capture, keep, terminal
from bench.models.resolve import list_models
from bench.plugins import load_plugins
from bench.registry import METRICS, STRATEGIES, TASKS
from bench.report.estimate import estimate, render
from bench.report.writer import FORMATS, summary_rows, write_report
from bench.run.grid import run_grid
from bench.study import SPEC_IN_RUN, load_study, study_config
from bench.taskio import validate_folder

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EPERM}
SQLITE_WRITE_ERRORS = ("disk I/O error", "database or disk is full", "readonly database", "unable to open database")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes whole numbers separated by commas, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="Fine-tune, retrieve, or just prompt? Measured on your tasks.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run strategies on tasks and write results/<run_id>/")
    r.add_argument("--task", type=_csv, help=f"task names or folders, comma-separated (default: {','.join(DEFAULT_TASKS)})")
    r.add_argument("--strategy", type=_csv, help="strategies, comma-separated; stack with + (rag+cot); 'all' for every one")
    r.add_argument("--model", help="packaged model name, .gguf file, model folder or HF id (default: smollm2-135m)")
    r.add_argument("--seeds", type=_seeds, help="seeds, comma-separated (default: 0)")
    r.add_argument("--limit", type=int, help=f"only the first N test items of each task (default: {DEFAULT_LIMIT})")
    r.add_argument("--out", help="results folder (default: results)")
    r.add_argument("--config", help="YAML run config; flags override it")
    r.add_argument("--backend", choices=BACKENDS, help="generation backend (default: auto)")
    r.add_argument("--threads", type=int, help="CPU threads for the model (default: one per core)")
    r.add_argument("--run-id", help="name of the run folder (default: derived from the config, so reruns resume)")
    r.add_argument("--max-new-tokens", type=int, help="decoding budget per answer")
    r.add_argument("--probes", choices=PROBE_SETS,
                   help="forgetting probes on every arm's model, with deltas against the base model")
    r.add_argument("--strata", action="store_true", default=None,
                   help="label test items known/unknown on the base model (SliCK) and report metrics per stratum")
    r.add_argument("--margin", type=float, help="equivalence margin of the decision on the main metric (default 0.05)")
    r.add_argument("--until-decided", action="store_true", default=None,
                   help="evaluate test items in rounds until every task is decided (or --max-items / --budget ends)")
    r.add_argument("--max-items", type=int, help="with --until-decided: at most this many test items per task")
    r.add_argument("--budget", help="with --until-decided: wall-clock budget, e.g. 30m, 2h, 90s")
    r.add_argument("--tune", action="store_true", default=None,
                   help="choose each arm's settings on a validation split carved from train (never from test)")
    r.add_argument("--executor", choices=EXECUTORS, help="run cells in this process (local) or as Ray tasks (ray)")
    r.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local one)")
    r.add_argument("--base-url", help="OpenAI-compatible server for --model openai/NAME, e.g. http://127.0.0.1:8000/v1")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")

    st = sub.add_parser("study", help="run a study (studies/NAME: a run config and the claims it checks) and "
                        "write results/studies/NAME/ with report.md and study.md")
    st.add_argument("name", help="a folder of studies/ (see studies/README.md) or a path to a study folder")
    st.add_argument("--quick", action="store_true", help="the study's small variant (checks the plumbing, not the finding)")
    st.add_argument("--out", help="results folder (default: results/studies)")
    st.add_argument("--no-progress", action="store_true", help="no progress bars")

    rep = sub.add_parser("report", help="re-render report.md of a run from stored rows (no model calls)")
    rep.add_argument("run_dir")
    rep.add_argument("--format", default="md", choices=FORMATS,
                     help="md (default), html or csv; report.md and recommendation.json are always written")

    est = sub.add_parser("estimate", help="GPU memory and time to fine-tune a target model (no model is loaded)")
    est.add_argument("--model", required=True, help="a known name (llama-3-8b, mistral-7b, qwen2.5-7b, llama-65b, ...) or a parameter count (8e9, 8B)")
    est.add_argument("--strategy", default="qlora", help="lora, qlora or full (default: qlora)")
    est.add_argument("--seq-len", type=int, default=512, help="tokens per training sequence (default: 512)")
    est.add_argument("--batch", type=int, default=1, help="sequences per micro-batch (default: 1)")
    est.add_argument("--rank", type=int, default=16, help="LoRA rank (default: 16, on all linear layers)")
    est.add_argument("--optimizer", help="adamw, adamw_8bit, paged_adamw, paged_adamw_8bit, sgd (default: adamw; paged_adamw for qlora)")
    est.add_argument("--gpu", default="a100", help="t4, v100, a10g, l4, a100, a100-40gb, h100, h200, rtx3090, rtx4090 (default: a100)")
    est.add_argument("--tokens", type=float, help="training tokens in total (examples x epochs x length), for a time estimate")
    est.add_argument("--json", action="store_true", help="print the estimate as JSON")

    ls = sub.add_parser("ls", help="list tasks, strategies, metrics or models")
    ls.add_argument("what", choices=["tasks", "strategies", "metrics", "models"])

    v = sub.add_parser("validate", help="check a task folder and report every problem as file:line: message")
    v.add_argument("path")

    imp = sub.add_parser("import", help="write a task folder from a CSV, JSONL or Parquet file or a saved datasets folder")
    importer.add_arguments(imp)
    return p


def config_from_args(args: argparse.Namespace):
    cfg = RunConfig.from_yaml(args.config) if args.config else RunConfig()
    changes = {}
    for flag, key in (("task", "tasks"), ("strategy", "strategies"), ("model", "model"), ("seeds", "seeds"),
                      ("limit", "limit"), ("out", "out"), ("backend", "backend"), ("threads", "threads"),
                      ("run_id", "run_id"), ("probes", "probes"), ("strata", "strata"),
                      ("until_decided", "until_decided"), ("max_items", "max_items"), ("budget", "budget"),
                      ("tune", "tune"), ("executor", "executor"), ("ray_address", "ray_address")):
        value = getattr(args, flag)
        if value is not None:
            changes[key] = value
    if args.max_new_tokens is not None:
        changes["generation"] = dataclasses.replace(cfg.generation, max_new_tokens=args.max_new_tokens)
    if args.margin is not None:
        changes["decision"] = dataclasses.replace(cfg.decision, margin=args.margin)
    if args.base_url is not None:
        changes["endpoint"] = dataclasses.replace(cfg.endpoint, base_url=args.base_url)
    cfg = cfg.replace(**changes) if changes else cfg
    cfg.validate("command line")
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    return run_and_report(config_from_args(args), progress=not args.no_progress)


def cmd_study(args: argparse.Namespace) -> int:
    study = load_study(args.name)
    cfg = study_config(study, quick=args.quick, out=args.out)
    return run_and_report(cfg, progress=not args.no_progress,
                          before_report=lambda run_dir: atomic.write_json(run_dir / SPEC_IN_RUN, study.to_dict()),
                          extra=lambda run_dir: f"study: {run_dir / 'study.md'}")


def run_and_report(cfg: RunConfig, progress: bool = True, before_report=None, extra=None) -> int:
    """Run the grid, write the report, print the summary; 1 when a cell failed."""
    with capture():  # library output goes to results/<run_id>/run.log, not the terminal
        result = run_grid(cfg, progress=progress, log=lambda m: print(m, file=terminal()))
        keep(result.run_dir)
        if before_report is not None:
            before_report(result.run_dir)
        report = write_report(result.run_dir)
        keep(result.run_dir)
    print()
    for task, table in summary_rows(result.rows).items():
        print(f"{task}  ({table[0]['metric'] if table else '?'}, 95% CI)")
        for t in table:
            v = "   –  " if t["value"] is None else f"{t['value']:.3f}"
            ci = f"[{t['ci_low']:.3f}, {t['ci_high']:.3f}]" if t["ci_low"] is not None else ""
            lat = f"{t['latency_p50_s']:.2f}s" if t["latency_p50_s"] is not None else "–"
            print(f"  {t['strategy']:<28} {v} {ci:<16} n={t['n']:<4} failed={t['n_failed']:<3} p50={lat}")
    if result.rounds:
        last = result.rounds[-1]
        print(f"\nuntil decided: {len(result.rounds)} round(s); items per task "
              + ", ".join(f"{t} {n}{' (decided)' if last['decided'].get(t) else ''}" for t, n in last["items"].items()))
    print(f"\ncells: {result.cells_total} ({result.cells_reused} reused, {len(result.cells_failed)} failed), "
          f"model calls: {result.model_calls}")
    for cid, error in result.errors.items():
        print(f"bench: cell {cid} failed: {error}", file=sys.stderr)
    if result.cells_failed:
        print(f"{len(result.cells_failed)} cell(s) failed (tracebacks in their cells/<id>/error.txt); the report "
              "shows them, and the same command retries them", file=sys.stderr)
    print(f"report: {report}")
    if extra is not None:
        print(extra(result.run_dir))
    return 1 if result.cells_failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    print(f"report: {write_report(args.run_dir, getattr(args, 'format', 'md'))}")
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    e = estimate(args.model, args.strategy, seq_len=args.seq_len, batch=args.batch, rank=args.rank,
                 optimizer=args.optimizer, gpu=args.gpu, tokens=args.tokens)
    print(json.dumps(e.to_dict(), indent=2) if args.json else render(e))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    load_plugins()
    if args.what == "tasks":
        print(f"{'name':<16} {'lang':<5} {'kind':<11} {'train':>6} {'test':>6} {'docs':>6}  licence / source")
        for name in TASKS.names():
            d = TASKS.get(name).describe()
            print(f"{name:<16} {d['language']:<5} {d['kind']:<11} {d['train']:>6} {d['test']:>6} {d['docs']:>6}  "
                  f"{d['license']} / {d['source']}")
        print("\nAny folder in the DESIGN.md format works too: bench run --task ./my_task")
    elif args.what == "strategies":
        for name in STRATEGIES.names():
            s = STRATEGIES.get(name)
            print(f"{name:<18} {s.family:<10} {s.description}")
        print("\nStack with +, at most one per family: lora+rag, rag+cot, lora+few_shot. Variants: NAME@LABEL runs NAME "
              "with its own params.NAME@LABEL (lora@r64).")
    elif args.what == "metrics":
        for name in METRICS.names():
            m = METRICS.get(name)
            print(f"{name:<14} reports {', '.join(m.names):<34} {m.description}")
    else:
        for name, desc in list_models():
            print(f"{name:<14} {desc}")
        print("\nAlso accepted: any .gguf file, a local transformers model folder, or a Hugging Face id (org/name).")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    problems = validate_folder(args.path)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s) in {args.path}", file=sys.stderr)
        return 2
    print(f"{args.path}: ok")
    return 0


def _cannot_write(where: str, why: str) -> int:
    print(f"bench: error: cannot write {where}: {why}; free disk space, fix the permissions or choose another "
          "--out; finished cells are kept and the next run resumes", file=sys.stderr)
    return 2


COMMANDS = {"run": cmd_run, "study": cmd_study, "report": cmd_report, "ls": cmd_ls, "validate": cmd_validate, "estimate": cmd_estimate,
            "import": importer.cmd_import}


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BenchError as e:
        for line in e.lines:
            print(f"bench: error: {line}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        return _cannot_write(e.filename or "the results folder", e.strerror)
    except sqlite3.OperationalError as e:  # the generation cache's disk is full, read-only or size-limited
        if not any(m in str(e) for m in SQLITE_WRITE_ERRORS):
            raise
        return _cannot_write("the generation cache (<out>/.cache/generations.sqlite)", str(e))
    except KeyboardInterrupt:
        print("bench: interrupted; finished cells are saved, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
