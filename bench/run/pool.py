"""Models loaded once per run and only when a cell needs one (cached cells never load a model).

A model served by an endpoint (`openai/NAME`) is not loaded: its backend is a client of the server.
"""

from __future__ import annotations

from typing import Optional

from bench.config import RunConfig
from bench.models.backend import Backend
from bench.models.endpoint import EndpointBackend
from bench.models.hf import HFBackend
from bench.models.llama import LlamaBackend
from bench.models.resolve import ModelSpec
from bench.models.serving import cuda_bf16, export_record, resolve_format, served_spec


class ModelPool:
    """Loads each (model, backend) once per run, and only when a cell really needs it."""

    def __init__(self, config: RunConfig):
        self.config = config
        self._loaded: dict[tuple[str, str], Backend] = {}

    def backend_name(self, spec: ModelSpec) -> str:
        if spec.kind == "endpoint":  # plan() rejects any other --backend for it
            return "endpoint"
        if self.config.backend != "auto":
            return self.config.backend
        return "llama" if spec.kind == "gguf" else "hf"

    def serving(self, spec: ModelSpec) -> dict:
        """How `spec` is served in this run (backend and weights format), known without loading it."""
        name = self.backend_name(spec)
        if name == "llama":
            fmt = resolve_format(self.config.serve_format)
            return {"backend": name, "format": fmt, **export_record(spec, self.config.resolved_cache_dir(), fmt)}
        if name == "hf":
            return {"backend": name, "format": "bf16" if cuda_bf16() else "fp32"}
        return {"backend": name, "format": "served by the endpoint"}

    def get(self, spec: ModelSpec, backend: Optional[str] = None) -> Backend:
        """The loaded backend for `spec` (loading it on first use)."""
        name = backend or self.backend_name(spec)
        key = (spec.sha256, name)
        if key not in self._loaded:
            if name == "endpoint":
                self._loaded[key] = EndpointBackend(spec, self.config.endpoint)
            elif name == "llama":
                fmt = resolve_format(self.config.serve_format)
                served, _ = served_spec(spec, self.config.resolved_cache_dir(), fmt)
                backend = LlamaBackend(served, threads=self.config.threads)
                backend.weights_format = fmt
                self._loaded[key] = backend
            else:
                self._loaded[key] = HFBackend(spec, threads=self.config.threads, cache_dir=self.config.resolved_cache_dir())
        return self._loaded[key]

    def close(self) -> None:
        for b in self._loaded.values():
            b.close()
        self._loaded.clear()


class LazyBackend:
    """Stands in for the base model until a strategy first uses it (cached cells never load it)."""

    def __init__(self, pool: ModelPool, spec: ModelSpec):
        self._pool, self._spec, self._real = pool, spec, None

    @property
    def loaded(self) -> bool:
        return self._real is not None

    def _get(self) -> Backend:
        if self._real is None:
            self._real = self._pool.get(self._spec)
        return self._real

    def __getattr__(self, item):
        return getattr(self._get(), item)

    def __setattr__(self, key, value):
        if key.startswith("_"):
            object.__setattr__(self, key, value)
        else:
            setattr(self._get(), key, value)


def backend_name(backend) -> str:
    """The name of the backend that served, without loading a lazy one ("none" when nothing was called)."""
    if isinstance(backend, LazyBackend):
        return backend._real.name if backend.loaded else "none"
    return backend.name
