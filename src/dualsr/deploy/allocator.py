"""Keep freed activation memory in the process: fewer page faults on the CPU inference path.

A DRN forward allocates and frees one large activation per layer (a 64-channel map at 180x320 is
14.7 MB). With glibc's default malloc settings, blocks this size are served by ``mmap`` and
unmapped again on free, so every layer pays for fresh, zero-filled pages; the conv kernels then
spend part of their time in page faults. :func:`tune_allocator` raises glibc's mmap and trim
thresholds (``mallopt``), so freed blocks are reused instead. Measured on the 2-core reference
machine with the fused path (docs/deployment.md): DRN-S x4 at 90x160 2 to 7% faster, DRN-S70 4 to
15% faster; the price is that the process keeps up to ``trim_mb`` of freed memory instead of
returning it to the OS at once.

glibc caps the mmap threshold at 32 MiB, and DRN-S's activations at 360x640 (a 720p output) are
59 MB: ``tune_allocator(heap_only=True)`` also sets ``M_MMAP_MAX`` to 0, so blocks of every size
come from the heap (glibc still maps memory where the heap cannot grow). That took DRN-S x4's
320x180 forward from 6.8 to 6.2 s fused and from 4.6 to 3.6 s with Winograd convolutions (2
threads, the native-bf16 machine of 2026-12-05). It costs peak memory over many tiles: freed
blocks in the middle of the heap are not returned, and the heap grows around them (drn-t-x4, a
4000x3000 output in 12 tiles: fused bf16 0.72-0.78 GiB without it, 0.84-0.87 with it; Winograd
0.72-0.75 and 0.84-1.24). So the inference path turns it on (:func:`set_heap_only`) for fp32
jobs of one tile only: bf16 activations are half the size (DRN-S's fit under the threshold).

The setting is process-wide and takes effect for later allocations. It is a no-op where the C
library is not glibc (macOS, Windows, musl), and when ``DUALSR_TUNE_MALLOC=0`` is set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from collections.abc import Callable

# mallopt parameter numbers (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
#: glibc's default M_MMAP_MAX (DEFAULT_MMAP_MAX in malloc.c)
GLIBC_MMAP_MAX = 65536
# glibc caps the mmap threshold at HEAP_MAX_SIZE / 2: 32 MiB on 64-bit systems
MAX_MMAP_THRESHOLD_MB = 32

_applied: dict[str, int] | None = None
_mallopt: Callable[[int, int], int] | None = None


def tune_allocator(
    mmap_threshold_mb: int = MAX_MMAP_THRESHOLD_MB,
    trim_mb: int = 1024,
    top_pad_mb: int = 64,
    heap_only: bool = True,
) -> dict[str, int] | None:
    """Make glibc malloc reuse freed activation buffers (see the module docstring).

    Args:
        mmap_threshold_mb: blocks below this size come from the heap, not from ``mmap``
            (at most 32).
        trim_mb: freed memory at the top of the heap kept before it is returned to the OS.
        top_pad_mb: extra memory requested from the OS each time the heap grows.
        heap_only: serve blocks above the mmap threshold from the heap too (``M_MMAP_MAX`` 0).

    Returns:
        The settings applied (bytes), or None when nothing was changed (not glibc, disabled by
        ``DUALSR_TUNE_MALLOC=0``, or ``mallopt`` refused). Calling it again returns the first
        result without changing anything, except that a later ``heap_only`` call adds
        ``M_MMAP_MAX`` 0 where the first did not.
    """
    global _applied, _mallopt
    if _applied is not None:
        if heap_only:
            set_heap_only(True)
        return _applied
    if os.environ.get("DUALSR_TUNE_MALLOC", "1").strip() in ("0", "false", "no", "off"):
        return None
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if not 0 < mmap_threshold_mb <= MAX_MMAP_THRESHOLD_MB or trim_mb < 0 or top_pad_mb < 0:
        raise ValueError(
            f"mmap threshold must be in (0, {MAX_MMAP_THRESHOLD_MB}] MB and trim/top pad >= 0"
        )
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = {
        "mmap_threshold": mmap_threshold_mb << 20,
        "trim_threshold": trim_mb << 20,
        "top_pad": top_pad_mb << 20,
    }
    codes = {
        "mmap_threshold": _M_MMAP_THRESHOLD,
        "trim_threshold": _M_TRIM_THRESHOLD,
        "top_pad": _M_TOP_PAD,
        "mmap_max": _M_MMAP_MAX,
    }
    if heap_only:
        settings["mmap_max"] = 0
    if not all(mallopt(codes[k], v) == 1 for k, v in settings.items()):
        return None
    _applied, _mallopt = settings, mallopt
    return settings


def set_heap_only(on: bool) -> bool:
    """Turn ``M_MMAP_MAX`` 0 on or off (back to glibc's default) after :func:`tune_allocator`;
    whether the setting is now as asked (False where the allocator is not tuned).

    Heap-only is faster for large activations but fragments the heap over many tiles, so the
    inference path turns it on for jobs of one tile only (:class:`dualsr.inference.TorchUpscaler`).
    """
    global _applied
    if _applied is None or _mallopt is None:
        return False
    if on == ("mmap_max" in _applied):
        return True
    if _mallopt(_M_MMAP_MAX, 0 if on else GLIBC_MMAP_MAX) != 1:
        return False
    _applied = (
        {**_applied, "mmap_max": 0}
        if on
        else {k: v for k, v in _applied.items() if k != "mmap_max"}
    )
    return True
