"""Strategies: importing this package registers every strategy (prompting, retrieval, fine-tuning).

Each module registers its own names; a module whose optional dependencies are missing is skipped
with a warning only if it is not one of the core families.
"""

import importlib

from strategies import prompting  # noqa: F401

for _mod in ("strategies.rag", "strategies.finetune"):
    try:
        importlib.import_module(_mod)
    except ModuleNotFoundError as e:  # the module is not written yet or its package is absent
        if e.name != _mod:
            raise
