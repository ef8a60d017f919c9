"""What the CPU can do: its vector features, its kind, and its nominal arithmetic limit.

:func:`detect_cpu` reads the model name, the instruction-set flags that matter for dualsr's
inference paths, the number of logical CPUs and the clock (Linux: ``/proc/cpuinfo`` and
``cpufreq``; elsewhere PyTorch's ``get_cpu_capability()``). :func:`cpu_kind` sorts a CPU into
the kinds whose fastest path differs (``docs/deployment.md``, "How auto picks a backend"), and
:func:`physical_limit` is the nominal multiply-add rate that the ``dualsr bench`` ceilings are
shown beside.

The native-bf16 flags follow the same rule as :func:`dualsr.deploy.precision.cpu_bf16_features`
(PyTorch's oneDNN query first, ``/proc/cpuinfo`` where PyTorch lacks it), so ``cpu_kind`` is
``"native-bf16"`` exactly where ``--precision auto`` picks bf16.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import dataclass
from typing import NamedTuple

#: The flags dualsr looks at, in the order they are reported.
RELEVANT_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_bf16",
    "amx_bf16",
    "avx512_vnni",
    "avx_vnni",
)
#: The flags that mean native bf16 arithmetic.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: PyTorch's CPU capability -> the flags it implies (where /proc/cpuinfo is not available).
CAPABILITY_FLAGS = {
    "AVX512": ("avx2", "fma", "avx512f"),
    "AVX2": ("avx2", "fma"),
}
#: FMA units per core assumed by :func:`physical_limit` (most x86 server and desktop cores).
FMA_UNITS = 2


@dataclass(frozen=True)
class CpuInfo:
    """The facts about a CPU that decide which inference path is fastest.

    Attributes:
        model: the model name (``/proc/cpuinfo``'s "model name", else the platform's).
        flags: the :data:`RELEVANT_FLAGS` it has, in that order.
        logical_cpus: logical CPUs (hardware threads) the OS reports.
        clock_ghz: the clock, if known: ``cpuinfo_max_freq`` from cpufreq, else "cpu MHz"
            (which may be the base clock, or a momentary one).
        clock_source: where ``clock_ghz`` came from ("cpuinfo_max_freq", "cpu MHz" or "").
    """

    model: str
    flags: tuple[str, ...]
    logical_cpus: int
    clock_ghz: float | None = None
    clock_source: str = ""

    def has(self, flag: str) -> bool:
        """Whether the CPU has ``flag`` (one of :data:`RELEVANT_FLAGS`)."""
        return flag in self.flags

    def describe(self) -> str:
        """One line: model, kind, flags, CPUs, clock."""
        clock = f", {self.clock_ghz:.2f} GHz ({self.clock_source})" if self.clock_ghz else ""
        flags = " ".join(self.flags) or "none of " + " ".join(RELEVANT_FLAGS)
        return (
            f"{self.model}; kind {cpu_kind(self)}; flags {flags}; "
            f"{self.logical_cpus} logical cpus{clock}"
        )


def parse_cpuinfo(text: str) -> tuple[str, set[str], float | None]:
    """(model name, all flags, first "cpu MHz" in GHz) from the text of ``/proc/cpuinfo``."""
    model, flags, mhz = "", set(), None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "cpu MHz" and mhz is None:
            with contextlib.suppress(ValueError):
                mhz = float(value)
    return model, flags, (mhz / 1000 if mhz else None)


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def cpuinfo_flags() -> set[str]:
    """Every flag in ``/proc/cpuinfo`` (an empty set where there is none, e.g. not Linux)."""
    if platform.system() != "Linux":
        return set()
    text = _read("/proc/cpuinfo")
    return parse_cpuinfo(text)[1] if text else set()


def torch_bf16_features() -> tuple[str, ...] | None:
    """The native bf16 flags by PyTorch's oneDNN query (the same CPUID bits and the OS's
    permission for AMX), or None where this PyTorch build cannot answer."""
    import torch  # here, not at the top: the rest of this module is read without PyTorch

    found: list[str] = []
    checks = (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_bf16", "_is_amx_tile_supported"))
    asked = False
    for name, fn in checks:
        query = getattr(torch.cpu, fn, None)
        if query is None:
            continue
        try:
            if query():
                found.append(name)
        except Exception:  # an old or unusual build: no answer
            return None
        asked = True
    return tuple(found) if asked else None


@functools.lru_cache(maxsize=1)
def detect_cpu() -> CpuInfo:
    """This machine's :class:`CpuInfo` (computed once per process)."""
    model, flags, clock, source = "", set(), None, ""
    text = _read("/proc/cpuinfo") if platform.system() == "Linux" else None
    if text:
        model, flags, clock = parse_cpuinfo(text)
        source = "cpu MHz" if clock else ""
        max_khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        try:
            if max_khz and int(max_khz.strip()) > 0:
                clock, source = int(max_khz.strip()) / 1e6, "cpuinfo_max_freq"
        except ValueError:
            pass
    else:
        import torch

        flags = set(CAPABILITY_FLAGS.get(torch.backends.cpu.get_cpu_capability(), ()))
    bf16 = torch_bf16_features()
    if bf16 is not None:  # PyTorch's answer decides, as in precision.cpu_bf16_features
        flags = (flags - set(BF16_FLAGS)) | set(bf16)
    return CpuInfo(
        model=model or platform.processor() or platform.machine() or "unknown CPU",
        flags=tuple(f for f in RELEVANT_FLAGS if f in flags),
        logical_cpus=os.cpu_count() or 1,
        clock_ghz=clock,
        clock_source=source,
    )


def cpu_kind(info: CpuInfo) -> str:
    """``"native-bf16"`` (AVX512_BF16 or AMX), ``"avx512"``, ``"avx2"`` or ``"other"``."""
    if any(info.has(f) for f in BF16_FLAGS):
        return "native-bf16"
    if info.has("avx512f"):
        return "avx512"
    if info.has("avx2"):
        return "avx2"
    return "other"


class PhysicalLimit(NamedTuple):
    """A nominal multiply-add rate (None where it cannot be stated) and how it was computed."""

    macs_per_s: float | None
    assumptions: str


def physical_limit(info: CpuInfo, threads: int, precision: str = "fp32") -> PhysicalLimit:
    """The nominal multiply-adds per second of ``threads`` cores in ``precision``.

    cores x FMA units (2 per core) x SIMD lanes x clock, one multiply-add per lane and cycle.
    Lanes come from the widest vector ISA: 8 fp32 lanes with AVX2, 16 with AVX-512; bf16 has
    twice the fp32 lanes with AVX512_BF16 (emulated bf16 computes in fp32: the fp32 lanes);
    int8 four times with VNNI (AVX512_VNNI or AVX_VNNI), twice without. Each thread counts as
    a core (SMT siblings share their core's FMA units, so with more threads than physical
    cores this overestimates). It is a nominal figure: some cores have narrower or fewer FMA
    units (e.g. AVX-512 executed on 256-bit units), clocks drop under wide vector load or turbo
    above the reported one, and AMX tiles go beyond it.
    """
    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"unknown precision {precision!r}; choose from fp32, bf16, int8")
    if info.has("avx512f"):
        fp32_lanes, isa = 16, "AVX-512: 16 fp32 lanes"
    elif info.has("avx2"):
        fp32_lanes, isa = 8, "AVX2: 8 fp32 lanes"
    else:
        return PhysicalLimit(None, "no AVX2 or AVX-512: SIMD width unknown, no limit stated")
    if precision == "bf16":
        native = info.has("avx512_bf16")
        lanes = fp32_lanes * (2 if native else 1)
        isa += ", bf16 x2 (AVX512_BF16)" if native else ", bf16 x1 (emulated in fp32)"
    elif precision == "int8":
        vnni = info.has("avx512_vnni") or info.has("avx_vnni")
        lanes = fp32_lanes * (4 if vnni else 2)
        isa += ", int8 x4 (VNNI)" if vnni else ", int8 x2 (no VNNI)"
    else:
        lanes = fp32_lanes
    cores = max(1, min(threads, info.logical_cpus))
    if not info.clock_ghz:
        return PhysicalLimit(None, f"{isa}; clock unknown, no limit stated")
    macs = cores * FMA_UNITS * lanes * info.clock_ghz * 1e9
    text = (
        f"nominal: {cores} cores x {FMA_UNITS} FMA units x {lanes} {precision} lanes ({isa}) x "
        f"{info.clock_ghz:.2f} GHz ({info.clock_source})"
    )
    return PhysicalLimit(macs, text)
