"""Stable content hashes: the keys of every cache in bench (generations, indexes, adapters)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_FILE_HASHES: dict[tuple[str, float, int], str] = {}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON-able object, independent of dict key order."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, memoised on (path, mtime, size) so a 100 MB model is hashed once a process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime, st.st_size)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def sha256_dir(path: str | Path) -> str:
    """Hash of every file below a folder (names and contents)."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()
