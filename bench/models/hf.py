"""transformers backend: any model transformers can load, with an optional peft adapter.

It serves what llama.cpp cannot: hub ids and local transformers folders, unmerged adapters (prefix and
prompt tuning can only run this way), and the packaged GGUFs through their cached safetensors
conversion (bench.convert). Prompts render with the same template as the llama.cpp backend (the GGUF's
own chat template for GGUF models), so both backends see identical prompt strings.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Optional

from bench.errors import BenchError
from bench.hashing import sha256_dir, sha256_json
from bench.models.backend import Backend
from bench.models.chat import ChatTemplate
from bench.models.convert import gguf_chat_template, load_pretrained
from bench.models.resolve import ModelSpec
from bench.types import Generation, GenParams


def template_for(spec: ModelSpec, tokenizer: Any) -> ChatTemplate:
    """The model's chat template (GGUF metadata first, as llama.cpp reads it), or plain for base models."""
    jinja = None
    if spec.chat is not False:
        if spec.kind == "gguf" and spec.path is not None:

            jinja = gguf_chat_template(spec.path)
        jinja = jinja or getattr(tokenizer, "chat_template", None)
        if isinstance(jinja, dict):  # several named templates: take the default
            jinja = jinja.get("default")
    return ChatTemplate(jinja=jinja or None, eos_token=tokenizer.eos_token or "")


class _StopOnStrings:
    """Stops generation once any stop string appears in the newly generated text."""

    def __init__(self, tokenizer: Any, stops: tuple[str, ...], start: int):
        self.tokenizer, self.stops, self.start = tokenizer, stops, start

    def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
        import torch

        text = self.tokenizer.decode(input_ids[0, self.start:], skip_special_tokens=True)
        done = any(s in text for s in self.stops)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class HFBackend(Backend):
    name = "hf"

    def __init__(
        self,
        spec: ModelSpec,
        cache_dir: str | Path,
        threads: int = 0,
        adapter: Optional[str | Path] = None,
        model: Any = None,
        tokenizer: Any = None,
        adapter_hash: Optional[str] = None,
        device: Optional[str] = None,
    ):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if model is None:

            dtype = torch.bfloat16 if self.device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
            model, tokenizer = load_pretrained(spec, cache_dir, dtype=dtype)
            if adapter is not None:
                adapter = Path(adapter)
                if not (adapter / "adapter_config.json").is_file():
                    raise BenchError(f"adapter {adapter}: no adapter_config.json; pass a peft adapter folder")
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(adapter))
                adapter_hash = adapter_hash or sha256_dir(adapter)
            if self.device == "cuda":
                model = model.to("cuda")
        elif tokenizer is None:
            raise BenchError("HFBackend: a preloaded model needs its tokenizer")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.eval()
        self.model, self.tokenizer, self.spec = model, tokenizer, spec
        self.adapter_hash = adapter_hash
        model_id = sha256_json([spec.sha256, adapter_hash]) if adapter_hash else spec.sha256
        super().__init__(model_id, template_for(spec, tokenizer))

    # -- helpers ---------------------------------------------------------------------------------
    def _encode(self, text: str, special: bool = True) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _eos_ids(self) -> list[int]:
        ids = set()
        gc = getattr(self.model, "generation_config", None)
        e = getattr(gc, "eos_token_id", None)
        if isinstance(e, int):
            ids.add(e)
        elif e:
            ids.update(e)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return sorted(ids)

    # -- Backend ---------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self._encode(text, special=False))

    def generate(self, prompt: str, params: GenParams, seed: int) -> Generation:
        import torch
        from transformers import StoppingCriteriaList

        ids = self._encode(prompt)
        input_ids = torch.tensor([ids], device=self.device)
        kwargs: dict = {"max_new_tokens": params.max_new_tokens, "eos_token_id": self._eos_ids(),
                        "pad_token_id": self.tokenizer.pad_token_id}
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                          top_k=params.top_k if params.top_k > 0 else 0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs["stopping_criteria"] = StoppingCriteriaList([_StopOnStrings(self.tokenizer, params.stop, len(ids))])
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        seconds = time.perf_counter() - t0
        new = out[0, len(ids):].tolist()
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finish = "length"
        if new and new[-1] in self._eos_ids():
            finish = "stop"
        cut = [text.find(s) for s in params.stop if s and s in text]
        if cut:
            text = text[: min(cut)]
            finish = "stop"
        return Generation(prompt=prompt, output=text, prompt_tokens=len(ids), completion_tokens=len(new),
                          seconds=seconds, finish_reason=finish)

    def loglikelihood(self, context: str, continuation: str) -> float:
        import torch

        ctx = self._encode(context)
        full = self._encode(context + continuation)
        n_cont = max(1, len(full) - len(ctx))
        x = torch.tensor([full], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=x).logits[0].float()
        logp = torch.log_softmax(logits[:-1], dim=-1)
        targets = x[0, 1:]
        picked = logp.gather(1, targets[:, None])[:, 0]
        total = float(picked[-n_cont:].sum())
        return total if math.isfinite(total) else float("-inf")

    def close(self) -> None:
        self.model = None
