"""Built-in tasks: every folder below this package with a task.yaml registers under its name.

A task folder needs no Python (DESIGN.md); a generated task registers a loader object with the same
two methods as `FolderTask` (`load() -> Task`, `describe() -> dict`).
"""

from pathlib import Path

from bench.registry import TASKS
from bench.taskio import FolderTask

_HERE = Path(__file__).resolve().parent

for _folder in sorted(p for p in _HERE.iterdir() if (p / "task.yaml").is_file()):
    TASKS.add(_folder.name, FolderTask(_folder))
