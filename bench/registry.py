"""The three registries of bench: tasks, strategies and metrics.

Each fills when its package is imported (`tasks`, `strategies`, `bench.metrics`; `bench.plugins` imports
all of them and any third-party plugin). This module imports nothing of the project but `bench.errors`,
so anything may import it. A registry rejects a
duplicate name and answers an unknown one with the closest matches, so a typo on the command line
reads `unknown strategy 'few_shoot'; did you mean few_shot?` instead of a KeyError.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping with duplicate rejection and did-you-mean lookups."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        """Register `obj` under `name`; a name registered twice is a ValueError (two plugins collide)."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form: `@STRATEGIES.register("zero_shot")`."""

        def deco(obj: T) -> T:
            return self.add(name, obj)

        return deco

    def get(self, name: str) -> T:
        """The object registered as `name`; an unknown name is a BenchError with the closest matches."""
        try:
            return self._items[name]
        except KeyError:
            raise BenchError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """`unknown strategy 'few_shoot'; did you mean few_shot?` (or the known names when nothing is close)."""
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(self._items))}"
        plural = {"strategy": "strategies"}.get(self.kind, self.kind + "s")
        return f"unknown {self.kind} {name!r}{hint} (see `bench ls {plural}`)"

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


TASKS: Registry = Registry("task")
STRATEGIES: Registry = Registry("strategy")
METRICS: Registry = Registry("metric")
