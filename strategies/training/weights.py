"""Building the trainable model of a method, saving what it learned, and rebuilding it for evaluation.

- `prepare(model, method, params, total_steps)`: wrap with peft, unfreeze all (full) or the top
  blocks (freeze); LoftQ initialisation is done here on CPU because peft's own LoftQ helpers
  hard-code a CUDA/XPU device.
- `save_trained(model, method, folder)`: peft adapters via save_pretrained (safetensors); full and
  freeze write only the tensors that trained to `weights.safetensors`.
- `load_trained(...)`: base + what was saved, unmerged (the transformers backend) or merged into
  plain float weights (for GGUF export). An adapter trained on a 4-bit base is merged into the
  NF4-round-tripped base weights it actually saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.models.convert import load_pretrained
from strategies.training.methods import Method, apply_freeze, quantization_config

WEIGHTS_FILE = "weights.safetensors"


def count_params(model: Any) -> tuple[int, int]:
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if hasattr(p, "quant_storage") or p.__class__.__name__ == "Params4bit":
            n *= 2  # two 4-bit values per stored byte
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def prepare(model: Any, method: Method, params: Any, total_steps: int, base_weights: Any = None) -> Any:
    if method.kind == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if method.kind == "freeze":
        apply_freeze(model, params.train_top_layers)
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if method.quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        keep_4bit_layers_differentiable(model)
    cfg = method.peft_config(params, model, total_steps)
    model = get_peft_model(model, cfg)
    if method.name == "loftq":
        loftq_init(model, base_weights, getattr(params, "loftq_iter", 1))
    return model


def keep_4bit_layers_differentiable(model: Any) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for its CPU inference kernel.

    bitsandbytes 0.50 on an AVX512-BF16 CPU repacks a Linear4bit's weights the first time it runs in
    eval mode without grad (e.g. the validation pass before training) and from then on uses
    `gemv_4bit`, which has no autograd kernel: backprop through it is silently wrong, and QLoRA's
    validation loss barely moved (6.46 -> 6.38 in 12 steps where LoRA went 6.47 -> 4.44). Training
    must keep the differentiable path.
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _nf4_roundtrip(w: Any) -> Any:
    """The weight as the 4-bit base sees it: NF4 quantize + dequantize (blocksize 64, double quant)."""
    import bitsandbytes.functional as F
    import torch

    q, state = F.quantize_4bit(w.detach().to(torch.float32).contiguous(), quant_type="nf4", compress_statistics=True)
    return F.dequantize_4bit(q, state).to(w.dtype)


def loftq_init(model: Any, base_weights: Any, num_iter: int = 1) -> None:
    """LoftQ: initialise each LoRA pair so that Q(W) + scale * B @ A approximates the float weight W.

    `base_weights` maps module names (as in the unwrapped model) to float weights. Runs on CPU (and GPU).
    """
    import torch

    if base_weights is None:
        raise BenchError("strategy loftq: the float base weights are needed for the LoftQ initialisation")
    done = 0
    for name, module in model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
            continue
        base = module.get_base_layer()
        key = name.split("base_model.model.", 1)[-1] + ".weight"
        w = base_weights.get(key)
        if w is None:
            continue
        w = w.to(torch.float32)
        r = module.r["default"]
        scale = module.scaling["default"]
        target = w.clone()
        for _ in range(num_iter):
            deq = _nf4_roundtrip(target).to(torch.float32)
            res = w - deq
            # only the top r singular triplets are needed: randomized SVD is ~20x faster than a full one
            U, S, V = torch.svd_lowrank(res, q=min(r + 8, *res.shape), niter=2)
            L = U[:, :r] * S[:r].sqrt()
            R = S[:r].sqrt()[:, None] * V[:, :r].T
            target = w - L @ R
        a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
        with torch.no_grad():
            a.copy_(R.to(a.dtype))
            b.copy_((L / scale).to(b.dtype))
        done += 1
    if done == 0:
        raise BenchError("strategy loftq: found no LoRA layers to initialise; check target_modules")


def save_trained(model: Any, method: Method, folder: Path) -> int:
    """Save what trained; returns the bytes written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if method.kind == "peft":
        # save_pretrained would also write a model card from a template file some installs lack
        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        state = get_peft_model_state_dict(model)
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(folder / "adapter_model.safetensors"))
        model.peft_config["default"].save_pretrained(str(folder))
    else:
        from safetensors.torch import save_file

        tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, str(folder / WEIGHTS_FILE))
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _load_base(spec: Any, cache_dir: Path, quantized: bool) -> tuple[Any, Any]:
    import torch


    kwargs: dict = {"dtype": torch.float32}
    if quantized:

        kwargs["quantization_config"] = quantization_config("cuda" if torch.cuda.is_available() else "cpu")
    return load_pretrained(spec, cache_dir, **kwargs)


def load_trained(spec: Any, cache_dir: Path, method: Method, folder: Path, merged: bool) -> tuple[Any, Any]:
    """(model, tokenizer) with the trained weights applied; `merged` gives a plain float model."""
    folder = Path(folder)
    if method.kind == "peft":
        from peft import PeftModel

        quant_base = method.quantized and not merged
        model, tok = _load_base(spec, cache_dir, quant_base)
        if method.quantized and merged:
            _roundtrip_targets(model, folder)
        model = PeftModel.from_pretrained(model, str(folder))
        if merged:
            if not method.mergeable:
                raise BenchError(f"strategy {method.name}: cannot be merged into the base weights; use eval_backend: hf")
            model = model.merge_and_unload()
    else:
        from safetensors.torch import load_file

        model, tok = _load_base(spec, cache_dir, False)
        missing = model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=False)
        if missing.unexpected_keys:
            raise BenchError(f"cached weights in {folder} do not fit the base model; delete that folder")
    model.eval()
    return model, tok


def _roundtrip_targets(model: Any, folder: Path) -> None:
    """Replace the weights of the adapter's target linears by their NF4 round trip (what QLoRA saw)."""
    import json

    import torch

    cfg = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    targets = cfg.get("target_modules") or []
    if isinstance(targets, str):
        targets = None  # a regex or all-linear: every Linear except the head
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.endswith("lm_head"):
            continue
        if targets is not None and name.rsplit(".", 1)[-1] not in targets:
            continue
        with torch.no_grad():
            module.weight.copy_(_nf4_roundtrip(module.weight))
