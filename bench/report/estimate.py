"""What would fine-tuning a bigger model cost? GPU memory and time from first principles.

bench measures fine-tuning on the machine it runs on (often a CPU and a 135M model); a team wants to
know what their real target (an 8B model on a GPU) needs. `estimate()` adds up the usual terms:

    weights      linear layers at the method's precision (16-bit; 4-bit NF4 with double-quantised
                 constants for QLoRA, 0.5159 bytes/param) + embeddings, head and norms at 16-bit
    trainable    all parameters (full) or r x (d_in + d_out) per adapted matrix (LoRA/QLoRA)
    gradients    one per trainable parameter, in the trainable dtype
    optimizer    AdamW: two fp32 moments (8 bytes) per trainable parameter, 8-bit AdamW: 2 bytes;
                 full fine-tuning in mixed precision also keeps an fp32 master copy (4 bytes)
    activations  with gradient checkpointing: each layer's input (2 bytes x batch x seq x hidden)
                 plus one layer's working set, b*s*h*(34 + 5*a*s/h) bytes (Korthikanti et al. 2022),
                 plus the loss head: bf16 logits and their fp32 copy (6 bytes x batch x seq x vocab)
    overhead     CUDA context 0.5 GiB and 5 % allocator fragmentation

Time is 6 x params FLOPs per token for adapters (forward, recompute, input gradients), 8 x for full
fine-tuning, at a model-FLOPs utilisation (MFU) of the GPU's dense bf16/fp16 peak.

Checked in tests/test_estimate.py against published figures (within +-25 %): seed 003 (Llama-3.1 8B
QLoRA r=64, 8.84 GB peak and 167,772,160 trainable parameters), the QLoRA paper (65B under 48 GB)
and LlamaFactory's table (7B: full 120 GB, LoRA 16 GB, QLoRA 6 GB). Memory is in GiB (2^30 bytes),
which is what torch.cuda.max_memory_reserved()/2**30 and most tables call "GB".
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Optional

from bench.errors import BenchError

GIB = 2**30


@dataclass(frozen=True)
class Arch:
    """The shape of a decoder-only transformer (what the memory terms need)."""

    name: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def matrices(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of each linear matrix of one block (gated MLP, grouped-query attention)."""
        kv = self.kv_heads * self.head_dim
        return {"q_proj": (self.hidden, self.hidden), "k_proj": (self.hidden, kv), "v_proj": (self.hidden, kv),
                "o_proj": (self.hidden, self.hidden), "gate_proj": (self.hidden, self.ffn),
                "up_proj": (self.hidden, self.ffn), "down_proj": (self.ffn, self.hidden)}

    @property
    def linear_params(self) -> int:
        return self.layers * sum(i * o for i, o in self.matrices().values())

    @property
    def other_params(self) -> int:
        emb = self.vocab * self.hidden * (1 if self.tied else 2)
        return emb + self.layers * 2 * self.hidden + self.hidden  # + RMSNorm weights

    @property
    def params(self) -> int:
        return self.linear_params + self.other_params


ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("llama-2-7b", 32, 4096, 11008, 32, 32, 32000),
    Arch("llama-7b", 32, 4096, 11008, 32, 32, 32000),
    Arch("llama-2-13b", 40, 5120, 13824, 40, 40, 32000),
    Arch("llama-13b", 40, 5120, 13824, 40, 40, 32000),
    Arch("llama-30b", 60, 6656, 17920, 52, 52, 32000),
    Arch("llama-65b", 80, 8192, 22016, 64, 64, 32000),
    Arch("llama-2-70b", 80, 8192, 28672, 64, 8, 32000),
    Arch("llama-3-8b", 32, 4096, 14336, 32, 8, 128256),
    Arch("llama-3.1-8b", 32, 4096, 14336, 32, 8, 128256),
    Arch("llama-3-70b", 80, 8192, 28672, 64, 8, 128256),
    Arch("llama-3.1-70b", 80, 8192, 28672, 64, 8, 128256),
    Arch("llama-3.2-1b", 16, 2048, 8192, 32, 8, 128256, tied=True),
    Arch("llama-3.2-3b", 28, 3072, 8192, 24, 8, 128256, tied=True),
    Arch("mistral-7b", 32, 4096, 14336, 32, 8, 32000),
    Arch("qwen2.5-0.5b", 24, 896, 4864, 14, 2, 151936, tied=True),
    Arch("qwen2.5-1.5b", 28, 1536, 8960, 12, 2, 151936, tied=True),
    Arch("qwen2.5-3b", 36, 2048, 11008, 16, 2, 151936, tied=True),
    Arch("qwen2.5-7b", 28, 3584, 18944, 28, 4, 152064),
    Arch("qwen2.5-14b", 48, 5120, 13824, 40, 8, 152064),
    Arch("qwen2.5-32b", 64, 5120, 27648, 40, 8, 152064),
    Arch("qwen2.5-72b", 80, 8192, 29568, 64, 8, 152064),
    Arch("gemma-2-9b", 42, 3584, 14336, 16, 8, 256000, tied=True),
    Arch("gemma3-270m", 18, 640, 2048, 4, 1, 262144, tied=True),
    Arch("smollm2-135m", 30, 576, 1536, 9, 3, 49152, tied=True),
    Arch("smollm2-360m", 32, 960, 2560, 15, 5, 49152, tied=True),
    Arch("smollm2-1.7b", 24, 2048, 8192, 32, 32, 49152, tied=True),
)}
ALIASES = {"llama3-8b": "llama-3-8b", "llama-3-8b-instruct": "llama-3-8b", "llama-3.1-8b-instruct": "llama-3.1-8b",
           "vikhr-llama3.1-8b": "llama-3.1-8b", "mistral-7b-instruct": "mistral-7b", "qwen2.5-7b-instruct": "qwen2.5-7b",
           "llama2-7b": "llama-2-7b", "llama2-13b": "llama-2-13b", "llama2-70b": "llama-2-70b", "guanaco-65b": "llama-65b"}

# dense bf16/fp16 tensor-core peak, TFLOP/s, and memory (GiB)
GPUS = {"t4": (65.0, 15), "v100": (125.0, 32), "a10g": (125.0, 24), "l4": (121.0, 24), "a100": (312.0, 80),
        "a100-40gb": (312.0, 40), "h100": (989.0, 80), "h200": (989.0, 141), "rtx4090": (165.0, 24), "rtx3090": (71.0, 24)}
STRATEGIES = ("lora", "qlora", "full")
OPTIMIZERS = {"adamw": 8.0, "adamw_8bit": 2.0, "paged_adamw_8bit": 2.0, "paged_adamw": 8.0, "sgd": 0.0}


def _key(name: str) -> str:
    k = name.strip().lower().split("/")[-1].replace("_", "-")
    k = re.sub(r"-(hf|instruct|chat|it)$", "", k)
    return ALIASES.get(k, k)


def parse_params(text: str) -> Optional[float]:
    """'8e9', '8B', '7.5b', '135M', '65000000000' -> parameter count; None if it is not a count."""
    t = str(text).strip().replace("_", "").replace(",", "")
    m = re.fullmatch(r"(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmbt]?)", t, flags=re.I)
    if not m:
        return None
    v = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2).lower()]
    return v if v >= 1e6 else None


def resolve_arch(model: str) -> Arch:
    """A known architecture by name, or one scaled from the nearest known size for a raw count."""
    key = _key(model)
    if key in ARCHS:
        return ARCHS[key]
    p = parse_params(model)
    if p is None:
        close = sorted(ARCHS)
        raise BenchError(f"estimate: unknown model {model!r}; give a parameter count (8e9, 8B) or one of: {', '.join(close)}")
    candidates = [a for a in ARCHS.values() if not a.name.startswith(("llama-7b", "llama-13b", "llama-3-"))]
    near = min(candidates, key=lambda a: abs(a.params - p) / a.params)
    per_layer = near.linear_params / near.layers + 2 * near.hidden
    layers = max(1, round((p - near.other_params) / per_layer))
    return replace(near, name=f"{p / 1e9:g}B (shaped like {near.name})", layers=layers)


@dataclass(frozen=True)
class Estimate:
    model: str
    strategy: str
    params: float
    trainable_params: float
    trainable_share: float
    weights_gib: float
    trainable_gib: float
    gradients_gib: float
    optimizer_gib: float
    activations_gib: float
    overhead_gib: float
    total_gib: float
    seconds_per_million_tokens: float
    train_hours: Optional[float]
    assumptions: dict

    def to_dict(self) -> dict:
        return asdict(self)


def lora_trainable(arch: Arch, rank: int, targets: str = "all") -> int:
    mats = arch.matrices()
    names = list(mats) if targets == "all" else ["q_proj", "v_proj"] if targets == "qv" else \
        ["q_proj", "k_proj", "v_proj", "o_proj"]
    return arch.layers * rank * sum(mats[n][0] + mats[n][1] for n in names)


def estimate(
    model: str, strategy: str = "qlora", *, seq_len: int = 512, batch: int = 1, rank: int = 16,
    targets: str = "all", optimizer: Optional[str] = None, gradient_checkpointing: bool = True,
    flash_attention: bool = False, gpu: str = "a100", mfu: float = 0.35, tokens: Optional[float] = None,
) -> Estimate:
    """Peak GPU memory (GiB) and time to fine-tune `model` with `strategy` (lora | qlora | full)."""
    if strategy not in STRATEGIES:
        raise BenchError(f"estimate: --strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if seq_len < 1 or batch < 1 or rank < 1:
        raise BenchError("estimate: --seq-len, --batch and --rank must be positive")
    if gpu not in GPUS:
        raise BenchError(f"estimate: unknown --gpu {gpu!r}; one of {', '.join(GPUS)}")
    optimizer = optimizer or ("adamw" if strategy != "qlora" else "paged_adamw")
    if optimizer not in OPTIMIZERS:
        raise BenchError(f"estimate: unknown --optimizer {optimizer!r}; one of {', '.join(OPTIMIZERS)}")
    a = resolve_arch(model)
    P = float(a.params)

    # weights
    w_bytes = 0.5 + 0.127 / 8 if strategy == "qlora" else 2.0  # NF4 + double-quantised absmax (0.127 bit/param)
    weights = a.linear_params * w_bytes + a.other_params * 2.0
    # trainable parameters, their gradients and optimizer states
    if strategy == "full":
        T = P
        t_bytes, g_bytes, master = 0.0, 2.0, 4.0  # weights already counted; bf16 grads; fp32 master copy
    else:
        T = float(lora_trainable(a, rank, targets))
        # PEFT keeps adapters in fp32; the QLoRA recipe casts them to bf16
        t_bytes = g_bytes = 2.0 if strategy == "qlora" else 4.0
        master = 0.0
    trainable = T * t_bytes
    grads = T * g_bytes
    opt = T * (OPTIMIZERS[optimizer] + master)
    # activations
    tokens_b = batch * seq_len
    attn_scores = 0.0 if flash_attention else 5.0 * a.heads * seq_len / a.hidden
    per_layer = tokens_b * a.hidden * (34.0 + attn_scores)
    if gradient_checkpointing:
        acts = a.layers * tokens_b * a.hidden * 2.0 + per_layer
    else:
        acts = a.layers * per_layer
    acts += tokens_b * a.vocab * 6.0
    if strategy == "qlora":  # one matrix dequantised to bf16 at a time
        acts += max(i * o for i, o in a.matrices().values()) * 2.0
    subtotal = weights + trainable + grads + opt + acts
    overhead = 0.5 * GIB + 0.05 * subtotal
    total = subtotal + overhead

    flops_per_token = (8.0 if strategy == "full" else 6.0) * P
    if not gradient_checkpointing:
        flops_per_token -= 2.0 * P
    eff = mfu * (0.75 if strategy == "qlora" else 1.0)  # dequantisation costs QLoRA about a quarter
    sec_per_m = 1e6 * flops_per_token / (GPUS[gpu][0] * 1e12 * eff)
    return Estimate(
        model=a.name, strategy=strategy, params=P, trainable_params=T, trainable_share=T / P,
        weights_gib=weights / GIB, trainable_gib=trainable / GIB, gradients_gib=grads / GIB, optimizer_gib=opt / GIB,
        activations_gib=acts / GIB, overhead_gib=overhead / GIB, total_gib=total / GIB,
        seconds_per_million_tokens=sec_per_m, train_hours=(tokens / 1e6 * sec_per_m / 3600) if tokens else None,
        assumptions={"seq_len": seq_len, "batch": batch, "rank": rank if strategy != "full" else None,
                     "targets": targets if strategy != "full" else None, "optimizer": optimizer,
                     "gradient_checkpointing": gradient_checkpointing, "flash_attention": flash_attention,
                     "gpu": gpu, "gpu_gib": GPUS[gpu][1], "mfu": eff},
    )


def render(e: Estimate) -> str:
    """A short human-readable breakdown (what `bench estimate` prints and the report embeds)."""
    s = e.assumptions
    fits = "fits" if e.total_gib <= s["gpu_gib"] else "does NOT fit"
    lines = [
        f"{e.model} {e.strategy}: {e.params / 1e9:.2f}B parameters, {e.trainable_params:,.0f} trainable "
        f"({100 * e.trainable_share:.2f} %)",
        f"  peak GPU memory ~ {e.total_gib:.1f} GiB ({fits} one {s['gpu']}, {s['gpu_gib']} GiB)",
        f"    weights {e.weights_gib:.2f} | trainable {e.trainable_gib:.2f} | gradients {e.gradients_gib:.2f} | "
        f"optimizer {e.optimizer_gib:.2f} | activations {e.activations_gib:.2f} | overhead {e.overhead_gib:.2f}",
        f"  time ~ {e.seconds_per_million_tokens / 60:.1f} min per million training tokens on one {s['gpu']} "
        f"(MFU {s['mfu']:.2f})" + (f"; {e.train_hours:.2f} h for the given tokens" if e.train_hours else ""),
        f"  assumptions: seq_len {s['seq_len']}, batch {s['batch']}"
        + (f", rank {s['rank']} on {s['targets']} linear layers" if s["rank"] else "")
        + f", {s['optimizer']}, gradient checkpointing {'on' if s['gradient_checkpointing'] else 'off'}. "
          "An estimate: real peaks vary with kernels and sequence lengths (about +-25 %).",
    ]
    return "\n".join(lines)
