"""The one interface every model backend implements: render a chat, generate, score a continuation.

Strategies never talk to llama.cpp or transformers directly; they call `CellContext.generate`, which
renders with the backend's template, consults the generation cache, and only then calls `generate`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from bench.errors import BenchError
from bench.models.chat import ChatTemplate
from bench.types import Generation, GenParams, GenRequest


class Backend(ABC):
    """A loaded model ready to generate.

    Attributes:
        name: "llama" or "hf" (recorded with every row; compare strategies on the same backend).
        model_id: content hash of the weights plus any adapter: the model part of every cache key.
        template: how chat messages become the prompt string.
        calls: number of real (uncached) generate calls, so tests can assert "zero model work".
        weights_format: the format its weights are served in (f16, q8_0, native Q4_1, fp32, ...), shown
            beside every arm's costs so a reader sees that all arms of a model were served alike.
    """

    name: str = "base"
    weights_format: str = "unknown"

    def __init__(self, model_id: str, template: ChatTemplate):
        self.model_id = model_id
        self.template = template
        self.calls = 0

    def render(self, messages: list[dict]) -> str:
        """The exact prompt string for chat `messages` (the model's template; plain completion for base models)."""
        return self.template.render(messages)

    @abstractmethod
    def generate(self, prompt: str, params: GenParams, seed: int) -> Generation:
        """Generate a completion of `prompt` (already rendered)."""

    def generate_batch(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """Generate every request, in order. Backends that decode several sequences at once override this;
        the result must equal calling `generate` on each request (greedy outputs identical).

        A request that cannot be served on its own (its prompt does not fit the context) does not fail the
        batch: its Generation has finish_reason "error", an empty output and `error` saying why.
        """
        out = []
        for r in requests:
            try:
                out.append(self.generate(r.prompt, r.params, r.seed))
            except BenchError as e:
                out.append(Generation(prompt=r.prompt, output="", prompt_tokens=0, completion_tokens=0, seconds=0.0,
                                      finish_reason="error", error=str(e)))
        return out

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of tokens of `text` under this model's tokenizer."""

    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of log-probabilities of `continuation` given `context` (for multiple-choice probes)."""
        raise NotImplementedError(f"{self.name} backend does not score continuations")

    def close(self) -> None:
        """Free the model (file handles, memory)."""
