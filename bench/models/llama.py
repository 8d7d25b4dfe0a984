"""llama-cpp-python backend: the fast path for every strategy that only generates from a GGUF.

Single and batched generation run through one decoder (`BatchDecoder`): many sequences decode
together in one `llama_decode` call (llama.cpp's multi-sequence batch, one KV stream per sequence),
each with its own sampler, stop strings and token limit, and requests with the same prompt share its
processing. `generate` is a batch of one, so a greedy answer is the same whichever way its prompt
arrives: with flash attention (masked cells are skipped, not added as zeros) and per-stream KV cells,
the numbers of one sequence do not depend on the sequences beside it (tests/test_llama_batch.py).

What depends on the machine is read from bench.cpu, never guessed: threads (one per physical core;
two cores collapse under contention, from ~50 to ~3 tokens/s on SmolLM2 when another busy process
shares them), llama.cpp's extra buffer types (off where they crash: AMX), and the serving format
(`serving_dtype`). docs/performance.md has the measurements behind each choice.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from bench.cpu import CpuInfo, cpu_info, physical_cores
from bench.errors import BenchError
from bench.models.backend import Backend
from bench.models.chat import ChatTemplate
from bench.models.resolve import ModelSpec
from bench.types import Generation, GenParams, GenRequest

EXTRA_BUFTS_ENV = "BENCH_LLAMA_EXTRA_BUFTS"
KV_BUDGET = 16384  # KV cells (tokens) shared by the sequences of one batch: ~380 MB for SmolLM2-135M
MAX_SEQUENCES = 64  # sequences decoded at once; more gains little on a few cores (docs/performance.md)
N_BATCH = 2048  # tokens handed to one llama_decode call (prompt chunks plus one per decoding sequence)
N_UBATCH = 512  # tokens llama.cpp computes in one graph
SCORE_BATCH = 256  # tokens per llama_decode when scoring (every position's logits come back)
MIN_SHARED_PREFIX = 16  # a prefix all prompts of a batch share (system prompt, instruction) is processed once


# -- choices that follow the machine ---------------------------------------------------------------
def default_threads() -> int:
    """One thread per physical core (threads beyond that only contend on these machines)."""
    return physical_cores()


def extra_bufts_enabled(info: Optional[CpuInfo] = None) -> bool:
    """Whether llama.cpp may place weights in its extra CPU buffer types (weight repacking, AMX).

    Off on CPUs with AMX: llama-cpp-python built natively there compiles the AMX buffer type, and its
    first decode segfaults on these Xeons (docs/performance.md, "AMX"). On elsewhere (the CPU_REPACK
    kernels are safe and at worst unused). BENCH_LLAMA_EXTRA_BUFTS=0/1 overrides the choice.
    """
    env = os.environ.get(EXTRA_BUFTS_ENV, "").strip()
    if env in ("0", "1"):
        return env == "1"
    if env:
        raise BenchError(f"{EXTRA_BUFTS_ENV}={env!r}: set it to 0 (off) or 1 (on), or unset it to decide from the CPU")
    return not (info or cpu_info()).amx


# llama-cpp-python's OpenAI-compatible server, with the extra buffer types chosen as bench chooses them
# (a server on an AMX Xeon must not crash where bench's own backend would not)
_SERVER_LAUNCH = """
import sys
from llama_cpp import llama as lib
from bench.models.llama import extra_bufts_enabled
default = lib.llama_cpp.llama_model_default_params
def params():
    p = default()
    p.use_extra_bufts = extra_bufts_enabled()
    return p
lib.llama_cpp.llama_model_default_params = params
from llama_cpp.server.__main__ import main
sys.argv[0] = "llama_cpp.server"
main()
"""


def server_command(model: str, port: int, threads: int, alias: str = "smollm2", n_ctx: int = 4096) -> list[str]:
    """argv that starts llama-cpp-python's server on 127.0.0.1:`port` for a GGUF file (flash attention on, as
    bench's backend uses it, so greedy answers agree with the in-process backend)."""
    import sys

    return [sys.executable, "-c", _SERVER_LAUNCH, "--model", model, "--model_alias", alias, "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch",
            str(threads), "--flash_attn", "true"]


# -- loading ---------------------------------------------------------------------------------------
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


def _lowlevel():
    """llama_cpp's ctypes module, with its log callback silenced (bench reports errors itself)."""
    try:
        import llama_cpp
        from llama_cpp._logger import set_verbose
    except ImportError:
        raise BenchError("backend llama: llama-cpp-python is not installed; run `pip install -e .`") from None
    set_verbose(False)
    return llama_cpp


def model_params(extra_bufts: Optional[bool] = None):
    """llama.cpp model parameters for CPU serving (extra buffer types as `extra_bufts_enabled` decides)."""
    lib = _lowlevel()
    p = lib.llama_model_default_params()
    p.use_extra_bufts = extra_bufts_enabled() if extra_bufts is None else extra_bufts
    return p


def open_llama(path: str, threads: int, n_ctx: int, logits_all: bool = False, extra_bufts: Optional[bool] = None,
               flash_attn: bool = False):
    """A plain llama_cpp.Llama with the same buffer-type choice as bench's decoder (benchmarks and tests
    compare against it; flash_attn=True computes attention as the decoder does). The constructor has no
    switch for extra buffer types, so the default model params are patched for the duration of the load."""
    lib = _lowlevel()
    from llama_cpp import llama as llama_mod

    original = lib.llama_model_default_params
    chosen = extra_bufts_enabled() if extra_bufts is None else extra_bufts

    def params():
        p = original()
        p.use_extra_bufts = chosen
        return p

    llama_mod.llama_cpp.llama_model_default_params = params
    try:
        with _quiet_stderr():
            return llama_mod.Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                                   logits_all=logits_all, flash_attn=flash_attn, verbose=False, seed=0)
    finally:
        llama_mod.llama_cpp.llama_model_default_params = original


def load_model(path: str, extra_bufts: Optional[bool] = None):
    """The weights of a GGUF file as a llama_cpp LlamaModel (vocabulary, metadata, tensors)."""
    _lowlevel()
    from llama_cpp._internals import LlamaModel

    try:
        with _quiet_stderr():
            return LlamaModel(path_model=str(path), params=model_params(extra_bufts), verbose=False)
    except ValueError as e:
        raise BenchError(f"model {path}: llama.cpp cannot load it ({e}); check that it is a complete GGUF file") from None


# -- the decoder -----------------------------------------------------------------------------------
@dataclass
class _Seq:
    """One request in flight: its sampler, limits, tokens so far and the time charged to it."""

    index: int
    n_prompt: int
    max_new: int
    stops: tuple[str, ...]
    seq: int = -1
    sampler: Any = None
    last: int = -1
    tokens: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)
    output: Optional[str] = None
    finish: str = ""
    seconds: float = 0.0


@dataclass
class _Prompt:
    """A prompt being processed for one or more requests (self-consistency's samples share it)."""

    tokens: list[int]
    members: list[_Seq]
    done: int = 0

    @property
    def leader(self) -> _Seq:
        return self.members[0]


class BatchDecoder:
    """Decodes many sequences of one model at once on llama.cpp's multi-sequence batch.

    Each sequence gets its own KV stream (kv_unified off: a sequence attends only to its own cells,
    so the work per token does not grow with the batch) in a context sized for the batch: n_seq streams
    of the longest prompt + max_new_tokens, as many as fit KV_BUDGET cells (at most MAX_SEQUENCES).
    A sequence that finishes frees its stream for the next waiting request (continuous batching).
    """

    def __init__(self, model: Any, threads: int, n_ctx: int, kv_budget: int = KV_BUDGET,
                 max_sequences: int = MAX_SEQUENCES):
        self.lib = _lowlevel()
        self.model = model
        self.vocab = model.vocab
        self.threads = threads
        self.n_ctx = n_ctx
        self.kv_budget = max(kv_budget, n_ctx)
        self.max_sequences = max_sequences
        self._ctx = None
        self._ctx_shape: Optional[tuple[int, int]] = None
        self.steps: list[tuple[int, int, float]] = []  # the last generate's llama_decode calls: (prompt tokens,
        # decoding sequences, seconds), for benchmarks that separate prompt processing from decoding
        self._batch = self.lib.llama_batch_init(N_BATCH, 0, 1)
        self._batch_open = True
        self._piece = ctypes.create_string_buffer(256)
        model._exit_stack.callback(self.close)  # however the model goes, its contexts are freed before it

    # -- tokens ----------------------------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return self.model.tokenize(text.encode("utf-8"), add_bos, True)

    def start_token(self) -> int:
        """The token a sequence starts from when its text is empty: BOS, or EOS for models without one."""
        bos = self.lib.llama_vocab_bos(self.vocab)
        return bos if bos >= 0 else self.lib.llama_vocab_eos(self.vocab)

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (special tokens as empty unless `special`)."""
        n = self.lib.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, special)
        if n < 0:  # longer than the buffer
            buf = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
            return bytes(buf[:n])
        return bytes(self._piece[:n])

    # -- contexts --------------------------------------------------------------------------------
    def _context(self, n_seq: int, seq_len: int, all_logits: bool = False):
        """A context of n_seq KV streams of seq_len cells each (reused while the shape stays the same)."""
        lib = self.lib
        shape = (n_seq, seq_len, all_logits)
        if self._ctx is not None and self._ctx_shape == shape:
            lib.llama_memory_clear(lib.llama_get_memory(self._ctx), True)
            return self._ctx
        self._free_context()
        p = lib.llama_context_default_params()
        p.n_ctx = n_seq * seq_len
        p.n_seq_max = n_seq
        p.n_batch = N_BATCH
        p.n_ubatch = N_UBATCH
        p.n_threads = p.n_threads_batch = self.threads
        p.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED  # skips masked cells: batch-invariant numbers
        p.kv_unified = False
        p.no_perf = True
        if all_logits:  # logits for every position: a smaller batch keeps the output buffer small (256 x vocab floats)
            p.n_batch = p.n_ubatch = SCORE_BATCH
            p.n_outputs_max_per_seq = 0  # = n_outputs_max = n_batch
        with _quiet_stderr():
            ctx = lib.llama_init_from_model(self.model.model, p)
        if ctx is None:
            raise BenchError(f"llama.cpp could not create a context of {n_seq} x {seq_len} tokens; lower n_ctx")
        if lib.llama_n_ctx_seq(ctx) < seq_len:
            lib.llama_free(ctx)
            raise RuntimeError(f"llama.cpp gave {lib.llama_n_ctx_seq(ctx)} cells per sequence, {seq_len} asked")
        self._ctx, self._ctx_shape = ctx, shape
        return ctx

    def _free_context(self) -> None:
        if self._ctx is not None:
            self.lib.llama_free(self._ctx)
            self._ctx, self._ctx_shape = None, None

    def close(self) -> None:
        self._free_context()
        if self._batch_open:
            self.lib.llama_batch_free(self._batch)
            self._batch_open = False

    # -- samplers --------------------------------------------------------------------------------
    def _sampler(self, params: GenParams, seed: int):
        """Greedy at temperature 0; else temperature, then top_k (0 = off), then top_p, then a draw seeded
        per request (the transformers backend's order and meaning)."""
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if params.temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
            return chain
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
        if params.top_k > 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(params.top_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed % 0xFFFFFFFF))  # 0xFFFFFFFF = random
        return chain

    # -- one batch step --------------------------------------------------------------------------
    def _fill(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """Load (token, position, seq, wants_logits) entries into the llama_batch."""
        b = self._batch
        for i, (tok, pos, seq, out) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = out
        b.n_tokens = len(entries)

    def _decode(self, ctx, entries) -> None:
        self._fill(entries)
        rc = self.lib.llama_decode(ctx, self._batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for a batch of {len(entries)} tokens")

    # -- generation ------------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """Every request's completion, in order; see LlamaBackend.generate_batch for the contract."""
        t_start = time.perf_counter()
        n = len(requests)
        results: list[Optional[Generation]] = [None] * n
        if not n:
            return []
        # requests that would produce the same answer (same prompt and params; same seed when sampling)
        # are computed once
        first: dict[tuple, int] = {}
        copies: dict[int, list[int]] = {}
        prompts: dict[str, _Prompt] = {}
        order: list[_Prompt] = []
        token_cache: dict[str, list[int]] = {}
        seqs: list[_Seq] = []
        seq_len = 1
        for i, r in enumerate(requests):
            key = (r.prompt, r.params, r.seed if r.params.temperature > 0 else None)
            if key in first:
                copies.setdefault(first[key], []).append(i)
                continue
            first[key] = i
            toks = token_cache.get(r.prompt)
            if toks is None:
                toks = token_cache[r.prompt] = self.tokenize(r.prompt) or [self.start_token()]
            room = self.n_ctx - len(toks)
            if room < 1:
                results[i] = Generation(prompt=r.prompt, output="", prompt_tokens=len(toks), completion_tokens=0,
                                        seconds=0.0, finish_reason="error",
                                        error=f"prompt of {len(toks)} tokens does not fit the {self.n_ctx}-token context")
                continue
            s = _Seq(index=i, n_prompt=len(toks), max_new=min(r.params.max_new_tokens, room), stops=r.params.stop)
            seqs.append(s)
            seq_len = max(seq_len, len(toks) + s.max_new)
            group = prompts.get(r.prompt)
            if group is None:
                group = prompts[r.prompt] = _Prompt(tokens=toks, members=[])
                order.append(group)
            group.members.append(s)

        if seqs:
            seq_len = -(-seq_len // 64) * 64
            n_seq = max(1, min(len(seqs), self.kv_budget // seq_len - 1, self.max_sequences))
            # a prompt shared by more requests than there are streams is processed once per n_seq of them
            pending: deque[_Prompt] = deque()
            for g in order:
                for k in range(0, len(g.members), n_seq):
                    pending.append(_Prompt(tokens=g.tokens, members=g.members[k:k + n_seq]))
            self._run(pending, n_seq, seq_len, requests, _shared_prefix([g.tokens for g in order]), seqs)
        self._finish(requests, seqs, results, copies, t_start)
        return results  # type: ignore[return-value]

    def _run(self, pending: deque, n_seq: int, seq_len: int, requests: Sequence[GenRequest], prefix: list[int],
             seqs: list[_Seq]) -> None:
        """Decode every pending prompt group on n_seq streams (plus one holding `prefix`, when there is one)."""
        lib = self.lib
        ctx = self._context(n_seq + (1 if prefix else 0), seq_len)
        mem = lib.llama_get_memory(ctx)
        free = list(range(n_seq))  # a min-heap: new sequences take the lowest free stream (see _compact)
        active: list[_Seq] = []
        filling: list[_Prompt] = []
        self.steps = []
        t_prev = time.perf_counter()
        if prefix:  # the tokens every prompt starts with, processed once on the last stream
            for start in range(0, len(prefix), N_BATCH):
                chunk = range(start, min(len(prefix), start + N_BATCH))
                t0 = time.perf_counter()
                self._decode(ctx, [(prefix[p], p, n_seq, False) for p in chunk])
                self.steps.append((len(chunk), 0, time.perf_counter() - t0))
            now = time.perf_counter()
            for s in seqs:
                s.seconds += (now - t_prev) / len(seqs)
            t_prev = now
        try:
            while pending or active or filling:
                while pending and len(free) >= len(pending[0].members):
                    g = pending.popleft()
                    for s in g.members:
                        s.seq = heapq.heappop(free)
                        r = requests[s.index]
                        s.sampler = self._sampler(r.params, r.seed)
                    if prefix:
                        lib.llama_memory_seq_cp(mem, n_seq, g.leader.seq, -1, -1)
                        g.done = len(prefix)
                    filling.append(g)
                # one token for every decoding sequence, then prompt chunks up to N_BATCH tokens
                active.sort(key=lambda s: s.seq)
                entries = [(s.last, s.n_prompt + len(s.tokens) - 1, s.seq, True) for s in active]
                charge: list[tuple[list[_Seq], int]] = [([s], 1) for s in active]
                finished: list[tuple[_Prompt, int]] = []
                for g in filling:
                    room = N_BATCH - len(entries)
                    if room <= 0:
                        break
                    take = min(room, len(g.tokens) - g.done)
                    last = g.done + take == len(g.tokens)
                    leader = g.leader.seq
                    entries.extend((g.tokens[g.done + j], g.done + j, leader, last and j == take - 1)
                                   for j in range(take))
                    charge.append((g.members, take))
                    g.done += take
                    if last:
                        finished.append((g, len(entries) - 1))
                t0 = time.perf_counter()
                self._decode(ctx, entries)
                self.steps.append((len(entries) - len(active), len(active), time.perf_counter() - t0))
                for out, s in enumerate(list(active)):
                    self._accept(s, lib.llama_sampler_sample(s.sampler, ctx, out))
                for g, out in finished:
                    filling.remove(g)
                    for s in g.members[1:]:  # the samples of one prompt: copy its KV stream, don't recompute it
                        lib.llama_memory_seq_cp(mem, g.leader.seq, s.seq, -1, -1)
                    for s in g.members:
                        active.append(s)
                        self._accept(s, lib.llama_sampler_sample(s.sampler, ctx, out))
                # time: this step's wall time split by the tokens each sequence put into it
                now = time.perf_counter()
                per_token = (now - t_prev) / max(1, len(entries))
                t_prev = now
                for members, k in charge:
                    for s in members:
                        s.seconds += per_token * k / len(members)
                for s in [s for s in active if s.finish]:
                    active.remove(s)
                    lib.llama_memory_seq_rm(mem, s.seq, -1, -1)
                    lib.llama_sampler_free(s.sampler)
                    s.sampler = None
                    heapq.heappush(free, s.seq)
                if not pending and not filling:
                    self._compact(mem, active, free)
        finally:
            for s in active + [s for g in filling for s in g.members] + [s for g in pending for s in g.members]:
                if s.sampler is not None:
                    lib.llama_sampler_free(s.sampler)
                    s.sampler = None

    def _compact(self, mem, active: list[_Seq], free: list[int]) -> None:
        """Move the highest streams into the lowest free ones, so the decoding sequences hold streams 0..n-1.

        llama.cpp splits a batch over separate KV streams into micro-batches of consecutive sequence ids
        (in batch order: hence `active.sort`). Streams freed as answers finish, with no prompt left to
        refill them, would split each step into one micro-batch per run of ids, and every micro-batch
        streams all the weights again: at the tail of a batch, one per sequence. Copying a stream is a few
        MB for SmolLM2 and exact; wider micro-batches can still decide a near-tie differently, since
        llama.cpp's matmuls are not bit-invariant to their width (docs/performance.md).
        """
        lib = self.lib
        while free and active:
            top = max(active, key=lambda s: s.seq)
            if free[0] > top.seq:
                return
            dst = heapq.heappop(free)
            lib.llama_memory_seq_cp(mem, top.seq, dst, -1, -1)
            lib.llama_memory_seq_rm(mem, top.seq, -1, -1)
            heapq.heappush(free, top.seq)
            top.seq = dst

    def _accept(self, s: _Seq, tok: int) -> None:
        """Take a sampled token: end of generation, a stop string, the token limit, or go on."""
        if self.lib.llama_vocab_is_eog(self.vocab, tok):
            s.finish = "stop"
            return
        s.tokens.append(tok)
        s.text += self.piece(tok)
        if s.stops:
            text = s.text.decode("utf-8", errors="ignore")
            cuts = [text.find(x) for x in s.stops if x and x in text]
            if cuts:
                s.output, s.finish = text[: min(cuts)], "stop"
                return
        if len(s.tokens) >= s.max_new:
            s.finish = "length"
            return
        s.last = tok  # decoded next step at position n_prompt + len(tokens) - 1

    def _finish(self, requests, seqs: list[_Seq], results: list, copies: dict[int, list[int]], t_start: float) -> None:
        """Build the Generations; the batch's wall time not charged to a step is shared equally."""
        wall = time.perf_counter() - t_start
        spare = max(0.0, wall - sum(s.seconds for s in seqs)) / max(1, len(seqs))
        for s in seqs:
            r = requests[s.index]
            output = s.output if s.output is not None else s.text.decode("utf-8", errors="ignore")
            share = s.seconds + spare
            group = [s.index] + copies.get(s.index, [])
            for i in group:
                results[i] = Generation(prompt=r.prompt, output=output, prompt_tokens=s.n_prompt,
                                        completion_tokens=len(s.tokens), seconds=share / len(group),
                                        finish_reason=s.finish)
        for i, dups in copies.items():  # copies of an overflowed request
            if results[i] is not None:
                for j in dups:
                    if results[j] is None:
                        results[j] = results[i]

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, context: str, continuations: Sequence[str]) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens after `context` (one sequence, the
        tokens shared with the previous continuation kept in the KV cache).

        A continuation's tokens are those of tokenize(context + continuation) after the longest prefix it
        shares with tokenize(context) (a token merged across the boundary belongs to the continuation).
        Every scored token is conditioned on the tokens before it; when nothing precedes the first one
        (an empty context on a model without BOS), the sequence starts from `start_token()`, as
        lm-evaluation-harness does, so each counted token is really scored. An empty continuation scores 0.
        """
        import numpy as np

        lib = self.lib
        ctx_toks = self.tokenize(context)
        ctx = self._context(1, self.n_ctx, all_logits=True)
        mem = lib.llama_get_memory(ctx)
        n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        cached: list[int] = []
        out: list[float] = []
        for cont in continuations:
            full = self.tokenize(context + cont)
            k = _common_prefix(ctx_toks, full)
            if k == len(full):
                out.append(0.0)
                continue
            if k == 0:
                full, k = [self.start_token()] + full, 1
            if len(full) > self.n_ctx:
                raise BenchError(f"scoring {len(full)} tokens does not fit the {self.n_ctx}-token context; "
                                 "shorten the text or raise n_ctx")
            keep = min(_common_prefix(cached, full), k - 1)
            if not lib.llama_memory_seq_rm(mem, 0, keep, -1):
                lib.llama_memory_clear(mem, True)
                keep = 0
            cached = list(full)
            total = 0.0
            for start in range(keep, len(full), SCORE_BATCH):
                chunk = range(start, min(len(full), start + SCORE_BATCH))
                wanted = [p for p in chunk if k - 1 <= p < len(full) - 1]
                self._decode(ctx, [(full[p], p, 0, k - 1 <= p < len(full) - 1) for p in chunk])
                for p in wanted:  # the logits at position p predict token p + 1
                    row = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, p - start), shape=(n_vocab,))
                    row = row.astype(np.float64)
                    m = row.max()
                    total += float(row[full[p + 1]] - m - math.log(np.exp(row - m).sum()))
            out.append(total)
        return out


def _shared_prefix(prompts: list[list[int]]) -> list[int]:
    """The tokens all (two or more) prompts start with, worth processing once (MIN_SHARED_PREFIX tokens or
    more); every prompt keeps at least one token of its own, whose logits start its answer."""
    if len(prompts) < 2:
        return []
    k = min(_common_prefix(min(prompts), max(prompts)), min(len(p) for p in prompts) - 1)
    return list(prompts[0][:k]) if k >= MIN_SHARED_PREFIX else []


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    k = 0
    for x, y in zip(a, b):
        if x != y:
            break
        k += 1
    return k


class LlamaBackend(Backend):
    """A GGUF model served by llama.cpp: batched generation and continuation scoring on one loaded model."""

    name = "llama"

    def __init__(self, spec: ModelSpec, threads: int = 0, n_ctx: int = 4096, model_id: Optional[str] = None,
                 kv_budget: int = KV_BUDGET, max_sequences: int = MAX_SEQUENCES):
        if spec.kind != "gguf" or spec.path is None:
            raise BenchError(f"--backend llama needs a GGUF model; {spec.name} is a {spec.kind} model (use --backend hf)")
        self.threads = threads or default_threads()
        self.model = load_model(str(spec.path))
        self.decoder = BatchDecoder(self.model, self.threads, n_ctx, kv_budget, max_sequences)
        jinja = self.model.metadata().get("tokenizer.chat_template") if spec.chat is not False else None
        eos = self.decoder.piece(self.decoder.lib.llama_vocab_eos(self.model.vocab), special=True)
        super().__init__(model_id or spec.sha256, ChatTemplate(jinja=jinja, eos_token=eos.decode("utf-8", "ignore")))
        self.spec = spec
        self.n_ctx = n_ctx
        self.batch_size = max_sequences  # sequences decoded at once
        # requests worth handing over in one generate_batch: streams refill as sequences finish, so only a
        # call's tail runs below batch_size; four batches' worth keeps that tail short
        self.chunk = 4 * max_sequences

    def count_tokens(self, text: str) -> int:
        return len(self.decoder.tokenize(text, add_bos=False))

    def generate(self, prompt: str, params: GenParams, seed: int) -> Generation:
        """One completion (a batch of one: the same decoding as generate_batch); a prompt that leaves no
        room in the context raises BenchError."""
        gen = self.decoder.generate([GenRequest(prompt, params, seed)])[0]
        if gen.error:
            raise BenchError(gen.error)
        return gen

    def generate_batch(self, requests: Sequence[GenRequest]) -> list[Generation]:
        """Every request's completion, in order, decoded together.

        Greedy answers equal `generate`'s; sampled ones too (each request has its own sampler seeded
        with its seed). A prompt that leaves no room in the context does not stop the batch: its
        Generation has output "", finish_reason "error" and `error` saying why (a failed item). `seconds` is the request's share of the batch's wall time: each decode step's
        time split by the tokens each sequence put into it (a shared prompt's tokens split among the
        requests that share it), plus an equal share of the setup; the seconds of a batch add up to its
        wall time, so per-query seconds measure compute, not the wall-clock wait of a lone request.
        """
        return self.decoder.generate(list(requests))

    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of log-probs of the continuation's tokens given the context (BatchDecoder.score)."""
        return self.decoder.score(context, [continuation])[0]

    def loglikelihood_choices(self, context: str, continuations: list[str]) -> list[float]:
        """loglikelihood for several continuations of one context, keeping the context in the KV cache."""
        return self.decoder.score(context, continuations)

    def close(self) -> None:
        for obj in (getattr(self, "decoder", None), getattr(self, "model", None)):
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.close()
