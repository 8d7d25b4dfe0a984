"""Atomic file writes (a uniquely named temp file in the same folder, fsync, rename), and reading back.

A killed run leaves either the old file or the new one, never half of one; this is what lets an
interrupted `bench run` resume without losing or duplicating results.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from bench.errors import BenchError


def write_bytes(path: str | Path, data: bytes) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}  # json.dumps leaves them raw


def json_line(obj: Any, **kwargs: Any) -> str:
    """One JSON Lines record, newline included: `json.dumps(obj, ensure_ascii=False, **kwargs)` with the
    characters that str.splitlines() and some editors take for line breaks (U+0085, U+2028, U+2029)
    escaped, so a record is one line for every reader."""
    text = json.dumps(obj, ensure_ascii=False, **kwargs)
    for raw, escaped in LINE_BREAKS.items():
        text = text.replace(raw, escaped)
    return text + "\n"


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    return write_text(path, "".join(json_line(r, default=str) for r in rows))


def read_jsonl(path: str | Path, appended: bool = False) -> list[dict]:
    """The objects of a JSON Lines file ([] when it does not exist).

    Files bench writes atomically are never torn, so any bad line in them is damage: a one-line error
    naming the file and line. An `appended` log (train_log.jsonl) can end in a half-written line when
    a process is killed; that last line alone is skipped.
    """
    p = Path(path)
    if not p.exists():
        return []
    lines = p.read_text(encoding="utf-8", errors="replace").split("\n")  # not splitlines(): see json_line
    if lines and lines[-1] == "":
        lines.pop()
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if appended and n == len(lines):
                break  # a torn last line of an interrupted append

            raise BenchError(f"{p}:{n}: not valid JSON; delete the file to let the next run rewrite it") from None
    return out
