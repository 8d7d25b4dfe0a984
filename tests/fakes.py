"""Test doubles for harness logic only: a scripted backend and a pool that hands it out.

Real generation, retrieval and training are tested with the packaged models elsewhere.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Optional

from bench.models.backend import Backend
from bench.models.chat import ChatTemplate
from bench.types import Generation, GenParams


def default_answer(prompt: str) -> str:
    """Deterministic, prompt-dependent text: echoes the last question line."""
    lines = [ln for ln in prompt.strip().splitlines() if ln.strip() and not ln.startswith("###")]
    return lines[-1] if lines else ""


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, model_id: str = "fake-model", answer: Callable[[str], str] = default_answer,
                 fail_after: Optional[int] = None, chat: bool = False):
        template = ChatTemplate("{% for m in messages %}<{{m.role}}>{{m.content}}\n{% endfor %}<assistant>") if chat else ChatTemplate()
        super().__init__(model_id, template)
        self.answer = answer
        self.fail_after = fail_after
        self.prompts: list[str] = []

    def generate(self, prompt: str, params: GenParams, seed: int) -> Generation:
        if self.fail_after is not None and len(self.prompts) >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.prompts.append(prompt)
        text = self.answer(prompt)
        if params.temperature > 0:  # sampled: seed-dependent, like a real sampler
            text = f"{text} {int(hashlib.sha256(f'{seed}'.encode()).hexdigest(), 16) % 3}"
        return Generation(prompt=prompt, output=text, prompt_tokens=len(prompt.split()),
                          completion_tokens=len(text.split()), seconds=0.001)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class FakePool:
    """Stands in for bench.runner.ModelPool."""

    def __init__(self, backend: FakeBackend):
        self.backend = backend
        self.loads = 0

    def backend_name(self, spec):
        return self.backend.name

    def serving(self, spec):
        return {"backend": self.backend.name, "format": self.backend.weights_format}

    def get(self, spec, backend=None):
        self.loads += 1
        return self.backend

    def close(self):
        pass
