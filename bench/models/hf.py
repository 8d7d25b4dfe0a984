"""transformers backend: any model transformers can load, with an optional peft adapter.

It serves what llama.cpp cannot: hub ids and local transformers folders, unmerged adapters (prefix and
prompt tuning can only run this way), and the packaged GGUFs through their cached safetensors
conversion (bench.convert). Prompts render with the same template as the llama.cpp backend (the GGUF's
own chat template for GGUF models), so both backends see identical prompt strings.

Generation runs through one decoding loop over transformers' KV cache (`generate` is a batch of one):
prompts are left-padded, each sequence gets its own position ids from its attention mask (so padding
never shifts a sequence; peft's own `generate` shifts prompt-tuning sequences by their padding),
sequences that finish leave the batch at once (a batch does not run until its longest answer ends),
requests with the same prompt share its processing, and each request samples with its own seeded
generator, so its answer does not depend on the requests beside it. Once a batch is down to a few
greedy sequences, each pass also checks a prompt-lookup draft per sequence and keeps what the model's
own argmax agrees with (same answers, fewer memory-bound passes). Prompt-learning adapters enter
at the prefill: prompt tuning's virtual token embeddings go in front of the prompt, prefix tuning's
prefix goes into the cache; every later step runs the base model on that cache.

Log-likelihoods score each continuation token against the model's log-softmax at the position before
it, after dropping the logits of the virtual tokens that prompt tuning prepends; an empty context is
replaced by the start token (BOS, else EOS, as lm-evaluation-harness does), so every continuation
token is scored and none is counted unscored.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from bench.errors import BenchError
from bench.hashing import sha256_dir, sha256_json
from bench.models.backend import Backend
from bench.models.chat import ChatTemplate
from bench.models.convert import SOURCE_FILE, gguf_chat_template, load_pretrained
from bench.models.resolve import ModelSpec
from bench.types import Generation, GenParams, GenRequest

BATCH_SIZE = {"cpu": 64, "cuda": 128}  # sequences decoded at once (CPU: 64 beat 32 and 16, docs/performance.md)
MEMORY_SHARE = 0.25  # of the free memory one batch's KV cache and activations may take
MAX_BATCH_TOKENS = 1 << 17  # padded (prompt + new) tokens of one batch, whatever the free memory
SHARED_PREFIX_MIN = 8  # tokens all prompts of a batch must share before they are run once for all
PAD_SLACK = 1.3  # prompts run in one pass while their padded size stays within this factor of their tokens
SPECULATE_TOKENS = 8  # draft tokens a greedy sequence checks per pass in a batch's tail (prompt lookup; 0 = off)
SPECULATE_NGRAM = 3  # longest n-gram of the recent tokens looked up in the sequence's earlier tokens
SPECULATE_ROWS = 8  # sequences left in a batch at most for speculation (fewer: the step is memory-bound)
SPECULATE_WIDTH = 32  # tokens a speculative pass feeds at most (sequences x (1 + draft))
PREFIX_TYPES = ("PREFIX_TUNING", "CARTRIDGE")  # peft methods whose virtual tokens live in the KV cache
EMBEDDING_PROMPT_TYPES = ("PROMPT_TUNING", "P_TUNING")  # peft methods that prepend virtual token embeddings


@functools.lru_cache(maxsize=16)
def _gguf_template(path: Path) -> Optional[str]:
    """A GGUF's chat template, read once per process (parsing a GGUF's metadata takes seconds)."""
    return gguf_chat_template(path)


def _gguf_template_of(spec: ModelSpec, tokenizer: Any) -> Optional[str]:
    """The GGUF's chat template: as recorded in the safetensors conversion the tokenizer was loaded from
    (bench.models.convert writes it there), else read from the GGUF itself."""
    source = Path(getattr(tokenizer, "name_or_path", "") or ".") / SOURCE_FILE
    if source.is_file():
        try:
            recorded = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = {}
        if recorded.get("sha256") == spec.sha256 and "chat_template" in recorded:
            return recorded["chat_template"]
    return _gguf_template(Path(spec.path))


def template_for(spec: ModelSpec, tokenizer: Any) -> ChatTemplate:
    """The model's chat template (GGUF metadata first, as llama.cpp reads it), or plain for base models."""
    jinja = None
    if spec.chat is not False:
        if spec.kind == "gguf" and spec.path is not None:
            jinja = _gguf_template_of(spec, tokenizer)
        jinja = jinja or getattr(tokenizer, "chat_template", None)
        if isinstance(jinja, dict):  # several named templates: take the default
            jinja = jinja.get("default")
    return ChatTemplate(jinja=jinja or None, eos_token=tokenizer.eos_token or "")


@dataclass
class _Seq:
    """One distinct request in flight: its prompt, limits, sampler, tokens so far and the time charged to it."""

    index: int  # the first request (in the caller's order) it answers
    ids: list[int]
    params: GenParams
    max_new: int
    generator: Any = None  # torch.Generator for sampled requests, None for greedy
    group: list[int] = field(default_factory=list)  # every request it answers (identical requests share it)
    tokens: list[int] = field(default_factory=list)
    output: Optional[str] = None
    finish: str = ""
    seconds: float = 0.0


def _lookup_draft(tokens: list[int], k: int, ngram: int, room: int) -> list[int]:
    """k tokens (at most `room` - 1) that repeat what followed the latest earlier occurrence of the last
    n-gram of `tokens` (the longest of `ngram` .. 1 tokens that occurs earlier); [] when none occurs.

    The repeat runs on into the draft itself: a loop of period p ("0 0 0", "a b a b") drafts k tokens,
    not the p that follow the occurrence."""
    k = min(k, room - 1)  # the pass's own next token is the room's last
    if k < 1:
        return []
    for n in range(ngram, 0, -1):
        tail = tokens[-n:]
        for i in range(len(tokens) - n - 1, -1, -1):
            if tokens[i:i + n] == tail:
                period = len(tokens) - n - i
                seq = list(tokens)
                for _ in range(k):
                    seq.append(seq[-period])
                return seq[len(tokens):]
    return []


class HFBackend(Backend):
    """Generation and scoring through transformers (and peft for unmerged adapters).

    Attributes:
        batch_size: most sequences decoded at once (BATCH_SIZE for the device); a batch is further
            limited to `max_batch_tokens` padded tokens, sized from the free memory at load time.
        speculate: draft tokens a greedy sequence verifies per model pass once at most SPECULATE_ROWS
            are left (prompt lookup decoding, see `_speculative_step`); 0 decodes one token per pass.
    """

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
        batch_size: Optional[int] = None,
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
        self.batch_size = batch_size or BATCH_SIZE.get(self.device.split(":")[0], BATCH_SIZE["cpu"])
        if self.batch_size < 1:
            raise BenchError(f"HFBackend: batch_size must be >= 1, got {self.batch_size}")
        self.virtual_kind, self.n_virtual = self._prompt_learning()
        self.core = model.get_base_model() if hasattr(model, "get_base_model") else model  # the transformers model
        self.base = self.core if self.virtual_kind else model  # what every decoding step runs
        self._keep_last = "logits_to_keep" in inspect.signature(self.core.forward).parameters
        self._sliding_window = bool(getattr(self._config(), "sliding_window", None))
        self.eos_ids = frozenset(self._eos_ids())
        self.max_positions = self._max_positions()
        self.max_batch_tokens = self._batch_tokens()
        self.speculate = SPECULATE_TOKENS
        model_id = sha256_json([spec.sha256, adapter_hash]) if adapter_hash else spec.sha256
        super().__init__(model_id, template_for(spec, tokenizer))

    # -- model facts ----------------------------------------------------------------------------
    def _prompt_learning(self) -> tuple[str, int]:
        """("prefix" | "embedding", number of virtual tokens) for a prompt-learning peft model, else ("", 0)."""
        cfg = getattr(self.model, "active_peft_config", None)
        if cfg is None or not getattr(cfg, "is_prompt_learning", False):
            return "", 0
        kind = getattr(cfg.peft_type, "value", str(cfg.peft_type))
        if kind in PREFIX_TYPES:
            return "prefix", int(cfg.num_virtual_tokens)
        if kind in EMBEDDING_PROMPT_TYPES:
            return "embedding", int(cfg.num_virtual_tokens)
        raise BenchError(f"HFBackend: peft method {kind} is not supported for generation; "
                         f"use one of {', '.join(PREFIX_TYPES + EMBEDDING_PROMPT_TYPES)} or a non-prompt method")

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

    def _config(self) -> Any:
        cfg = self.core.config
        return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg

    def _max_positions(self) -> int:
        cfg = self._config()
        return int(getattr(cfg, "max_position_embeddings", 0) or getattr(self.tokenizer, "model_max_length", 0)
                   or 1 << 20)

    def _batch_tokens(self) -> int:
        """Padded tokens one batch may hold: a share of the free memory over what a token costs (its KV
        entries in every layer, and the widest activations of the prefill), capped at MAX_BATCH_TOKENS."""
        import torch

        cfg = self._config()
        layers = int(getattr(cfg, "num_hidden_layers", 32))
        hidden = int(getattr(cfg, "hidden_size", 4096))
        heads = int(getattr(cfg, "num_attention_heads", 32))
        kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
        wide = int(getattr(cfg, "intermediate_size", 4 * hidden))
        width = next(self.core.parameters()).element_size()
        per_token = width * (2 * layers * kv_heads * head_dim + 4 * hidden + 3 * wide)
        try:
            if self.device.startswith("cuda"):
                free = torch.cuda.mem_get_info()[0]
            else:
                import psutil

                free = psutil.virtual_memory().available
        except (ImportError, RuntimeError, OSError):  # no way to ask: assume a small machine
            free = 4 << 30
        return max(1024, min(MAX_BATCH_TOKENS, int(free * MEMORY_SHARE / per_token)))

    # -- tokens ---------------------------------------------------------------------------------
    def _encode(self, text: str, special: bool = True) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def start_token(self) -> int:
        """The token an empty text starts from: BOS, or EOS for models without one (lm-eval's prefix token)."""
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text, special=False))

    # -- generation -----------------------------------------------------------------------------
    def generate(self, prompt: str, params: GenParams, seed: int) -> Generation:
        """One completion: generate_batch of one; a prompt that does not fit raises BenchError."""
        (gen,) = self.generate_batch([GenRequest(prompt, params, seed)])
        if gen.error:
            raise BenchError(gen.error)
        return gen

    def generate_batch(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """Every request's completion, in order, decoded `batch_size` sequences at a time.

        Requests are sorted by prompt length (little padding) and the answers put back in order. Greedy
        answers equal `generate`'s; sampled ones draw from a generator seeded with the request's seed
        (temperature, then top_k (0 = off), then top_p), so they do not depend on the batch either.
        A sequence ends at an end-of-sequence token (not counted, not shown), at a stop string (the
        text is cut before it; the tokens generated so far are counted) or at max_new_tokens.
        Identical requests (same prompt and params, and seed when sampling) are computed once.
        A prompt that does not fit the model's context fails alone: finish_reason "error" and `error`.
        `seconds` is the request's share of its batch's wall time (each step's time split among the
        sequences in it, the prefill by prompt tokens), so the seconds of a batch add up to its wall time.
        """
        import torch

        results: list[Optional[Generation]] = [None] * len(requests)
        copies: dict[Any, list[int]] = {}
        seqs: list[_Seq] = []
        for i, r in enumerate(requests):
            key = (r.prompt, r.params) if r.params.temperature <= 0 else (r.prompt, r.params, r.seed)
            if key in copies:
                copies[key].append(i)
                continue
            copies[key] = [i]
            ids = self._encode(r.prompt) or [self.start_token()]
            room = self.max_positions - len(ids) - self.n_virtual
            if room < 1:
                results[i] = Generation(prompt=r.prompt, output="", prompt_tokens=len(ids), completion_tokens=0,
                                        seconds=0.0, finish_reason="error",
                                        error=f"prompt of {len(ids)} tokens does not fit the model's "
                                              f"{self.max_positions}-token context; shorten the prompt")
                continue
            gen = None
            if r.params.temperature > 0:
                gen = torch.Generator(device="cpu").manual_seed(int(r.seed) & 0x7FFF_FFFF_FFFF_FFFF)
            seqs.append(_Seq(i, ids, r.params, min(r.params.max_new_tokens, room), gen, group=copies[key]))
        seqs.sort(key=lambda s: (len(s.ids), s.ids))
        with torch.inference_mode():
            for batch in self._batches(seqs):
                self._decode(batch)
        for s in seqs:
            output = s.output if s.output is not None else self.tokenizer.decode(s.tokens, skip_special_tokens=True)
            for i in s.group:
                results[i] = Generation(prompt=requests[i].prompt, output=output, prompt_tokens=len(s.ids),
                                        completion_tokens=len(s.tokens), seconds=s.seconds / len(s.group),
                                        finish_reason=s.finish)
        for group in copies.values():  # copies of a request that failed
            for i in group[1:]:
                if results[i] is None:
                    results[i] = results[group[0]]
        return results  # type: ignore[return-value]

    def _batches(self, seqs: list[_Seq]) -> list[list[_Seq]]:
        """Consecutive runs of (length-sorted) sequences within batch_size and max_batch_tokens."""
        out: list[list[_Seq]] = []
        cur: list[_Seq] = []
        longest = 0
        for s in seqs:
            need = len(s.ids) + s.max_new + self.n_virtual
            width = max(longest, need)
            if cur and (len(cur) >= self.batch_size or width * (len(cur) + 1) > self.max_batch_tokens):
                out.append(cur)
                cur, width = [], need
            cur.append(s)
            longest = width
        if cur:
            out.append(cur)
        return out

    def _decode(self, seqs: list[_Seq]) -> None:
        """Decode one batch to the end; sequences leave the batch as they finish."""
        import torch

        t0 = time.perf_counter()
        prompts: dict[tuple[int, ...], int] = {}
        row_of = [prompts.setdefault(tuple(s.ids), len(prompts)) for s in seqs]
        unique = list(prompts)
        logits, cache, mask = self._prefill(unique)
        shared = [row_of.count(j) for j in range(len(unique))]
        prompt_total = sum(len(p) for p in unique)
        spent = time.perf_counter() - t0
        for s, j in zip(seqs, row_of):
            s.seconds += spent * len(unique[j]) / prompt_total / shared[j]
        if len(unique) < len(seqs):  # requests sharing a prompt: one copy of its cache each
            rows = torch.tensor(row_of, device=self.device)
            cache.batch_select_indices(rows)
            logits, mask = logits[rows], mask[rows]
        active = list(seqs)
        while True:
            t0 = time.perf_counter()
            chosen = self._choose(logits, active).tolist()
            keep = [k for k, (s, tok) in enumerate(zip(active, chosen)) if not self._accept(s, tok)]
            if not keep:
                break
            if len(keep) < len(active):
                rows = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(rows)
                mask = mask[rows]
                active = [active[k] for k in keep]
                chosen = [chosen[k] for k in keep]
            if len(active) <= SPECULATE_ROWS and self._can_crop(cache) and all(s.generator is None for s in active):
                before = active
                active, logits, cache, mask = self._speculative_step(active, chosen, cache, mask)
                spent = time.perf_counter() - t0
                for s in before:
                    s.seconds += spent / len(before)
                if not active:
                    break
                continue
            positions = mask.sum(-1, keepdim=True)
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            out = self.base(input_ids=torch.tensor(chosen, device=self.device)[:, None], attention_mask=mask,
                            position_ids=positions, past_key_values=cache, use_cache=True)
            logits, cache = out.logits[:, -1].float(), out.past_key_values
            spent = time.perf_counter() - t0
            for s in active:
                s.seconds += spent / len(active)
        del cache

    def _can_crop(self, cache: Any) -> bool:
        """Speculation is on and every cache layer is a plain growing one (rejected drafts are cut off its end)."""
        return self.speculate > 0 and all(type(layer).__name__ == "DynamicLayer" for layer in cache.layers)

    def _speculative_step(self, active: list[_Seq], chosen: list[int], cache: Any,
                          mask: Any) -> tuple[list[_Seq], Any, Any, Any]:
        """One pass for a few greedy sequences: feed each one's `chosen` token and its draft, keep the draft
        tokens the model itself would have chosen: (sequences still going, their next logits, cache, mask).

        Prompt lookup decoding: a sequence's draft is what followed the latest earlier occurrence of its
        last n-gram (in its prompt and answer so far; repetitive answers draft well). A draft token is kept
        only while it equals the argmax at its position, and the argmax after the last kept one is the
        next token, so each answer is its greedy answer. Once few sequences are left, a pass costs about
        the same for a few tokens per sequence as for one (the weights are read from memory once either
        way), so the tail of a batch, a few long answers, takes fewer passes. Rows are padded to the
        longest draft; padding and rejected drafts stay in the cache as masked holes (position ids come
        from the mask, so they shift nothing), and the columns no row kept are cut off the cache's end.
        The verifying pass multiplies more rows than a plain step, so, as with batching, a near-tie
        could in principle round the other way.
        """
        import torch

        per_row = max(1, min(self.speculate, SPECULATE_WIDTH // len(active) - 1))
        drafts = [_lookup_draft(s.ids + s.tokens, per_row, min(SPECULATE_NGRAM, len(s.tokens)),
                                s.max_new - len(s.tokens)) for s in active]
        width, span = mask.shape[1], 1 + max(len(d) for d in drafts)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[t, *d] + [pad] * (span - 1 - len(d)) for t, d in zip(chosen, drafts)], device=self.device)
        new = torch.tensor([[1] * (1 + len(d)) + [0] * (span - 1 - len(d)) for d in drafts], dtype=mask.dtype,
                           device=self.device)
        positions = mask.sum(-1, keepdim=True) + torch.arange(span, device=self.device)[None, :]
        out = self.base(input_ids=ids, attention_mask=torch.cat([mask, new], dim=1), position_ids=positions,
                        past_key_values=cache, use_cache=True)
        logits, cache = out.logits.float(), out.past_key_values
        best = logits.argmax(-1).tolist()
        going, nexts = [], []
        for r, (s, d) in enumerate(zip(active, drafts)):
            kept, done = 0, False
            while kept < len(d) and best[r][kept] == d[kept]:
                kept += 1
                if self._accept(s, d[kept - 1]):
                    done = True
                    break
            new[r, 1 + kept:] = 0  # rejected drafts become holes
            if not done:
                going.append(r)
                nexts.append(kept)
        used = 1 + max((int(new[r].sum()) - 1 for r in going), default=0)
        if used < span:
            for layer in cache.layers:
                layer.crop(used - span)
        mask = torch.cat([mask, new[:, :used]], dim=1)
        rows = torch.tensor(going, device=self.device)
        if len(going) < len(active) and going:
            cache.batch_select_indices(rows)
            mask = mask[rows]
        return ([active[r] for r in going], logits[rows, torch.tensor(nexts, device=self.device)] if going else None,
                cache, mask)

    def _prefill(self, prompts: list[tuple[int, ...]]) -> tuple[Any, Any, Any]:
        """Run the (length-sorted) prompts: (last-position logits, KV cache, attention mask over the cache).

        Prompts of very different lengths run in separate passes (padding a short prompt to a long one
        costs the long one's compute), and their caches are joined, left-padded, for decoding together.
        """
        groups = self._length_groups(prompts)
        if len(groups) == 1:
            return self._prefill_group(prompts)
        parts = [self._prefill_group(g) for g in groups]
        return self._join(parts) or self._prefill_group(prompts)

    def _length_groups(self, prompts: list[tuple[int, ...]]) -> list[list[tuple[int, ...]]]:
        """Consecutive runs of the length-sorted prompts whose padded size stays within PAD_SLACK of their tokens
        (one run on sliding-window models, whose caches are not joined)."""
        if self._sliding_window:
            return [prompts]
        groups: list[list[tuple[int, ...]]] = []
        real = 0
        for p in prompts:
            if groups and len(p) * (len(groups[-1]) + 1) <= PAD_SLACK * (real + len(p)):
                groups[-1].append(p)
                real += len(p)
            else:
                groups.append([p])
                real = len(p)
        return groups

    @staticmethod
    def _join(parts: list[tuple[Any, Any, Any]]) -> Optional[tuple[Any, Any, Any]]:
        """One (logits, cache, mask) from several, each cache left-padded to the widest; None when a cache
        layer is not a plain growing one (then the caller runs the prompts together)."""
        import torch
        import torch.nn.functional as F

        caches = [c for _, c, _ in parts]
        if any(type(layer).__name__ != "DynamicLayer" for c in caches for layer in c.layers):
            return None
        width = max(m.shape[1] for _, _, m in parts)
        joined = caches[0]
        for i, layer in enumerate(joined.layers):
            layer.keys = torch.cat([F.pad(c.layers[i].keys, (0, 0, width - c.layers[i].keys.shape[2], 0))
                                    for c in caches])
            layer.values = torch.cat([F.pad(c.layers[i].values, (0, 0, width - c.layers[i].values.shape[2], 0))
                                      for c in caches])
        mask = torch.cat([F.pad(m, (width - m.shape[1], 0)) for _, _, m in parts])
        return torch.cat([lg for lg, _, _ in parts]), joined, mask

    def _prefill_group(self, prompts: list[tuple[int, ...]]) -> tuple[Any, Any, Any]:
        """Run prompts of similar length in one pass: (last-position logits, KV cache, attention mask).

        The tokens every prompt starts with (the system turn, shared instructions) run once and their
        cache is copied to every row; the rest of each prompt follows, left-padded, so a row reads
        [virtual tokens][shared prefix][padding][its own tokens]. Position ids come from the attention
        mask, so padding never shifts a sequence.
        """
        import torch

        common = self._shared_prefix(prompts)
        rows = [p[common:] for p in prompts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[j, width - len(r):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        if not common:
            return self._first_pass(ids, mask)
        head = torch.tensor([prompts[0][:common]], dtype=torch.long, device=self.device)
        _, cache, head_mask = self._first_pass(head, torch.ones_like(head))
        cache.batch_repeat_interleave(len(rows))
        full = torch.cat([head_mask.expand(len(rows), -1), mask], dim=1)
        positions = (full.cumsum(-1) - 1).clamp(min=0)[:, -width:]
        keep = {"logits_to_keep": 1} if self._keep_last else {}
        out = self.base(input_ids=ids, attention_mask=full, position_ids=positions, past_key_values=cache,
                        use_cache=True, **keep)
        return out.logits[:, -1].float(), out.past_key_values, full

    def _shared_prefix(self, prompts: list[tuple[int, ...]]) -> int:
        """Tokens every prompt starts with, worth running once (0 when fewer than SHARED_PREFIX_MIN, for a
        single prompt, or on sliding-window models, whose window counts padding in the middle)."""
        if len(prompts) < 2 or self._sliding_window:
            return 0
        first, n = prompts[0], min(len(p) for p in prompts) - 1  # every row keeps a token of its own
        k = 0
        while k < n and all(p[k] == first[k] for p in prompts):
            k += 1
        return k if k >= SHARED_PREFIX_MIN else 0

    def _first_pass(self, ids: Any, mask: Any) -> tuple[Any, Any, Any]:
        """The model's first pass over left-padded prompts, where prompt-learning adapters put their virtual
        tokens: (last-position logits, KV cache, attention mask over the cache)."""
        import torch

        full = mask
        if self.n_virtual:
            full = torch.cat([mask.new_ones((mask.shape[0], self.n_virtual)), mask], dim=1)
        positions = (full.cumsum(-1) - 1).clamp(min=0)
        keep = {"logits_to_keep": 1} if self._keep_last else {}
        if self.virtual_kind == "embedding":  # virtual token embeddings in front; positions over both
            embeds = self.model.word_embeddings(ids)
            virtual = self.model.get_prompt(batch_size=ids.shape[0]).to(embeds.dtype)
            out = self.base(inputs_embeds=torch.cat([virtual, embeds], dim=1), attention_mask=full,
                            position_ids=positions, use_cache=True, **keep)
        elif self.virtual_kind == "prefix":  # peft puts the prefix into the cache and shifts the positions
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                             use_cache=True, **keep)
        else:
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **keep)
        return out.logits[:, -1].float(), out.past_key_values, full

    def _choose(self, logits: Any, seqs: list[_Seq]) -> Any:
        """The next token of every sequence: argmax for greedy ones, a seeded draw for sampled ones."""
        import torch

        chosen = logits.argmax(-1)
        groups: dict[tuple[float, int, float], list[int]] = {}
        for k, s in enumerate(seqs):
            if s.generator is not None:
                groups.setdefault((s.params.temperature, s.params.top_k, s.params.top_p), []).append(k)
        for (temperature, top_k, top_p), rows in groups.items():
            scores = logits[rows] / temperature
            if 0 < top_k < scores.shape[-1]:
                kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
                scores = scores.masked_fill(scores < kth, -math.inf)
            if top_p < 1.0:
                ordered, order = torch.sort(scores, dim=-1)
                drop = ordered.softmax(-1).cumsum(-1) <= 1 - top_p
                drop[:, -1] = False
                scores = scores.masked_fill(drop.scatter(1, order, drop), -math.inf)
            probs = scores.softmax(-1).cpu()
            for k, p in zip(rows, probs):
                chosen[k] = int(torch.multinomial(p, 1, generator=seqs[k].generator))
        return chosen

    def _accept(self, s: _Seq, tok: int) -> bool:
        """Take a chosen token; True when the sequence is finished (end of sequence, stop string, limit)."""
        if tok in self.eos_ids:
            s.finish = "stop"
            return True
        s.tokens.append(tok)
        if s.params.stop:
            text = self.tokenizer.decode(s.tokens, skip_special_tokens=True)
            cuts = [text.find(x) for x in s.params.stop if x and x in text]
            if cuts:
                s.output, s.finish = text[: min(cuts)], "stop"
                return True
        if len(s.tokens) >= s.max_new:
            s.finish = "length"
            return True
        return False

    # -- scoring --------------------------------------------------------------------------------
    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of log-probabilities of the continuation's tokens given the context."""
        return self.loglikelihood_choices(context, [continuation])[0]

    def loglikelihood_choices(self, context: str, continuations: list[str]) -> list[float]:
        """loglikelihood of each continuation of one context, all in one right-padded forward pass.

        The continuation's tokens are those of context + continuation after the longest common prefix
        with the context's tokens (at least the last token when the continuation merges into the
        context's last token); an empty continuation scores 0.
        """
        import torch

        ctx = self._encode(context)
        lead = [] if ctx else [self.start_token()]
        rows: list[tuple[list[int], int]] = []
        for cont in continuations:
            full = lead + self._encode(context + cont)
            if not cont:
                rows.append((full, len(full)))
                continue
            k = 0
            while k < min(len(ctx), len(full) - len(lead)) and full[len(lead) + k] == ctx[k]:
                k += 1
            rows.append((full, max(1, min(len(lead) + k, len(full) - 1))))
        out = [0.0] * len(rows)
        todo = [i for i, (full, start) in enumerate(rows) if start < len(full)]
        if not todo:
            return out
        width = max(len(rows[i][0]) for i in todo)
        ids = torch.full((len(todo), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(todo), width), dtype=torch.long)
        for j, i in enumerate(todo):
            full = rows[i][0]
            ids[j, : len(full)] = torch.tensor(full, dtype=torch.long)
            mask[j, : len(full)] = 1
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logits = logits[:, logits.shape[1] - width:]  # drop the virtual tokens prompt tuning prepends
            for j, i in enumerate(todo):
                full, start = rows[i]
                logp = torch.log_softmax(logits[j, start - 1: len(full) - 1].float(), dim=-1)
                targets = torch.tensor(full[start:], device=logp.device)
                total = float(logp.gather(1, targets[:, None]).sum())
                out[i] = total if math.isfinite(total) else float("-inf")
        return out

    def close(self) -> None:
        self.model = self.base = self.core = None
