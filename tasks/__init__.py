"""Built-in tasks: every folder below this package with a task.yaml registers under its name.

A task folder needs no Python (DESIGN.md). Folders that carry a generator manifest.json (facts,
facts_ru, mri_reports_ru) have their files checked against the manifest's sha256 whenever they load
(bench.taskio). A package of its own can register more tasks the same way (bench.plugins).
"""

from pathlib import Path

from bench.registry import TASKS
from bench.taskio import FolderTask

_HERE = Path(__file__).resolve().parent

for _folder in sorted(p for p in _HERE.iterdir() if (p / "task.yaml").is_file()):
    TASKS.add(_folder.name, FolderTask(_folder))
