"""The one place that fills the registries: bench's own plugin packages and any installed third party's.

Registries fill when their package is imported: `bench.metrics` registers metrics, `strategies`
registers strategies, `tasks` registers the built-in task folders. `load_plugins()` imports those
packages by name, then every module named by an entry point of the group `bench.plugins`, so a
package of its own (`pip install bench-legal-tasks`) adds tasks, strategies or metrics with no edit
here. It is idempotent and cheap after the first call.

Imports happen by name (importlib) and only here: the harness (`bench.run`, `bench.config`) asks for
"every strategy" without a static arrow to any strategy module, which keeps the part graph acyclic.
"""

from __future__ import annotations

import importlib
import importlib.metadata

BUILTIN = ("bench.metrics", "strategies", "tasks")
ENTRY_POINT_GROUP = "bench.plugins"
_loaded = False


def load_plugins() -> None:
    """Import the built-in plugin packages and the entry points of group `bench.plugins` (once)."""
    global _loaded
    if _loaded:
        return
    for name in BUILTIN:
        importlib.import_module(name)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
    _loaded = True
