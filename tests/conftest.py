"""Shared fixtures: tiny task folders, a fake model file, offline settings, and a small disk footprint.

CI machines can have little free disk, and SmolLM2's conversion and exports take ~0.8 GB per copy. So
the session converts weights once into one shared store (`BENCH_MODELS_DIR`, see bench/models/store.py),
a passing test's tmp_path is removed when it ends (pyproject: tmp_path_retention_policy), and module
fixtures take their folders from `scratch`, which removes them when the module is done.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def shared_model_store(tmp_path_factory):
    """One store of converted weights for the whole session (subprocesses and Ray workers inherit it)."""
    from bench.models.store import ENV

    if os.environ.get(ENV):
        yield Path(os.environ[ENV])
        return
    path = tmp_path_factory.mktemp("models")
    os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def scratch(tmp_path_factory, name: str):
    """A folder for a module-scoped fixture, removed when the fixture ends (`yield from scratch(...)`).

    BENCH_TEST_CACHE names one folder to keep across test runs instead (local iteration on slow tests).
    """
    keep = os.environ.get("BENCH_TEST_CACHE")
    if keep:
        yield Path(keep)
        return
    path = tmp_path_factory.mktemp(name)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_task(folder: Path, *, train=None, test=None, docs=None, meta=None, language="en") -> Path:
    """Write a task folder in the DESIGN.md format and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {"name": folder.name, "version": "1", "description": "test task", "language": language, "kind": "qa",
            "metrics": ["exact_match", "f1", "rouge"], "main_metric": "f1", "source": "tests", "license": "CC0-1.0"}
    base.update(meta or {})
    import yaml

    (folder / "task.yaml").write_text(yaml.safe_dump(base, allow_unicode=True))
    train = train if train is not None else [
        {"id": f"tr{i}", "instruction": f"What is {i} plus {i}?", "input": "", "output": str(2 * i)} for i in range(6)]
    test = test if test is not None else [
        {"id": f"te{i}", "instruction": f"What is {i} plus {i + 1}?", "input": "", "output": str(2 * i + 1)} for i in range(4)]
    for name, rows in (("train.jsonl", train), ("test.jsonl", test), ("docs.jsonl", docs)):
        if rows is not None:
            (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return folder


@pytest.fixture
def task_dir(tmp_path) -> Path:
    return write_task(tmp_path / "tiny")


@pytest.fixture
def fake_gguf(tmp_path) -> Path:
    """A file that resolves as a GGUF model spec (never loaded: tests give a FakePool)."""
    p = tmp_path / "fake-model.gguf"
    p.write_bytes(b"GGUF fake weights")
    return p
