"""Built-in tasks: every folder below this package with a task.yaml registers under its name.

A task folder needs no Python (DESIGN.md); a generated task registers a loader object with the same
two methods as `FolderTask` (`load() -> Task`, `describe() -> dict`). Folders that carry a generator
manifest.json (facts, facts_ru, mri_reports_ru) register as `VerifiedFolderTask`: their files are
checked against the manifest's sha256 at load. Importing this package also registers the metric
families the built-in tasks use (bench.metric_families).
"""

from pathlib import Path

import bench.metric_families  # noqa: F401  (abstention, hallucination, choice, mri_consistency)
from bench.registry import TASKS
from bench.synth.common import MANIFEST, VerifiedFolderTask
from bench.taskio import FolderTask

_HERE = Path(__file__).resolve().parent

for _folder in sorted(p for p in _HERE.iterdir() if (p / "task.yaml").is_file()):
    _cls = VerifiedFolderTask if (_folder / MANIFEST).is_file() else FolderTask
    TASKS.add(_folder.name, _cls(_folder))
