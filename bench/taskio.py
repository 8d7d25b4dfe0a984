"""Load and validate task folders (DESIGN.md: task.yaml, train.jsonl, test.jsonl, optional docs.jsonl).

`validate_folder` collects every problem as `file:line: message`; `load_folder` refuses a task with any
problem, so a bad task never produces a partial run. `resolve_task` turns a CLI word into a Task: a
path to a folder, or the name of a registered (built-in) task.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml

import bench.metrics  # noqa: F401  (fills METRICS: task.yaml names metrics)
from bench.errors import BenchError, TaskError
from bench.hashing import sha256_file
from bench.metrics.base import reported_names
from bench.registry import METRICS
from bench.types import Doc, Example, Task

MANIFEST = "manifest.json"  # written by the generators of bench.synth: sha256 of every data file
REQUIRED_KEYS = ("name", "version", "description", "language", "kind", "metrics", "main_metric", "source", "license")
OPTIONAL_KEYS = ("abstain_phrase", "instruction", "extra")
KINDS = ("qa", "generation")
EXAMPLE_FIELDS = ("id", "instruction", "input", "output")
OPTIONAL_EXAMPLE_FIELDS = {"answerable": bool, "doc_ids": list, "stratum": str}


def _where(path: Path, line: int | None = None) -> str:
    return f"{path}:{line}" if line else str(path)


def _read_yaml(path: Path, problems: list[str]) -> dict:
    if not path.is_file():
        problems.append(f"{path}: missing; a task folder needs task.yaml, train.jsonl and test.jsonl")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problems.append(f"{_where(path, mark.line + 1 if mark else None)}: invalid YAML ({getattr(e, 'problem', e)})")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: must be a YAML mapping with keys {', '.join(REQUIRED_KEYS)}")
        return {}
    return data


def _check_meta(meta: dict, path: Path, problems: list[str]) -> None:
    for key in REQUIRED_KEYS:
        if key not in meta or meta[key] in (None, "", []):
            problems.append(f"{path}: missing required key {key!r}")
    for key in meta:
        if key not in REQUIRED_KEYS and key not in OPTIONAL_KEYS:
            close = difflib.get_close_matches(key, REQUIRED_KEYS + OPTIONAL_KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(f"{path}: unknown key {key!r}{hint}")
    if meta.get("kind") not in (None, *KINDS):
        problems.append(f"{path}: kind must be one of {', '.join(KINDS)}, got {meta['kind']!r}")
    metrics = meta.get("metrics") or []
    if not isinstance(metrics, list):
        problems.append(f"{path}: metrics must be a list of metric families, e.g. [rouge, f1]")
        metrics = []
    known = METRICS.names()
    for m in metrics:
        if m not in known:
            close = difflib.get_close_matches(str(m), known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(known)}"
            problems.append(f"{path}: unknown metric {m!r}{hint}")
    main = meta.get("main_metric")
    reported = reported_names([m for m in metrics if m in known])
    if main and metrics and main not in reported:
        problems.append(f"{path}: main_metric {main!r} is not reported by metrics {metrics}; choose one of {', '.join(reported)}")


def _read_jsonl(path: Path, problems: list[str], required: bool) -> list[tuple[int, dict]]:
    if not path.is_file():
        if required:
            problems.append(f"{path}: missing; a task folder needs task.yaml, train.jsonl and test.jsonl")
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{path}:{n}: each line must be a JSON object")
            continue
        rows.append((n, obj))
    if required and not rows and path.is_file():
        problems.append(f"{path}: empty split; add at least one example")
    return rows


def _examples(path: Path, rows: list[tuple[int, dict]], problems: list[str], seen: dict[str, str]) -> list[Example]:
    out = []
    for n, obj in rows:
        bad = False
        for f in EXAMPLE_FIELDS:
            if f not in obj:
                problems.append(f"{path}:{n}: missing field {f!r} (each line needs {', '.join(EXAMPLE_FIELDS)})")
                bad = True
            elif not isinstance(obj[f], (str, int, float)) or isinstance(obj[f], bool):
                problems.append(f"{path}:{n}: field {f!r} must be a string")
                bad = True
        for f, typ in OPTIONAL_EXAMPLE_FIELDS.items():
            if f in obj and not isinstance(obj[f], typ):
                problems.append(f"{path}:{n}: field {f!r} must be a {typ.__name__}")
                bad = True
        if bad:
            continue
        ex_id = str(obj["id"])
        if ex_id in seen:
            problems.append(f"{path}:{n}: duplicate id {ex_id!r} (first at {seen[ex_id]})")
            continue
        seen[ex_id] = f"{path.name}:{n}"
        if obj.get("answerable", True) and not str(obj["output"]).strip():
            problems.append(f"{path}:{n}: empty output for an answerable item")
        known = set(EXAMPLE_FIELDS) | set(OPTIONAL_EXAMPLE_FIELDS)
        extra = tuple(sorted((k, v) for k, v in obj.items() if k not in known))
        out.append(
            Example(
                id=ex_id,
                instruction=str(obj["instruction"]),
                input=str(obj["input"]),
                output=str(obj["output"]),
                answerable=bool(obj.get("answerable", True)),
                doc_ids=tuple(str(d) for d in obj.get("doc_ids", [])),
                stratum=obj.get("stratum"),
                extra=_freeze(extra),
            )
        )
    return out


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _docs(path: Path, rows: list[tuple[int, dict]], problems: list[str]) -> list[Doc]:
    out, seen = [], {}
    for n, obj in rows:
        if "id" not in obj or "text" not in obj:
            problems.append(f"{path}:{n}: a document needs 'id' and 'text' (and optionally 'title')")
            continue
        doc_id = str(obj["id"])
        if doc_id in seen:
            problems.append(f"{path}:{n}: duplicate doc id {doc_id!r} (first at line {seen[doc_id]})")
            continue
        seen[doc_id] = n
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            problems.append(f"{path}:{n}: document {doc_id!r} has no text")
            continue
        out.append(Doc(id=doc_id, title=str(obj.get("title", "")), text=obj["text"]))
    return out


def _parse(folder: Path) -> tuple[Task | None, list[str]]:
    problems: list[str] = []
    folder = Path(folder)
    if not folder.is_dir():
        return None, [f"{folder}: no such task folder; pass a folder with task.yaml, train.jsonl, test.jsonl"]
    meta_path = folder / "task.yaml"
    meta = _read_yaml(meta_path, problems)
    if meta:
        _check_meta(meta, meta_path, problems)
    seen: dict[str, str] = {}
    train = _examples(folder / "train.jsonl", _read_jsonl(folder / "train.jsonl", problems, True), problems, seen)
    test = _examples(folder / "test.jsonl", _read_jsonl(folder / "test.jsonl", problems, True), problems, seen)
    docs_path = folder / "docs.jsonl"
    docs_rows = _read_jsonl(docs_path, problems, False)
    if docs_path.is_file() and not docs_rows and not any(str(docs_path) in p for p in problems):
        problems.append(f"{docs_path}: empty corpus; remove the file or add documents")
    docs = _docs(docs_path, docs_rows, problems)
    doc_ids = {d.id for d in docs}
    test_rows = dict((str(o.get("id")), n) for n, o in _read_jsonl(folder / "test.jsonl", [], False))
    for ex in test:
        missing = [d for d in ex.doc_ids if d not in doc_ids]
        if missing:
            line = test_rows.get(ex.id)
            what = "docs.jsonl has no such id" if docs else "the task has no docs.jsonl"
            problems.append(f"{_where(folder / 'test.jsonl', line)}: doc_ids {missing} point nowhere ({what})")
    if problems or not meta:
        return None, problems
    files = tuple(
        (p.name, sha256_file(p)) for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in (".yaml", ".jsonl")
    )
    task = Task(
        name=str(meta["name"]),
        version=str(meta["version"]),
        description=str(meta["description"]),
        language=str(meta["language"]),
        kind=str(meta["kind"]),
        metrics=tuple(meta["metrics"]),
        main_metric=str(meta["main_metric"]),
        source=str(meta["source"]),
        license=str(meta["license"]),
        train=tuple(train),
        test=tuple(test),
        docs=tuple(docs),
        abstain_phrase=str(meta.get("abstain_phrase") or "I don't know"),
        instruction=str(meta.get("instruction") or ""),
        path=folder.resolve(),
        files_sha256=files,
        extra=_freeze(meta.get("extra") or {}),
    )
    return task, []


def validate_folder(folder: str | Path) -> list[str]:
    """Every problem of a task folder, as `file:line: message`; empty when the task is valid."""
    return _parse(Path(folder))[1]


def verify_manifest(folder: Path) -> dict:
    """The manifest, after checking every listed file's sha256; BenchError on the first mismatch."""
    folder = Path(folder)
    mpath = folder / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BenchError(f"{mpath}: unreadable generator manifest ({type(e).__name__}); regenerate with scripts/generate_tasks.py") from None
    for name, want in sorted(files.items()):
        p = folder / name
        if not p.is_file():
            raise BenchError(f"{p}: missing; the manifest lists it; regenerate with scripts/generate_tasks.py")
        got = sha256_file(p)
        if got != want:
            raise BenchError(f"{p}: sha256 {got[:12]}… does not match manifest {want[:12]}… (corrupted or edited); "
                             "restore it from git or regenerate with scripts/generate_tasks.py")
    return manifest


def load_folder(folder: str | Path) -> Task:
    """A validated Task; a generated folder (with manifest.json) must also match its recorded hashes."""
    if (Path(folder) / MANIFEST).is_file():
        verify_manifest(Path(folder))
    task, problems = _parse(Path(folder))
    if problems:
        raise TaskError(problems)
    assert task is not None
    return task


class FolderTask:
    """A registered task backed by a folder (the built-in tasks, and anything a package adds)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def load(self) -> Task:
        return load_folder(self.folder)

    def describe(self) -> dict:
        meta = yaml.safe_load((self.folder / "task.yaml").read_text(encoding="utf-8")) or {}

        def count(name: str) -> int:
            p = self.folder / name
            return sum(1 for line in p.open(encoding="utf-8") if line.strip()) if p.is_file() else 0

        return {
            "name": meta.get("name", self.folder.name),
            "language": meta.get("language", "?"),
            "kind": meta.get("kind", "?"),
            "train": count("train.jsonl"),
            "test": count("test.jsonl"),
            "docs": count("docs.jsonl"),
            "license": meta.get("license", "?"),
            "source": meta.get("source", "?"),
            **self._generator(),
        }

    def _generator(self) -> dict:
        path = self.folder / MANIFEST
        if not path.is_file():
            return {}
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
            return {"generator": f"{m.get('generator')} v{m.get('generator_version')} seed {m.get('seed')}"}
        except (OSError, ValueError):
            return {"generator": "manifest unreadable"}
