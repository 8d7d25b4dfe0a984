"""The generation cache: SQLite, one row per model call, keyed by everything that changes the output.

The key is sha256 over model and adapter hash, backend, strategy and its parameters, the final prompt,
the decoding parameters, the seed and the sample index. Two models never share an entry (the bug
lm-evaluation-harness users hit, #2715/#4063). Every put commits, so a killed run loses at most the
call in flight and resumes from the next one.

Several processes may share one cache file (two runs with the same --out, Ray workers): the file is in
WAL mode (readers never block the writer), each statement is its own transaction, SQLite waits up to
BUSY_TIMEOUT_S for a lock, and a statement that still finds the database locked is retried with
backoff for up to RETRY_FOR_S before it becomes a one-line error. A file that is not an SQLite
database is refused by name (it is only a cache: deleting it costs recomputation, nothing else).
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from bench.errors import BenchError
from bench.hashing import sha256_json
from bench.types import Generation

BUSY_TIMEOUT_S = 10.0  # SQLite's own wait for a lock, per statement
RETRY_FOR_S = 120.0  # further retries of a statement that still finds the database locked
_GENERATION_FIELDS = frozenset(f.name for f in fields(Generation))

T = TypeVar("T")


def _locked(e: sqlite3.OperationalError) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


class GenerationCache:
    def __init__(self, path: str | Path | None, journal: bool = False):
        """A cache at `path` (a .sqlite file), or an in-memory one for path None.

        journal: also keep every (key, generation) put, in `self.journal` (a Ray worker hands them to the
        driver, whose cache then has them even when the worker's disk is not the driver's).
        """
        self.path = Path(path) if path else None
        self.journal: Optional[list[tuple[str, Generation]]] = [] if journal else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.retries = 0  # statements that found the database locked and were retried
        try:
            self._db = sqlite3.connect(str(self.path) if self.path else ":memory:", timeout=BUSY_TIMEOUT_S,
                                       isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise self._unusable(e) from None
        self._retry(self._setup)

    def _setup(self) -> None:
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if self._db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # with WAL: a killed process never loses a commit
            self._db.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and _locked(e):
                raise
            raise self._unusable(e) from None

    def _unusable(self, e: Exception) -> BenchError:
        if "full" in str(e).lower():
            return BenchError(f"{self.path}: the disk is full ({e}); free space and run again (finished cells are "
                              "kept)")
        return BenchError(f"{self.path}: the generation cache cannot be used ({e}); delete the file (it is only a "
                          "cache: answers are recomputed) or pass another --out")

    def _retry(self, op: Callable[[], T]) -> T:
        """Run `op`, retrying while another process holds the database lock (up to RETRY_FOR_S)."""
        deadline, pause = time.monotonic() + RETRY_FOR_S, 0.05
        while True:
            try:
                return op()
            except sqlite3.OperationalError as e:
                if not _locked(e):
                    raise self._unusable(e) from None
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.path}: the generation cache stayed locked by another process for "
                                     f"{RETRY_FOR_S + BUSY_TIMEOUT_S:.0f} s; wait for the other run to finish and "
                                     "run again (finished cells are kept)") from None
                self.retries += 1
                time.sleep(pause * (1 + random.random()))
                pause = min(pause * 2, 2.0)
            except sqlite3.DatabaseError as e:
                raise self._unusable(e) from None

    @staticmethod
    def key(**parts: object) -> str:
        return sha256_json(parts)

    def get(self, key: str) -> Optional[Generation]:
        def read() -> Optional[tuple]:
            with self._lock:
                return self._db.execute("SELECT value FROM generations WHERE key = ?", (key,)).fetchone()

        row = self._retry(read)
        gen = self._decode(row[0]) if row is not None else None
        if gen is None:
            self.misses += 1
            return None
        self.hits += 1
        return gen

    @staticmethod
    def _decode(value: str) -> Optional[Generation]:
        """A stored generation; None (a miss, rewritten by the next put) for a row this version cannot read."""
        try:
            data: Any = json.loads(value)
            return replace(Generation(**{k: v for k, v in data.items() if k in _GENERATION_FIELDS}), cached=True)
        except (ValueError, TypeError, AttributeError):
            return None

    def put(self, key: str, gen: Generation) -> None:
        value = json.dumps(asdict(replace(gen, cached=False)), ensure_ascii=False)
        if self.journal is not None:
            self.journal.append((key, replace(gen, cached=False)))

        def write() -> None:
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO generations (key, value) VALUES (?, ?)", (key, value))

        self._retry(write)

    def __len__(self) -> int:
        def count() -> int:
            with self._lock:
                return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

        return self._retry(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()
