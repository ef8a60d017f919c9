"""Inference precision: fp32, or bf16 where the hardware computes it natively.

bf16 (8 exponent bits, 8 significand bits) halves the bytes of every activation and weight, and
CPUs with AVX512_BF16 (AMD Zen 4 and later, Intel Cooper Lake) or AMX (Intel Xeon 4th generation,
Sapphire Rapids, and later) run bf16 convolutions at about twice the fp32 rate. Elsewhere PyTorch
emulates bf16 with fp32 arithmetic plus conversions: correct, but slower than plain fp32.

``"auto"`` therefore resolves to bf16 only where it is native: on a CUDA GPU that supports it, or
on a CPU with AVX512_BF16 or AMX; everywhere else to fp32. Asking for bf16 explicitly where it is
emulated works, with a warning that says so.
"""

from __future__ import annotations

import functools
import warnings

import torch

from .cpu import BF16_FLAGS, cpuinfo_flags, torch_bf16_features

#: The choices of every ``--precision`` option.
PRECISIONS = ("auto", "fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@functools.lru_cache(maxsize=1)
def cpu_bf16_features() -> tuple[str, ...]:
    """The CPU's native bf16 features, e.g. ``("avx512_bf16",)``; empty where it has none.

    Asks PyTorch (its oneDNN build checks the same CPUID bits) and falls back to the flags in
    ``/proc/cpuinfo`` where PyTorch lacks the query: the rule of
    :func:`dualsr.deploy.cpu.detect_cpu` too, so its kind is "native-bf16" exactly here.
    """
    found = torch_bf16_features()
    return found if found is not None else _cpuinfo_bf16_flags()


def _cpuinfo_bf16_flags() -> tuple[str, ...]:
    flags = cpuinfo_flags()
    return tuple(f for f in BF16_FLAGS if f in flags)


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bf16 natively (fast), rather than by emulation."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(cpu_bf16_features())
    return False


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``"fp32"`` or ``"bf16"`` for a requested ``precision`` (one of :data:`PRECISIONS`).

    ``"auto"`` is bf16 where the device has it natively, fp32 elsewhere. An explicit ``"bf16"``
    on a device without native bf16 is kept, with a warning that it is emulated and slow.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    native = native_bf16(device)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        warnings.warn(
            f"bf16 is not native on this {torch.device(device).type} (no AVX512_BF16 or AMX; "
            "emulated, typically slower than fp32); use --precision fp32 (or auto) for speed",
            stacklevel=2,
        )
    return precision


def describe_precision(device: str | torch.device = "cpu") -> str:
    """One line for ``dualsr env`` and bug reports: what ``auto`` picks here, and why."""
    device = torch.device(device)
    if device.type == "cpu":
        feats = cpu_bf16_features()
        why = ", ".join(feats) if feats else "no AVX512_BF16 or AMX"
    else:
        why = "native bf16" if native_bf16(device) else "no native bf16"
    return f"{resolve_precision('auto', device)} on {device.type} ({why})"
