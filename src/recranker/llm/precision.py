"""Which floating-point format the LLM runs in: bf16 only where the hardware computes it natively.

bf16 halves memory and, on hardware with bf16 units (CUDA GPUs from Ampere on, x86 CPUs with
AVX512-BF16 or AMX), roughly halves the time of the matmuls. A CPU without such units *emulates*
bf16 — measured 3.3x slower than fp32 on an AVX512 Xeon without AVX512-BF16 and ~40x slower on an
AVX2 laptop CPU — so ``auto`` (the default of every LLM stage) picks fp32 there.

The choice is a pure function of the device (the CPU's own flags, and the ISA cap
``ONEDNN_MAX_CPU_ISA`` if one is set, since that decides which instructions the matmuls may use),
never of a timing, so a machine always makes the same choice (and the same bytes). An explicit ``bfloat16`` on a CPU that only emulates it runs,
after one line on stderr saying so and how much slower a matmul is here.
"""

from __future__ import annotations

import functools
import platform
import sys
import time
from pathlib import Path

from recranker.llm.config import Precision

__all__ = ["Precision", "cpu_capability", "resolve", "resolve_bf16"]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):  # x86 / aarch64
            return set(line.split(":", 1)[1].split())
    return set()


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which its matmuls may still use bf16 instructions.
_BF16_ISA_MARKERS = ("BF16", "AMX", "AVX10", "ALL", "DEFAULT")


def onednn_isa_allows_bf16(value: str | None) -> bool:
    """Whether oneDNN, capped at ``value`` (ONEDNN_MAX_CPU_ISA; None = no cap), may use bf16
    instructions. A cap such as AVX2 or AVX512_CORE makes it emulate bf16 even on a CPU that has it."""
    return value is None or not value.strip() or any(m in value.upper() for m in _BF16_ISA_MARKERS)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU's bf16 arithmetic is usable: x86 AVX512-BF16 or AMX (and oneDNN not
    capped below it by ONEDNN_MAX_CPU_ISA, as an imitated AVX2 machine is), aarch64 with BF16."""
    import os

    import torch

    if platform.machine().lower() in {"x86_64", "amd64", "i686"}:
        has = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        # The cap is a statement about the hardware to use, like the CPU itself: honouring it keeps
        # `auto` from choosing a bf16 that oneDNN would then only emulate (measured 2.4 vs 89
        # GFLOP/s fp32 on an EPYC with AVX512-BF16 under ONEDNN_MAX_CPU_ISA=AVX2).
        return has and onednn_isa_allows_bf16(os.environ.get("ONEDNN_MAX_CPU_ISA"))
    return "bf16" in _cpu_flags()  # aarch64 (Graviton 3, Neoverse V1/V2); macOS reads no flags: fp32


def cpu_capability() -> str:
    """What this CPU computes natively, for metrics: e.g. 'AVX512', 'AVX512+BF16', 'AVX2'."""
    import torch

    cap = torch.backends.cpu.get_cpu_capability()
    return f"{cap}+BF16" if cpu_has_native_bf16() else cap


def device_has_native_bf16(device: str) -> bool:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


@functools.cache
def bf16_slowdown(size: int = 256) -> float:
    """How many times slower a bf16 matmul is than an fp32 one on this CPU (one thread, measured)."""
    import torch

    def seconds(dtype) -> float:
        a = torch.randn(size, size, dtype=dtype)
        b = torch.randn(size, size, dtype=dtype)
        with torch.no_grad():
            a @ b
            t0 = time.perf_counter()
            for _ in range(5):
                a @ b
        return time.perf_counter() - t0

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return seconds(torch.bfloat16) / max(seconds(torch.float32), 1e-9)
    finally:
        torch.set_num_threads(threads)


def resolve(requested: str, device: str = "cpu", *, param: str = "dtype") -> str:
    """``auto`` → "bfloat16" where ``device`` computes it natively, else "float32"; an explicit
    value is kept, with one line on stderr when it is bf16 on a CPU that only emulates it."""
    if requested not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"{param}: {requested!r} is not auto, float32 or bfloat16")
    native = device_has_native_bf16(device)
    if requested == "auto":
        return "bfloat16" if native else "float32"
    if requested == "bfloat16" and not native and not device.startswith("cuda"):
        print(f"warning: {param}: bfloat16 on a CPU without bf16 units ({cpu_capability()}) is emulated, "
              f"~{bf16_slowdown():.0f}x slower per matmul than float32 here; `auto` would choose float32",
              file=sys.stderr)
    return requested


def resolve_bf16(requested: bool | str, device: str = "cpu", *, param: str = "bf16") -> bool:
    """The trainers' ``bf16`` knob (true, false or auto) → whether to train with bf16 autocast."""
    if requested == "auto":
        return resolve("auto", device, param=param) == "bfloat16"
    if requested is True:
        return resolve("bfloat16", device, param=param) == "bfloat16"
    return False


def default_device() -> str:
    """The device a process of this machine computes on: its CUDA GPU (LOCAL_RANK's) or the CPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    return "cpu"
