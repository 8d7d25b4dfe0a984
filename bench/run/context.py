"""What a strategy sees while a cell runs: the task, the config, the seed, the model and the cache.

`CellContext.generate_many` is the only way a strategy calls a model. For each `Call` it renders the
messages (the model's chat template, or a plain completion prompt when the call's form asks for one),
adds the template's stop strings, and looks the answer up in the generation cache, keyed by

    model and adapter hash, backend, strategy and its params, final prompt, decoding parameters
    (stop strings included), seed, sample index

The misses go to the backend together (`Backend.generate_batch`), in chunks so that a killed run
loses at most one chunk; every answer is cached on its own, so how calls were batched never changes
a key. A call the backend cannot serve (its prompt does not fit the context) comes back with
`error` set and is not cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from bench.config import RunConfig
from bench.errors import BenchError
from bench.logs import terminal
from bench.models.backend import Backend
from bench.models.chat import ChatTemplate
from bench.models.resolve import ModelSpec
from bench.run.cache import GenerationCache
from bench.seeding import derive_seed
from bench.types import Call, Example, Generation, GenParams, GenRequest, Passage, Task

PLAIN = ChatTemplate()  # the plain completion template (### Instruction / ### Response)
CHUNK = 64  # requests handed to a backend at once unless it says (chunk, batch_size); cached after each chunk


@dataclass
class CellContext:
    task: Task
    config: RunConfig
    seed: int
    model: ModelSpec
    backend: Backend
    cache: GenerationCache
    strategy_key: str  # canonical strategy name + hash of its params
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: bool = True
    model_loader: Any = None  # callable(ModelSpec, backend_name) -> Backend, shared across cells
    retrieval: Any = None  # the arm's RetrievalStrategy, so exemplars can get passages the same way
    artifacts: dict[str, Path] = field(default_factory=dict)  # files for the cell's folder (a fine-tune's loss log)

    def gen_params(self, **overrides: Any) -> GenParams:
        """The run's decoding parameters with overrides (the template's stop strings are added per call)."""
        return replace(self.config.generation, **overrides)

    def passages_for(self, example: Example) -> list[Passage]:
        """Passages for any item (an exemplar too) from the arm's retriever; [] when the arm has none."""
        return self.retrieval.retrieve(example, self) if self.retrieval is not None else []

    def template_for(self, form: str) -> ChatTemplate:
        if form == "completion":
            return PLAIN
        if form == "chat" and not self.backend.template.is_chat:
            raise BenchError(f"prompt form chat: model {self.model.name if self.model else '?'} has no chat "
                             "template; use form: auto or completion")
        return self.backend.template

    def request(self, call: Call) -> GenRequest:
        """The rendered prompt, final decoding parameters and seed of one call."""
        template = self.template_for(call.form)
        params = call.params or self.gen_params()
        params = replace(params, stop=tuple(dict.fromkeys(params.stop + template.stop)))
        return GenRequest(template.render(list(call.messages)), params, derive_seed(self.seed, "sample", call.sample))

    def key(self, call: Call, req: GenRequest) -> str:
        return self.cache.key(model=self.backend.model_id, backend=self.backend.name, strategy=self.strategy_key,
                              prompt=req.prompt, params=req.params.as_dict(), seed=self.seed, sample=call.sample)

    def generate_many(self, calls: Sequence[Call], desc: Optional[str] = None) -> list[Generation]:
        """The generation of every call, in order: cached answers first, the rest batched to the backend."""
        reqs = [self.request(c) for c in calls]
        keys = [self.key(c, r) for c, r in zip(calls, reqs)]
        out: list[Optional[Generation]] = [self.cache.get(k) for k in keys]
        todo = [i for i, g in enumerate(out) if g is None]
        bar = None
        if self.progress and desc and todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=desc, leave=False, mininterval=1.0, dynamic_ncols=True, file=terminal())
        try:
            # an endpoint: as many as it serves at once; transformers: its batch size; else CHUNK
            size = getattr(self.backend, "chunk", None) or getattr(self.backend, "batch_size", None) or CHUNK
            for start in range(0, len(todo), size):
                chunk = todo[start:start + size]
                gens = self.backend.generate_batch([reqs[i] for i in chunk])
                for i, gen in zip(chunk, gens):
                    out[i] = gen
                    self.backend.calls += 1
                    if gen.error is None:
                        self.cache.put(keys[i], gen)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return out  # type: ignore[return-value]

    def generate(self, messages: list[dict], params: Optional[GenParams] = None, sample: int = 0,
                 form: str = "auto") -> Generation:
        """One call (SliCK labelling, probes, tests): generate_many of one; a failed call raises BenchError."""
        (gen,) = self.generate_many([Call(tuple(messages), params, sample, form)])
        if gen.error:
            raise BenchError(gen.error)
        return gen

    def record_cost(self, section: str, **values: Any) -> None:
        """Add one-off costs (training, index build, ...) to the cell's cost record."""
        self.costs.setdefault(section, {}).update(values)
