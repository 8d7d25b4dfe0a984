"""Planning a run: every task, strategy and model resolved before any model work, so bad input stops here.

`resolve_task` turns a CLI word into a Task (a registered name or a folder path); `plan` builds the
tasks, the arms and the model spec of a RunConfig. A bad name, folder or combination is a one-line
BenchError here, never a failure half way through a grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.config import RunConfig
from bench.errors import BenchError, PlanError
from bench.models.resolve import ModelSpec, resolve_model
from bench.plugins import load_plugins
from bench.registry import TASKS
from bench.run.pipeline import Arm, expand_strategies, parse_arm
from bench.taskio import load_folder
from bench.types import Task


def looks_like_path(word: str) -> bool:
    return "/" in word or word.startswith(".") or Path(word).is_dir()


def resolve_task(word: str) -> Task:
    """A task from a CLI word: a registered (built-in) task name, or a path to a task folder."""
    load_plugins()
    if word in TASKS:
        return TASKS.get(word).load()
    if looks_like_path(word):
        if not Path(word).exists():
            raise BenchError(f"--task {word}: no such folder; pass a task folder or a name from `bench ls tasks`")
        return load_folder(word)
    raise BenchError(TASKS.unknown_message(word))


@dataclass(frozen=True)
class Plan:
    tasks: tuple[Task, ...]
    arms: tuple[Arm, ...]
    model: ModelSpec


def incompatibilities(tasks: tuple[Task, ...], arms: tuple[Arm, ...]) -> list[str]:
    """One line for every (task, strategy part) that cannot run together (Strategy.check)."""
    problems: list[str] = []
    for task in tasks:
        for arm in arms:
            for part in arm.parts:
                problem = part.check(task)
                if problem and problem not in problems:
                    problems.append(problem)
    return problems


def plan(config: RunConfig) -> Plan:
    """Resolve every task, strategy and the model before any model work: bad input stops here."""
    tasks = tuple(resolve_task(w) for w in config.tasks)
    arms = tuple(parse_arm(s, config) for s in expand_strategies(config.strategies))
    problems = incompatibilities(tasks, arms)
    if problems:
        raise PlanError(problems)
    model = resolve_model(config.model, config.resolved_cache_dir(), config.endpoint)
    if model.kind == "endpoint":
        local = [a.name for a in arms if a.finetune is not None]
        if local:
            raise BenchError(f"strategy {local[0]} needs local weights; model {model.name} is served by an endpoint: "
                             "drop the fine-tuning strategies, or pass a local model (--model NAME|PATH) to fine-tune")
        if config.backend != "auto":
            raise BenchError(f"--backend {config.backend}: model {model.name} is served by an endpoint; leave --backend auto")
    return Plan(tasks, arms, model)
