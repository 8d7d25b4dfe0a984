"""Model backends: llama-cpp-python for GGUF generation (the fast path), transformers for everything
that needs weights (HF ids, local folders, training, adapters)."""

from bench.backends.base import Backend

__all__ = ["Backend"]
