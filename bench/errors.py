"""User-facing errors.

A `BenchError` is bad input (a malformed task, an unknown name, an impossible config): the CLI prints
its message on one line and exits with code 2, without a traceback. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import errno
import re
from typing import Optional


class BenchError(Exception):
    """Bad input that the user can fix; the message says where and what to do.

    `lines`: what the CLI prints, one problem a line; a plain BenchError is its one-line message.
    """

    exit_code = 2

    @property
    def lines(self) -> list[str]:
        return [str(self)]


class TaskError(BenchError):
    """A task folder that does not follow the DESIGN.md format."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        first = self.problems[0] if self.problems else "invalid task"
        more = f" (+{len(self.problems) - 1} more; run `bench validate` for all)" if len(self.problems) > 1 else ""
        super().__init__(first + more)


class PlanError(BenchError):
    """Strategies that cannot run on a task of the run (rag_oracle without doc_ids, cpt_lora without docs, ...)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))

    @property
    def lines(self) -> list[str]:
        return self.problems


class DiskFull(BenchError):
    """The disk (or a quota or file-size limit) refused a write while a cell ran.

    It stops the run instead of failing one cell: every later cell would fail the same way, each after
    its own minutes of work. Cells finished before it are already saved; the next run resumes.
    """


# What a full disk looks like from code that does not raise a plain OSError: safetensors' Rust writer,
# sqlite, and the GGUF writer's short writes.
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
DISK_FULL_TEXTS = ("no space left on device", "file too large", "disk quota exceeded", "database or disk is full",
                   "disk i/o error")
SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")  # numpy's tofile, which the GGUF writer uses


def disk_full(exc: BaseException) -> Optional[BaseException]:
    """The refused write of that kind that `exc` is, or was raised from; None when it is something else."""
    seen: set[int] = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return e
        if any(t in str(e).lower() for t in DISK_FULL_TEXTS) or SHORT_WRITE.search(str(e)):
            return e
        e = e.__cause__ or e.__context__
    return None
