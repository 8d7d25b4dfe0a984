"""bench against lm-evaluation-harness on one bench task: same weights, prompts, greedy decoding, max tokens.

A user who runs a task through both tools should find bench faster and the answers the same. Three
paths generate the zero-shot answers of the first --limit test items of a bench task:

1. lm-eval 0.4.13's `hf` model on bench's converted fp32 weights (the folder
   `bench.models.convert.hf_checkpoint(spec, cache_dir)`), the items as a local JSON dataset of a custom
   `generate_until` task, `--apply_chat_template` with the task's system turn as `--system_instruction`;
   once per batch size in --lm-eval-batch-sizes, the fastest kept ("lm-eval best");
2. bench's transformers backend (`--backend hf`): HFBackend.generate_batch on the same rendered prompts;
3. bench's default path: the model as `bench run` serves it with --backend auto (bench.run.pool.ModelPool).

Default mode times the generation calls in one process (model load reported apart). --end-to-end times
whole processes instead, imports and model loading included: `bench run --strategy zero_shot --backend
hf|auto` (the runner batches a cell's prompts) and the `lm-eval run` CLI at lm-eval's best batch size
(`end_to_end_bench` and `end_to_end_lm_eval`). Every path uses --threads torch/llama.cpp threads.

Printed: the CPU (bench.cpu.cpu_info().summary()), load averages before and after, and per path the
wall time, completion tokens, outputs byte-identical to lm-eval's best run, and time / lm-eval best
(target: <= 0.5 for the hf backend and for the default path). The prompts lm-eval built are checked
against bench's rendered prompts first (their share is printed; outputs only compare when it is 1.0).

The lm-eval invocation (what --end-to-end runs; TASKDIR is a temporary folder):

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=<threads> python -m lm_eval run --model hf \\
        --model_args pretrained=<cache>/models/hf/<gguf sha256[:24]>,dtype=float32 --device cpu \\
        --include_path TASKDIR --tasks bench_<task> --apply_chat_template \\
        --system_instruction "<the task's system turn>" --batch_size <n> \\
        --output_path TASKDIR/out --log_samples --predict_only

with TASKDIR/bench_<task>.yaml (TASKDIR/test.jsonl holds one {"id", "user", "output"} object a line:
the item's id, the user turn bench renders, the reference answer):

    task: bench_<task>
    dataset_path: json
    dataset_kwargs: {data_files: {test: TASKDIR/test.jsonl}}
    test_split: test
    output_type: generate_until
    doc_to_text: "{{user}}"
    doc_to_target: "{{output}}"
    generation_kwargs: {until: [<bench's stop strings>], max_gen_toks: <max new tokens>, do_sample: false}
    metric_list: [{metric: exact_match}]

    python benchmarks/lm_eval_compare.py [--task facts] [--limit 50] [--max-new-tokens 128] [--threads 2]
        [--lm-eval-batch-sizes 8,16,32,64] [--hf-batch-sizes 16,64] [--end-to-end] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("BENCH_MODELS_DIR", None)  # warm caches are set up by copying <out>/.cache/models
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.config import RunConfig  # noqa: E402
from bench.cpu import cpu_info  # noqa: E402
from bench.errors import BenchError  # noqa: E402
from bench.models.convert import hf_checkpoint  # noqa: E402
from bench.models.resolve import ModelSpec, resolve_model  # noqa: E402
from bench.prompts import build_messages  # noqa: E402
from bench.taskio import load_folder  # noqa: E402
from bench.types import GenParams, GenRequest, Task  # noqa: E402


@dataclass
class Run:
    """One way of answering the items: its name, wall time, outputs in item order, and notes."""

    name: str
    seconds: float
    outputs: list[str]
    tokens: int = 0
    load_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


# -- the task, as bench renders it -------------------------------------------------------------------
def find_task(name: str) -> Task:
    folder = Path(name) if Path(name).is_dir() else ROOT / "tasks" / name
    return load_folder(folder)


def chat_items(task: Task, limit: int) -> tuple[str, list[dict]]:
    """(the system turn shared by every item, [{id, user, output}]) of bench's zero-shot messages."""
    systems, items = set(), []
    for ex in task.test[:limit]:
        msgs = build_messages(task, ex)
        systems.add(next((m["content"] for m in msgs if m["role"] == "system"), ""))
        users = [m for m in msgs if m["role"] == "user"]
        if len(users) != 1 or len(msgs) - len(users) > 1:
            raise BenchError(f"task {task.name}: item {ex.id} is not one system + one user turn; pick a zero-shot task")
        items.append({"id": ex.id, "user": users[0]["content"], "output": ex.output})
    if len(systems) != 1:
        raise BenchError(f"task {task.name}: items have {len(systems)} different system turns; lm-eval takes one")
    return systems.pop(), items


# -- lm-evaluation-harness -----------------------------------------------------------------------------
def write_lm_eval_task(folder: Path, task: Task, items: list[dict], stops: tuple[str, ...], max_new: int) -> str:
    """A custom generate_until task over the items as a local JSON dataset; returns its name."""
    import yaml

    name = f"bench_{task.name}".replace("-", "_")
    data = folder / "test.jsonl"
    data.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items), encoding="utf-8")
    spec = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{user}}",
            "doc_to_target": "{{output}}",
            "generation_kwargs": {"until": list(stops), "max_gen_toks": max_new, "do_sample": False},
            "metric_list": [{"metric": "exact_match"}]}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return name


def samples_in_order(samples: list[dict]) -> tuple[list[str], list[str]]:
    """(contexts lm-eval built, its outputs), in item order."""
    ordered = sorted(samples, key=lambda s: s["doc_id"])
    contexts = [s["arguments"]["gen_args_0"]["arg_0"] if isinstance(s["arguments"], dict) else s["arguments"][0][0]
                for s in ordered]
    return contexts, [s["resps"][0][0] for s in ordered]


def lm_eval_in_process(weights: Path, tasks: object, name: str, system: str, batch: int) -> tuple[Run, list[str]]:
    """lm-eval's HFLM at one batch size; the timed part is simple_evaluate (building the task's requests
    and generating), not the model load nor the indexing of lm-eval's task registry (`tasks`, built once)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    t0 = time.perf_counter()
    lm = HFLM(pretrained=str(weights), dtype="float32", device="cpu", batch_size=batch)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=tasks, apply_chat_template=True,
                                  system_instruction=system, log_samples=True, predict_only=True)
    seconds = time.perf_counter() - t0
    contexts, outputs = samples_in_order(res["samples"][name])
    tokens = sum(len(lm.tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
    del lm
    return Run(f"lm-eval hf, batch {batch}", seconds, outputs, tokens, load), contexts


def end_to_end_lm_eval(weights: Path, folder: Path, name: str, system: str, batch: int, threads: int) -> Run:
    """The `lm-eval run` CLI as a user types it (see the module docstring), timed as a whole process."""
    out = folder / f"out-{batch}"
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
           "--model_args", f"pretrained={weights},dtype=float32", "--device", "cpu", "--include_path", str(folder),
           "--tasks", name, "--apply_chat_template", "--system_instruction", system, "--batch_size", str(batch),
           "--output_path", str(out), "--log_samples", "--predict_only"]
    seconds = timed_process(cmd, dict(os.environ, OMP_NUM_THREADS=str(threads)))
    (samples,) = list(out.rglob(f"samples_{name}_*.jsonl"))
    _, outputs = samples_in_order([json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()])
    return Run(f"lm-eval run CLI, batch {batch} (process)", seconds, outputs)


def timed_process(cmd: list[str], env: dict) -> float:
    """Wall seconds of a command run to completion; its error output is shown if it fails."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


# -- bench -------------------------------------------------------------------------------------------
def bench_hf(spec: ModelSpec, cache: Path, prompts: list[str], params: GenParams, threads: int,
             batch_size: int) -> Run:
    from bench.models.hf import HFBackend

    t0 = time.perf_counter()
    backend = HFBackend(spec, cache, threads=threads, batch_size=batch_size)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    gens = backend.generate_batch([GenRequest(p, params, 0) for p in prompts])
    seconds = time.perf_counter() - t0
    backend.close()
    return Run(f"bench --backend hf (generate_batch, batch {backend.batch_size})", seconds,
               [g.output for g in gens], sum(g.completion_tokens for g in gens), load)


def bench_default(spec: ModelSpec, cache: Path, prompts: list[str], params: GenParams, threads: int) -> Run:
    """The backend `bench run` picks with --backend auto, loaded by the runner's own pool."""
    from bench.run.pool import ModelPool

    pool = ModelPool(RunConfig(cache_dir=str(cache), threads=threads))
    t0 = time.perf_counter()
    backend = pool.get(spec)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    gens = backend.generate_batch([GenRequest(p, params, 0) for p in prompts])
    seconds = time.perf_counter() - t0
    fmt = getattr(backend, "weights_format", "")
    pool.close()
    return Run(f"bench default ({backend.name}{', ' + fmt if fmt else ''}; generate_batch)", seconds,
                 [g.output for g in gens], sum(g.completion_tokens for g in gens), load)


def end_to_end_bench(task_arg: str, prompts: list[str], cache: Path, max_new: int, threads: int, backend: str,
                     work: Path) -> Run:
    """`bench run --strategy zero_shot` as a user types it, timed as a whole process (a fresh results
    folder, so nothing is reused, with the model conversion linked from the shared cache)."""
    out = work / f"bench-{backend}"
    (out / ".cache").mkdir(parents=True)
    (out / ".cache" / "models").symlink_to((cache / "models").resolve(), target_is_directory=True)
    cmd = [sys.executable, "-m", "bench", "run", "--task", task_arg, "--strategy", "zero_shot",
           "--backend", backend, "--limit", str(len(prompts)), "--max-new-tokens", str(max_new),
           "--threads", str(threads), "--probes", "none", "--out", str(out), "--no-progress"]
    seconds = timed_process(cmd, dict(os.environ))
    (gen_file,) = list(out.rglob("generations.jsonl"))
    rows = [json.loads(line) for line in gen_file.read_text(encoding="utf-8").splitlines()]
    by_prompt = {r["prompt"]: r["output"] for r in rows}
    same = sum(p in by_prompt for p in prompts)
    return Run(f"bench run --backend {backend} (process)", seconds, [by_prompt.get(p, "") for p in prompts],
               sum(int(r.get("completion_tokens") or 0) for r in rows),
               notes=[f"prompts identical to the rendered ones {same}/{len(prompts)}"])


# -- report ------------------------------------------------------------------------------------------
def ints(csv: str) -> list[int]:
    return [int(x) for x in csv.split(",") if x.strip()]


def identical(a: list[str], b: list[str]) -> str:
    same = sum(x == y for x, y in zip(a, b))
    return f"{same}/{max(len(a), len(b))}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="facts")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--max-new-tokens", type=int, default=GenParams().max_new_tokens)
    ap.add_argument("--threads", type=int, default=cpu_info().physical)
    ap.add_argument("--lm-eval-batch-sizes", default="8,16,32,64")
    ap.add_argument("--hf-batch-sizes", default="", help="HFBackend.batch_size values to time (default: its own)")
    ap.add_argument("--end-to-end", action="store_true", help="time whole `bench run` / `lm-eval run` processes")
    ap.add_argument("--cache", help="bench cache folder (keeps the GGUF -> safetensors conversion)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(f"cpu: {cpu_info().summary()}  threads: {args.threads}")
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cache = Path(args.cache) if args.cache else work / "cache"
        spec = resolve_model(args.model, cache)
        weights = hf_checkpoint(spec, cache)
        task = find_task(args.task)
        system, items = chat_items(task, args.limit)

        from transformers import AutoTokenizer

        from bench.models.hf import template_for

        template = template_for(spec, AutoTokenizer.from_pretrained(str(weights)))
        prompts = [template.render(([{"role": "system", "content": system}] if system else [])
                                   + [{"role": "user", "content": it["user"]}]) for it in items]
        params = GenParams(max_new_tokens=args.max_new_tokens, stop=template.stop)
        name = write_lm_eval_task(work, task, items, params.stop, args.max_new_tokens)
        print(f"task {task.name}: {len(items)} items, max_new_tokens {args.max_new_tokens}, greedy, "
              f"weights {weights}")

        from lm_eval.tasks import TaskManager

        tasks = TaskManager(include_path=str(work))
        runs: list[Run] = []
        best: Run | None = None
        for b in ints(args.lm_eval_batch_sizes):
            run, contexts = lm_eval_in_process(weights, tasks, name, system, b)
            same_prompts = sum(c == p for c, p in zip(contexts, prompts))
            run.notes.append(f"prompts identical to bench's {same_prompts}/{len(prompts)}")
            runs.append(run)
            print(f"  {run.name}: {run.seconds:.1f} s", flush=True)
            if best is None or run.seconds < best.seconds:
                best = run
        assert best is not None
        ref = best  # what bench's times are divided by: lm-eval's best generation, or its CLI process
        if args.end_to_end:
            ref = end_to_end_lm_eval(weights, work, name, system, int(best.name.rsplit(" ", 1)[-1]), args.threads)
            runs.append(ref)
            print(f"  {ref.name}: {ref.seconds:.1f} s", flush=True)
            for backend in ("hf", "auto"):
                runs.append(end_to_end_bench(args.task, prompts, cache, args.max_new_tokens, args.threads, backend,
                                             work))
                print(f"  {runs[-1].name}: {runs[-1].seconds:.1f} s", flush=True)
        else:
            for b in ints(args.hf_batch_sizes) or [0]:
                runs.append(bench_hf(spec, cache, prompts, params, args.threads, b))
                print(f"  {runs[-1].name}: {runs[-1].seconds:.1f} s", flush=True)
            runs.append(bench_default(spec, cache, prompts, params, args.threads))
            print(f"  {runs[-1].name}: {runs[-1].seconds:.1f} s", flush=True)

        print(f"\nload average after: {os.getloadavg()}")
        print(f"{'path':58} {'wall s':>8} {'load s':>7} {'tokens':>7} {'same as lm-eval best':>21} {'/ ref':>7}")
        for r in runs:
            print(f"{r.name:58} {r.seconds:8.1f} {r.load_seconds:7.1f} {r.tokens:7d} "
                  f"{identical(r.outputs, best.outputs):>21} {r.seconds / ref.seconds:7.2f}  {'; '.join(r.notes)}")
        print(f"ref: {ref.name}. tokens: completion tokens (lm-eval's: its outputs re-tokenized). load s: model "
              "load, apart from wall s (processes include it).")
        print("target: bench's hf and default paths at <= 0.50 of the ref's wall time")


if __name__ == "__main__":
    main()
