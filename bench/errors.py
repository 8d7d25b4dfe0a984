"""User-facing errors.

A `BenchError` is bad input (a malformed task, an unknown name, an impossible config): the CLI prints
its message on one line and exits with code 2, without a traceback. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


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
