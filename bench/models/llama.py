"""llama-cpp-python backend: the fast path for every strategy that only generates from a GGUF.

Thread count is set on purpose (default: one per physical core): two cores collapse under
contention, from ~50 to ~3 tokens/s on SmolLM2 when another busy process shares them.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Optional

from bench.errors import BenchError
from bench.models.backend import Backend
from bench.models.chat import ChatTemplate
from bench.models.resolve import ModelSpec
from bench.types import Generation, GenParams


def default_threads() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def open_llama(path: str, threads: int, n_ctx: int, logits_all: bool = False):
    """A llama_cpp.Llama with llama.cpp's extra buffer types (CPU repack/AMX) switched off.

    llama-cpp-python 0.3.36 built natively on these Xeons (AVX-512 + AMX) segfaults in the first
    llama_decode when the extra buffer types are on; the Python constructor has no switch for it, so
    the default model params are patched for the duration of the load. BENCH_LLAMA_EXTRA_BUFTS=1
    turns them back on for machines where they work.
    """
    from llama_cpp import llama as llama_mod

    lowlevel = llama_mod.llama_cpp
    original = lowlevel.llama_model_default_params
    extra = os.environ.get("BENCH_LLAMA_EXTRA_BUFTS", "0") == "1"

    def params():
        p = original()
        p.use_extra_bufts = extra
        return p

    lowlevel.llama_model_default_params = params
    try:
        with _quiet_stderr():
            return llama_mod.Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                                   logits_all=logits_all, verbose=False, seed=0)
    finally:
        lowlevel.llama_model_default_params = original


@contextlib.contextmanager
def _quiet_stderr():
    """llama.cpp prints its load log on fd 2 even with verbose=False; keep the terminal clean."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


class LlamaBackend(Backend):
    name = "llama"

    def __init__(self, spec: ModelSpec, threads: int = 0, n_ctx: int = 4096, model_id: Optional[str] = None):
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise BenchError("backend llama: llama-cpp-python is not installed; run `pip install -e .`") from None
        if spec.kind != "gguf" or spec.path is None:
            raise BenchError(f"--backend llama needs a GGUF model; {spec.name} is a {spec.kind} model (use --backend hf)")
        self.threads = threads or default_threads()
        self.llm = open_llama(str(spec.path), self.threads, n_ctx)
        meta = self.llm.metadata or {}
        jinja = meta.get("tokenizer.chat_template") if spec.chat is not False else None
        eos = _token_text(self.llm, self.llm.token_eos())
        super().__init__(model_id or spec.sha256, ChatTemplate(jinja=jinja, eos_token=eos))
        self.spec = spec
        self.n_ctx = n_ctx

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def generate(self, prompt: str, params: GenParams, seed: int) -> Generation:
        n_prompt = len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        max_tokens = min(params.max_new_tokens, self.n_ctx - n_prompt)
        if max_tokens < 1:
            raise BenchError(f"prompt of {n_prompt} tokens does not fit the {self.n_ctx}-token context")
        t0 = time.perf_counter()
        out = self.llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else (40 if params.temperature > 0 else 1),
            seed=seed,
            stop=list(params.stop) or None,
        )
        seconds = time.perf_counter() - t0
        choice = out["choices"][0]
        usage = out.get("usage", {})
        return Generation(
            prompt=prompt,
            output=choice["text"],
            prompt_tokens=int(usage.get("prompt_tokens", n_prompt)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=seconds,
            finish_reason=str(choice.get("finish_reason") or ""),
        )

    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of log-probs of the continuation tokens (needs a model with logits for every token)."""
        import numpy as np

        ctx_toks = self.llm.tokenize(context.encode("utf-8"), add_bos=True, special=True)
        full = self.llm.tokenize((context + continuation).encode("utf-8"), add_bos=True, special=True)
        cont = full[len(ctx_toks):] or full[-1:]
        if not hasattr(self, "_scorer"):
            self._scorer = open_llama(str(self.spec.path), self.threads, self.n_ctx, logits_all=True)
        s = self._scorer
        s.reset()
        s.eval(full)
        logits = np.asarray(s.scores[: len(full)], dtype=np.float64)
        start = len(full) - len(cont)
        total = 0.0
        for i, tok in enumerate(cont):
            row = logits[start + i - 1]
            m = row.max()
            total += float(row[tok] - m - math.log(np.exp(row - m).sum()))
        return total

    def loglikelihood_choices(self, context: str, continuations: list[str]) -> list[float]:
        """loglikelihood for several continuations of one context, evaluating the context once."""
        import numpy as np

        if not hasattr(self, "_scorer"):
            self._scorer = open_llama(str(self.spec.path), self.threads, self.n_ctx, logits_all=True)
        s = self._scorer
        ctx_toks = self.llm.tokenize(context.encode("utf-8"), add_bos=True, special=True)
        s.reset()
        s.eval(ctx_toks)
        out = []
        for cont in continuations:
            full = self.llm.tokenize((context + cont).encode("utf-8"), add_bos=True, special=True)
            k = 0
            while k < min(len(ctx_toks), len(full)) and full[k] == ctx_toks[k]:
                k += 1
            k = max(1, min(k, len(full) - 1))
            s.n_tokens = k  # keep the shared prefix in the KV cache, evaluate only the rest
            s.eval(full[k:])
            logits = np.asarray(s.scores[: len(full)], dtype=np.float64)
            total = 0.0
            for i in range(k, len(full)):
                row = logits[i - 1]
                m = row.max()
                total += float(row[full[i]] - m - math.log(np.exp(row - m).sum()))
            out.append(total)
        return out

    def close(self) -> None:
        for attr in ("llm", "_scorer"):
            obj = getattr(self, attr, None)
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.close()


def _token_text(llm, token: int) -> str:
    try:
        return llm.detokenize([token], special=True).decode("utf-8", errors="ignore")
    except TypeError:
        return llm.detokenize([token]).decode("utf-8", errors="ignore")
