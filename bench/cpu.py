"""What CPU this is: model name, the instruction-set flags that decide fast paths, physical cores.

Machines of one kind differ (AMX Xeons, AMD EPYCs with AVX-512 BF16), and what crashes or wins on
one may not on the other, so every choice that depends on the CPU (llama.cpp buffer types, bf16
autocast for training, thread counts) reads it from here, and every benchmark prints `summary()`.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache

FLAGS_OF_INTEREST = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset
    logical: int
    physical: int

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def fast_f16(self) -> bool:
        """f16 weights multiply fast here (F16C conversion with AVX2/AVX-512 FMA: llama.cpp's tinyBLAS kernels)."""
        return "f16c" in self.flags and ("avx2" in self.flags or self.avx512)

    @property
    def bf16(self) -> bool:
        """Native bf16 arithmetic (AVX-512 BF16 or AMX-BF16): bf16 autocast pays off on this CPU."""
        return "avx512_bf16" in self.flags or "amx_bf16" in self.flags

    def summary(self) -> str:
        shown = [f for f in FLAGS_OF_INTEREST if f in self.flags]
        return f"{self.model} ({self.physical} cores / {self.logical} threads; {' '.join(shown) or 'no AVX2'})"


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    model, flags, cores = platform.processor() or platform.machine(), set(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            phys = core = None
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    model = value
                elif key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "physical id":
                    phys = value
                elif key == "core id":
                    core = value
                    cores.add((phys, core))
    except OSError:
        pass
    logical = os.cpu_count() or 1
    return CpuInfo(model=model or "unknown CPU", flags=frozenset(flags), logical=logical, physical=len(cores) or logical)


def physical_cores() -> int:
    """Cores to run one model on (threads beyond physical cores only contend on these machines)."""
    return cpu_info().physical
