"""The generation cache: SQLite, one row per model call, keyed by everything that changes the output.

The key is sha256 over model and adapter hash, backend, strategy and its parameters, the final prompt,
the decoding parameters, the seed and the sample index. Two models never share an entry (the bug
lm-evaluation-harness users hit, #2715/#4063). Every put commits, so a killed run loses at most the
call in flight and resumes from the next one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

from bench.hashing import sha256_json
from bench.types import Generation


class GenerationCache:
    def __init__(self, path: str | Path | None):
        """A cache at `path` (a .sqlite file), or an in-memory one for path None."""
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(**parts: object) -> str:
        return sha256_json(parts)

    def get(self, key: str) -> Optional[Generation]:
        with self._lock:
            row = self._db.execute("SELECT value FROM generations WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return replace(Generation(**json.loads(row[0])), cached=True)

    def put(self, key: str, gen: Generation) -> None:
        value = json.dumps(asdict(replace(gen, cached=False)), ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO generations (key, value) VALUES (?, ?)", (key, value))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        self._db.close()
