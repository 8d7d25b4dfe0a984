"""The generation cache shared by processes: concurrent writers and readers lose nothing and never corrupt it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from bench.errors import BenchError
from bench.run import cache as cache_mod
from bench.run.cache import GenerationCache
from bench.types import Generation
from tests.conftest import ROOT

# One process of the test: writes its own keys and the shared ones, reads the other process's keys as it goes.
WORKER = r"""
import json, random, sys
from bench.run.cache import GenerationCache
from bench.types import Generation
path, me, other, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
cache = GenerationCache(path)
seen = set()
rng = random.Random(me)
for i in range(n):
    cache.put(f"{me}-{i}", Generation(prompt=f"{me} {i}", output=f"out {me} {i}", prompt_tokens=i, completion_tokens=1,
                                      seconds=0.0))
    if i % 5 == 0:
        cache.put(f"shared-{i}", Generation(prompt=f"shared {i}", output=f"shared {i}", prompt_tokens=i,
                                            completion_tokens=1, seconds=0.0))
    j = rng.randrange(n)
    got = cache.get(f"{other}-{j}")
    if got is not None:
        assert got.output == f"out {other} {j}" and got.cached, got
        seen.add(j)
print(json.dumps({"seen": len(seen), "retries": cache.retries, "entries": len(cache)}))
cache.close()
"""


def _gen(i: int) -> Generation:
    return Generation(prompt=f"p{i}", output=f"o{i}", prompt_tokens=i, completion_tokens=1, seconds=0.1)


def test_two_processes_write_and_read_one_cache_concurrently(tmp_path):
    path, n = tmp_path / "cache" / "generations.sqlite", 400
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), me, other, str(n)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me, other in (("a", "b"), ("b", "a"))]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    stats = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert sum(s["seen"] for s in stats) > 0, stats  # the runs did overlap: each read what the other wrote
    cache = GenerationCache(path)
    assert len(cache) == 2 * n + n // 5  # no entry lost
    for me in ("a", "b"):
        for i in range(n):
            got = cache.get(f"{me}-{i}")
            assert got is not None and got.output == f"out {me} {i}" and got.prompt_tokens == i
    assert all(cache.get(f"shared-{i}").output == f"shared {i}" for i in range(0, n, 5))
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_locked_database_is_retried_until_the_lock_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "generations.sqlite"
    cache = GenerationCache(path)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    holder.execute("INSERT INTO generations (key, value) VALUES ('other', '{}')")
    release = threading.Timer(0.6, lambda: holder.execute("COMMIT"))
    release.start()
    t0 = time.monotonic()
    cache.put("k", _gen(1))
    assert time.monotonic() - t0 >= 0.5 and cache.retries > 0
    release.join()
    assert cache.get("k").output == "o1" and len(cache) == 2


def test_a_lock_that_never_goes_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(cache_mod, "RETRY_FOR_S", 0.3)
    path = tmp_path / "generations.sqlite"
    cache = GenerationCache(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(BenchError, match=r"generations.sqlite: the generation cache stayed locked by another process"):
        cache.put("k", _gen(1))
    holder.execute("ROLLBACK")
    cache.put("k", _gen(1))
    assert len(cache) == 1


def test_a_file_that_is_not_a_database_is_named(tmp_path):
    path = tmp_path / "generations.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BenchError, match=r"generations.sqlite: the generation cache cannot be used .*delete") as e:
        GenerationCache(path)
    assert "\n" not in str(e.value)


def test_unreadable_rows_are_misses_and_get_rewritten(tmp_path):
    path = tmp_path / "generations.sqlite"
    cache = GenerationCache(path)
    raw = sqlite3.connect(path, isolation_level=None)
    raw.executemany("INSERT INTO generations VALUES (?, ?)",
                    [("garbage", "not json"), ("list", "[1]"), ("partial", '{"prompt": "p"}')])
    future = {**json.loads(json.dumps(_gen(3).__dict__)), "field_of_a_newer_bench": 1}
    raw.execute("INSERT INTO generations VALUES ('newer', ?)", (json.dumps(future),))
    assert [cache.get(k) for k in ("garbage", "list", "partial")] == [None, None, None] and cache.misses == 3
    assert cache.get("newer").output == "o3"
    cache.put("garbage", _gen(4))
    assert cache.get("garbage").output == "o4"


def test_in_memory_cache_still_works():
    cache = GenerationCache(None)
    cache.put("k", _gen(1))
    assert cache.get("k").cached and cache.get("missing") is None and (cache.hits, cache.misses) == (1, 1)
