"""Moving weights between the two worlds bench uses: GGUF (llama.cpp) and transformers (training).

- `hf_checkpoint(spec, cache_dir)`: a packaged GGUF is dequantized by transformers (30-80 s) into a
  float32 safetensors folder once, cached under `<cache>/models/hf/<gguf sha256>`; it then reloads in
  well under a second with identical logits. transformers marks a GGUF-loaded model as quantized and
  refuses to train or save it, so the marker is cleared before saving.
- `export_gguf(model, src_gguf, out)`: a merged (fine-tuned) model is written back to GGUF so the
  llama.cpp backend can serve it, as the seeds' workflow does. No converter ships in the llama-cpp-python
  wheel or the gguf package, so this is a small exporter over `gguf.GGUFWriter`: it copies every
  metadata key of the source GGUF (architecture, hyperparameters, tokenizer, chat template) and writes
  the new tensors under the source's tensor names, undoing the transforms transformers applied on
  load (llama Q/K row permutation, Gemma's norm offset). It therefore supports exactly the models that
  came from a GGUF; a hub model is evaluated through the transformers backend instead.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from bench.errors import BenchError
from bench.models.resolve import ModelSpec
from bench.models.store import models_dir
from bench.types import GGUF_TYPES

SOURCE_FILE = "bench_source.json"  # written into every converted folder: where the weights came from


# -- GGUF metadata ---------------------------------------------------------------------------------
def gguf_metadata(path: str | Path, keys: Optional[tuple[str, ...]] = None) -> dict[str, Any]:
    """Scalar and string metadata of a GGUF file (token arrays are skipped: they are large)."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(path))
    out: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if keys is not None and name not in keys:
            continue
        if field.types and field.types[0] == GGUFValueType.ARRAY:
            continue
        try:
            out[name] = field.contents()
        except Exception:  # an odd field must not stop a model from loading
            continue
    return out


def gguf_chat_template(path: str | Path) -> Optional[str]:
    return gguf_metadata(path, ("tokenizer.chat_template",)).get("tokenizer.chat_template")


# -- GGUF -> safetensors cache -----------------------------------------------------------------------
def _clear_gguf_quantizer(model: Any) -> None:
    """transformers flags a GGUF-loaded model as quantized (it is dequantized float) and then refuses
    to train or save it; clear the flag."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def hf_checkpoint(spec: ModelSpec, cache_dir: str | Path) -> Path:
    """A transformers folder for `spec`: the folder itself for hf models, the cached conversion for GGUF.

    Hub ids return None-free: they are loaded by id (see `load_pretrained`), so only local kinds land here.
    """
    if spec.kind == "hf":
        if spec.path is None:
            raise BenchError(f"model {spec.name}: a hub id has no local folder; load it by id")
        return spec.path
    if spec.path is None or not spec.sha256:
        raise BenchError(f"model {spec.name}: a GGUF model needs a path and sha256; resolve it with resolve_model")
    target = models_dir(cache_dir) / "hf" / spec.sha256[:24]
    if (target / SOURCE_FILE).is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        t0 = time.perf_counter()
        folder, name = str(spec.path.parent), spec.path.name
        try:
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        except (ValueError, NotImplementedError, KeyError) as e:
            raise BenchError(
                f"model {spec.name}: transformers cannot load this GGUF for training ({str(e).splitlines()[0][:120]}); "
                "pass a transformers folder or hub id instead"
            ) from None
        _clear_gguf_quantizer(model)
        template = gguf_chat_template(spec.path)
        if template and not getattr(tok, "chat_template", None):
            tok.chat_template = template
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        src = {"gguf": str(spec.path), "sha256": spec.sha256, "seconds": round(time.perf_counter() - t0, 2),
               "chat_template": template}
        (tmp / SOURCE_FILE).write_text(json.dumps(src, indent=2), encoding="utf-8")
        del model
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / SOURCE_FILE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def weights_location(spec: ModelSpec, cache_dir: str | Path) -> str:
    """What transformers' from_pretrained takes for `spec`: its hub id, or a local folder (a GGUF's cached conversion)."""
    if spec.kind == "hf" and spec.path is None:
        return str(spec.hf_id)
    return str(hf_checkpoint(spec, cache_dir))


def load_pretrained(spec: ModelSpec, cache_dir: str | Path, **kwargs: Any) -> tuple[Any, Any]:
    """(model, tokenizer) for any ModelSpec; GGUF models go through the safetensors cache.

    kwargs go to `AutoModelForCausalLM.from_pretrained` (dtype, quantization_config, device_map...).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = weights_location(spec, cache_dir)
    kwargs.setdefault("dtype", "auto")
    try:
        tok = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except OSError as e:
        raise BenchError(f"model {spec.name}: cannot load weights ({str(e).splitlines()[0][:160]})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


# -- merged model -> GGUF ----------------------------------------------------------------------------
def _permute(w: Any, n_head: int, n_kv_head: Optional[int]) -> Any:
    """llama.cpp's Q/K row order (the inverse of transformers' reverse permutation on load)."""
    if n_kv_head is not None and n_head != n_kv_head:
        n_head = n_kv_head
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def export_gguf(model: Any, src_gguf: str | Path, out: str | Path, dtype: str = "f16") -> Path:
    """Write a (merged, plain transformers) model as GGUF, reusing the source GGUF's metadata.

    dtype: f16 (default; norms stay f32 as llama.cpp wants), f32, bf16 or q8_0.
    """
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, Keys, LlamaFileType
    from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

    if dtype not in GGUF_TYPES:
        raise BenchError(f"export dtype {dtype!r}: use one of {', '.join(GGUF_TYPES)}")
    src_gguf, out = Path(src_gguf), Path(out)
    reader = GGUFReader(str(src_gguf))
    arch = reader.get_field(Keys.General.ARCHITECTURE).contents()
    if arch not in ("llama", "gemma3", "gemma2", "gemma", "qwen2", "qwen3", "mistral"):
        raise BenchError(f"GGUF export: architecture {arch!r} is not supported; evaluate with eval_backend: hf")
    src_names = {t.name for t in reader.tensors}

    if hasattr(model, "peft_config"):
        raise BenchError("GGUF export needs a merged model; call merge_and_unload() first")
    base = model
    cfg = base.config
    gguf_to_hf = get_gguf_hf_weights_map(base, TensorProcessor())
    hf_to_gguf = {hf: g for g, hf in gguf_to_hf.items()}
    state = base.state_dict()
    n_head = getattr(cfg, "num_attention_heads", None)
    n_kv = getattr(cfg, "num_key_value_heads", n_head)

    tensors: list[tuple[str, Any, Any]] = []
    for hf_name, t in state.items():
        g = hf_to_gguf.get(hf_name)
        if g is None or g not in src_names:  # e.g. a tied lm_head the source never stored
            continue
        w = t.detach().to(torch.float32).cpu().numpy()
        if arch in ("llama", "mistral") and (".attn_q." in g or ".attn_k." in g):
            w = _permute(w, n_head, n_head if ".attn_q." in g else n_kv)
        if arch.startswith("gemma") and "norm.weight" in g:
            w = w + 1.0
        tensors.append((g, w, None))
    missing = src_names - {g for g, _, _ in tensors}
    if missing:
        raise BenchError(f"GGUF export: no weights for {len(missing)} source tensors (e.g. {sorted(missing)[0]})")

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        writer = GGUFWriter(tmp_name, arch)
        for field in reader.fields.values():
            if field.name in (Keys.General.ARCHITECTURE, Keys.General.FILE_TYPE, Keys.General.QUANTIZATION_VERSION) \
                    or field.name.startswith("GGUF."):
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
        ftype = {"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16, "bf16": LlamaFileType.MOSTLY_BF16,
                 "q8_0": LlamaFileType.MOSTLY_Q8_0}[dtype]
        writer.add_file_type(ftype)
        if dtype == "q8_0":
            writer.add_quantization_version(2)
        for name, w, _ in tensors:
            if w.ndim == 1 or dtype == "f32":
                writer.add_tensor(name, w.astype(np.float32))
            elif dtype == "f16":
                writer.add_tensor(name, w.astype(np.float16))
            else:
                from gguf.quants import quantize

                qtype = GGMLQuantizationType.BF16 if dtype == "bf16" else GGMLQuantizationType.Q8_0
                writer.add_tensor(name, quantize(w.astype(np.float32), qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp_name, out)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return out
