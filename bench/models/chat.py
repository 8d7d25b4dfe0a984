"""Turning chat messages into the exact prompt string a model sees.

Chat models carry a Jinja template (in GGUF metadata or the tokenizer config); it is rendered here
the same way transformers renders it, so both backends see identical prompts and share cache keys.
Base models without a template (the packaged Gemma 3 270M) get a plain completion template.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

PLAIN_STOP = ("\n### Instruction", "\n### Input", "\n###")


def _raise(message: str) -> None:
    raise ValueError(message)


@dataclass(frozen=True)
class ChatTemplate:
    """A model's chat template, or None for a base model (plain completion format)."""

    jinja: Optional[str] = None
    bos_token: str = ""
    eos_token: str = ""

    @property
    def is_chat(self) -> bool:
        return bool(self.jinja)

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop strings the decoding must add (chat models stop on their end-of-turn token)."""
        return () if self.is_chat else PLAIN_STOP

    def render(self, messages: list[dict]) -> str:
        if self.is_chat:
            return _render_jinja(self.jinja, messages, self.bos_token, self.eos_token)
        return render_plain(messages)


@lru_cache(maxsize=16)
def _compiled(template: str):
    """The template compiled once (compiling took 5 ms a prompt: 1 s of a 200-prompt run)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(template)


def _render_jinja(template: str, messages: list[dict], bos: str, eos: str) -> str:
    # BOS is left to the tokenizer (llama.cpp and HF both add it when the model asks for it).
    return _compiled(template).render(messages=messages, add_generation_prompt=True, bos_token="", eos_token=eos)


def render_plain(messages: list[dict]) -> str:
    """Alpaca-style completion prompt for base models: ### Instruction / ### Response blocks."""
    parts = []
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    if system:
        parts.append(system.strip() + "\n\n")
    for m in messages:
        if m["role"] == "user":
            parts.append(f"### Instruction:\n{m['content'].strip()}\n\n### Response:\n")
        elif m["role"] == "assistant":
            parts.append(f"{m['content'].strip()}\n\n")
    return "".join(parts)
