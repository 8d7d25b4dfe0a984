"""What a strategy sees while a cell runs: the task, the config, the seed, the model and the cache.

`CellContext.generate` is the only way a strategy calls a model: it renders the messages with the
model's template, looks the call up in the generation cache (keyed by model and adapter hash,
strategy and params, prompt, decoding, seed and sample index), and records the cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from bench.config import RunConfig
from bench.models.backend import Backend
from bench.models.resolve import ModelSpec
from bench.run.cache import GenerationCache
from bench.seeding import derive_seed
from bench.types import Generation, GenParams, Task


@dataclass
class CellContext:
    task: Task
    config: RunConfig
    seed: int
    model: ModelSpec
    backend: Backend
    cache: GenerationCache
    strategy_key: str  # canonical strategy name + hash of its params
    work_dir: Optional[Path] = None  # the cell's folder: train_log.jsonl and other artifacts go here
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: bool = True
    model_loader: Any = None  # callable(ModelSpec, backend_name) -> Backend, shared across cells

    def gen_params(self, **overrides: Any) -> GenParams:
        """The run's decoding parameters plus the template's stop strings, with overrides."""
        g = self.config.generation
        stop = tuple(dict.fromkeys(g.stop + self.backend.template.stop))
        return replace(g, stop=stop, **overrides)

    def generate(self, messages: list[dict], params: Optional[GenParams] = None, sample: int = 0) -> Generation:
        params = params or self.gen_params()
        prompt = self.backend.render(messages)
        key = self.cache.key(
            model=self.backend.model_id,
            backend=self.backend.name,
            strategy=self.strategy_key,
            prompt=prompt,
            params=params.as_dict(),
            seed=self.seed,
            sample=sample,
        )
        hit = self.cache.get(key)
        if hit is not None:
            return hit

        gen = self.backend.generate(prompt, params, seed=derive_seed(self.seed, "sample", sample))
        self.backend.calls += 1
        self.cache.put(key, gen)
        return gen

    def record_cost(self, section: str, **values: Any) -> None:
        """Add one-off costs (training, index build, ...) to the cell's cost record."""
        self.costs.setdefault(section, {}).update(values)
