"""The on-disk index cache: one folder per index, keyed by everything that shapes the vectors.

Key = sha256 over the corpus content, the embedder (name and package version), the chunking
(window, overlap, title), the retriever kind and the index's build settings. A second run with the
same key loads instead of rebuilding; any change (a doc edited, another embedder, HNSW instead of
flat) gets its own folder. A folder is built under a temporary name and renamed into place, so a
killed build never leaves a half index that a later run would trust.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Sequence

from bench.atomic import write_json
from bench.hashing import sha256_json
from bench.types import Doc

FORMAT = 1
META = "meta.json"


def corpus_sha256(docs: Sequence[Doc]) -> str:
    return sha256_json([[d.id, d.title, d.text] for d in docs])


def index_key(parts: dict) -> str:
    return sha256_json({"format": FORMAT, **parts})[:32]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class IndexCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / META).is_file()

    def discard(self, key: str) -> None:
        shutil.rmtree(self.path(key), ignore_errors=True)

    def write(self, key: str, meta: dict, fill: Callable[[Path], None]) -> Path:
        """Run `fill(tmp_folder)`, add meta.json last, then rename the folder into place."""
        final = self.path(key)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            fill(tmp)
            write_json(tmp / META, meta)
            if final.exists():  # a complete folder without meta.json is debris of an old crash
                if self.has(key):
                    shutil.rmtree(tmp)
                    return final
                shutil.rmtree(final)
            os.rename(tmp, final)
        except FileExistsError:  # another process finished the same index first
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.has(key):
                raise e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final
