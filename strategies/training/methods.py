"""The fine-tuning methods of the seeds, each a small recipe over one shared trainer: the one method table.

A `Method` says how to load the base model (plain float, or 4-bit NF4 for QLoRA and LoftQ), which
parameters train (a peft config, all weights, the top N blocks, or a prompt generator in front of the
frozen model), which training loop runs (`loop`: the shared SFT trainer, the preference loops of DPO and
SPIN, or the adversarial loop of gan_prompt), and whether the result can be merged back into plain
weights (and so exported to GGUF for llama.cpp). `check()` rejects a method the architecture cannot
take before any training starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from bench.errors import BenchError
from strategies.training.params import (
    AdaLoraParams,
    CptLoraParams,
    DpoParams,
    FreezeParams,
    FullParams,
    GanPromptParams,
    IA3Params,
    LoftqParams,
    LoraParams,
    QLoraParams,
    SftDpoParams,
    SpinParams,
    VirtualTokenParams,
)

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class Method:
    """One row of the method table: everything that makes a fine-tuning strategy what it is."""

    name: str  # the strategy's CLI name
    kind: str  # "peft" | "full" | "freeze" | "generator" (a prompt generator before the frozen model)
    params: type  # its frozen Params dataclass (bench.training.params)
    description: str  # one line for `bench ls strategies`
    quantized: bool = False  # base loaded in 4-bit NF4 (QLoRA, LoftQ)
    mergeable: bool = True  # can be folded into the base weights (and exported to GGUF)
    peft_config: Optional[Callable[[Any, Any, int], Any]] = None  # (params, model, total_steps) -> PeftConfig
    loop: str = "sft"  # its training loop (strategies/finetune.py: TRAIN_LOOPS): sft, dpo, spin or gan


def _targets(p: Any) -> Any:
    t = p.target_modules
    return ALL_LINEAR if t == ALL_LINEAR else [s.strip() for s in t.split(",") if s.strip()]


def _lora(p: Any, model: Any, total_steps: int, **extra: Any) -> Any:
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=p.r, lora_alpha=p.alpha, lora_dropout=p.dropout,
                      target_modules=_targets(p), bias="none", **extra)


def _dora(p: Any, model: Any, total_steps: int) -> Any:
    return _lora(p, model, total_steps, use_dora=True)


def _adalora(p: Any, model: Any, total_steps: int) -> Any:
    from peft import AdaLoraConfig, TaskType

    # AdaLoRA prunes ranks from init_r down to r between tinit and total_step - tfinal.
    tinit = max(0, total_steps // 5)
    tfinal = max(0, total_steps // 5)
    if tinit + tfinal >= total_steps:
        tinit, tfinal = 0, 0
    return AdaLoraConfig(task_type=TaskType.CAUSAL_LM, init_r=p.init_r, target_r=p.r, lora_alpha=p.alpha,
                         lora_dropout=p.dropout, target_modules=_targets(p), total_step=max(total_steps, 1),
                         tinit=tinit, tfinal=tfinal, deltaT=1)


def _ia3(p: Any, model: Any, total_steps: int) -> Any:
    from peft import IA3Config, TaskType
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF,
    )
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TM,
    )

    mt = model.config.model_type
    return IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=TM[mt], feedforward_modules=FF[mt])


def _prefix(p: Any, model: Any, total_steps: int) -> Any:
    from peft import PrefixTuningConfig, TaskType

    return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=p.num_virtual_tokens)


def _prompt_tuning(p: Any, model: Any, total_steps: int) -> Any:
    from peft import PromptTuningConfig, PromptTuningInit, TaskType

    return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=p.num_virtual_tokens,
                              prompt_tuning_init=PromptTuningInit.RANDOM)


_TABLE = (
    Method("lora", "peft", LoraParams, "LoRA adapters (r=16, all linear layers) on the train split", peft_config=_lora),
    Method("qlora", "peft", QLoraParams, "LoRA on a 4-bit NF4 base with double quantization (the seeds' QLoRA)",
           quantized=True, peft_config=_lora),
    Method("full", "full", FullParams, "full fine-tuning: every weight trains"),
    Method("dora", "peft", LoraParams, "DoRA: LoRA with a learned magnitude per output (weight-decomposed)",
           peft_config=_dora),
    Method("adalora", "peft", AdaLoraParams, "AdaLoRA: LoRA whose ranks are pruned to a budget while training",
           peft_config=_adalora),
    Method("loftq", "peft", LoftqParams, "LoftQ: LoRA initialised from the SVD of the 4-bit quantization error, "
           "on the 4-bit base", quantized=True, peft_config=_lora),
    Method("ia3", "peft", IA3Params, "IA3: learned scaling vectors on keys, values and the MLP", peft_config=_ia3),
    Method("prefix", "peft", VirtualTokenParams, "prefix tuning: learned key/value prefixes in every layer "
           "(served unmerged)", mergeable=False, peft_config=_prefix),
    Method("prompt_tuning", "peft", VirtualTokenParams, "prompt tuning: learned soft-prompt embeddings "
           "(served unmerged)", mergeable=False, peft_config=_prompt_tuning),
    Method("freeze", "freeze", FreezeParams, "layer freezing: only the top N transformer blocks train"),
    Method("cpt_lora", "peft", CptLoraParams, "continued pretraining: LoRA on the task's docs (every token) plus "
           "the train split (LoRA with recipe docs+qa)", peft_config=_lora),
    Method("dpo", "peft", DpoParams, "DPO: LoRA trained to prefer the reference answer over a worse one (the "
           "task's `rejected`, else the base model's own answer)", peft_config=_lora, loop="dpo"),
    Method("sft_then_dpo", "peft", SftDpoParams, "DPO after one epoch of LoRA SFT on the train split (the SFT "
           "model is the reference)", peft_config=_lora, loop="dpo"),
    Method("spin", "peft", SpinParams, "SPIN self-play: LoRA trained, iteration after iteration, to prefer the "
           "reference answer over its own previous answer", peft_config=_lora, loop="spin"),
    Method("gan_prompt", "generator", GanPromptParams, "prompt generator trained against a discriminator: soft "
           "tokens computed from each input for the frozen model (served unmerged)", mergeable=False, loop="gan"),
)
METHODS: dict[str, Method] = {m.name: m for m in _TABLE}  # the one table: strategies/finetune.py registers each


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise BenchError(f"fine-tuning method {name!r} is unknown; use one of {', '.join(METHODS)}") from None


def check(method: Method, model_type: str, n_layers: int, params: Any) -> None:
    """Reject a method the architecture cannot take (one line, before training)."""
    if method.name == "ia3":
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TM

        if model_type not in TM:
            raise BenchError(f"strategy ia3: peft has no IA3 target modules for architecture {model_type!r}; use lora")
    if method.kind == "freeze" and not 1 <= params.train_top_layers <= n_layers:
        raise BenchError(f"params.freeze.train_top_layers must be between 1 and {n_layers} (the model's "
                         f"layers), got {params.train_top_layers}")


def quantization_config(device: str) -> Any:
    """4-bit NF4 with double quantization; compute dtype bf16 on a CUDA GPU that has it, else float32."""
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.float32
    if device == "cuda" and torch.cuda.is_bf16_supported():
        compute = torch.bfloat16
    elif device == "cuda":
        compute = torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def apply_freeze(model: Any, top: int) -> None:
    """Train only the top `top` transformer blocks and the final norm; everything else is frozen."""
    layers = model.model.layers
    n = len(layers)
    for p in model.parameters():
        p.requires_grad_(False)
    for block in list(layers)[n - top:]:
        for p in block.parameters():
            p.requires_grad_(True)
    norm = getattr(model.model, "norm", None)
    if norm is not None:
        for p in norm.parameters():
            p.requires_grad_(True)
