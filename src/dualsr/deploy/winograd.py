"""Winograd F(4x4, 3x3) for the 3x3 convolutions of a fused DRN: 4x fewer multiply-adds, fp32.

93% of DRN-S x4's multiply-adds are 3x3 convolutions of 64 channels. oneDNN computes them
directly, at about the CPU's fp32 limit, so an fp32 path can only go faster with fewer
operations. Winograd's minimal filtering computes each 4x4 block of outputs from a 6x6 block of
inputs with 36 products per input and output channel instead of 144 (``winograd.c`` beside this
file: AVX2 + FMA, NHWC, the transforms blocked with the products so they stay in cache).

Its results are fp32 sums taken in another order, through transforms with coefficients up to 8
and fractions down to 1/24: not bit-exact like ``--precision fp32``, further from fp64 than the
direct algorithm by a small factor (PSNR change and distance to a float64 forward of the shipped
models: ``benchmarks/results/winograd_accuracy_*.txt``; every model is checked against eager
when its upscaler is built, ``inference.WINOGRAD_TOLERANCE``), so auto offers it under
``--precision auto`` only, never for ``--precision fp32``.

The kernel is C, compiled on first use with the system's C compiler (``cc``, or ``$CC``) into
``$DUALSR_HOME/kernels`` and loaded with ctypes; where there is no compiler, no AVX2+FMA, or
not x86-64, :func:`unavailable_reason` says why and nothing uses it.

Threads: the tiles are split into one range per PyTorch thread. Built with OpenMP (the default
where the compiler has it), the kernel runs them on the OpenMP pool PyTorch already uses: with a
pool of its own, PyTorch's idle OpenMP threads kept spinning on the cores for a while after each
PyTorch operation between the convolutions, which made DRN-S on a 64x64 tile 1.75x slower (the
Winograd convolutions took 5.0 ms a call there instead of 2.8 ms alone). Without OpenMP, Python
threads run the ranges with the GIL released.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cpu import detect_cpu
from .fused import FusedConv, FusedDRN

SOURCE = Path(__file__).with_name("winograd.c")
#: F(4x4, 3x3)'s kernel transform (the input and output transforms are in the C source).
G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ]
)
#: Channel counts must be multiples of this (one AVX2 register of fp32).
CHANNEL_MULTIPLE = 8
#: Convolutions with fewer input channels stay direct: their products are too thin to win.
MIN_CHANNELS = 16
COMPILE_FLAGS = ("-O3", "-mavx2", "-mfma", "-shared", "-fPIC")
#: Tried first: the kernel then runs on PyTorch's OpenMP threads (module docstring).
OPENMP_FLAG = "-fopenmp"


class _Failure(str):
    """Why the kernel cannot be had (a str, so it is falsy only if empty)."""


def _flag_sets() -> list[tuple[str, ...]]:
    """The builds to try, best first: with OpenMP (PyTorch's thread pool), then without."""
    return [(*COMPILE_FLAGS, OPENMP_FLAG), COMPILE_FLAGS]


def _build(cc: str, flags: tuple[str, ...], lib_path: Path) -> str | None:
    """Compile the kernel into ``lib_path`` (atomically); why not, or None."""
    try:
        lib_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = lib_path.with_name(f"{lib_path.name}.{os.getpid()}.tmp")
        done = subprocess.run(
            [cc, *flags, "-o", str(tmp), str(SOURCE)], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            tmp.unlink(missing_ok=True)
            return f"{cc} could not build {SOURCE.name}: {done.stderr.strip()[:300]}"
        os.replace(tmp, lib_path)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not build the kernel into {lib_path.parent}: {exc}"
    return None


@functools.lru_cache(maxsize=1)
def _load() -> ctypes.CDLL | _Failure:
    why = _missing()
    if why:
        return _Failure(why)
    errors = []
    for flags in _flag_sets():
        lib_path = _library_path(flags)
        # A build that failed once (e.g. a compiler without OpenMP) is not retried every run.
        failed_mark = lib_path.with_suffix(".failed")
        if failed_mark.exists():
            errors.append(failed_mark.read_text(errors="replace").strip())
            continue
        if not lib_path.exists():
            cc = shutil.which(os.environ.get("CC", "cc"))
            if cc is None:
                return _Failure("no C compiler to build the kernel (install gcc, or set CC)")
            error = _build(cc, flags, lib_path)
            if error:
                errors.append(error)
                if flags != _flag_sets()[-1]:  # a fallback follows: remember, don't retry
                    with contextlib.suppress(OSError):
                        failed_mark.write_text(f"{error} (delete {failed_mark} to retry)\n")
                continue
        try:
            lib = ctypes.CDLL(str(lib_path))
        except OSError as exc:
            errors.append(f"could not load {lib_path}: {exc} (delete it to rebuild)")
            continue
        i, p, long_ = ctypes.c_int, ctypes.c_void_p, ctypes.c_long
        lib.dualsr_winograd_conv3x3.restype = i
        lib.dualsr_winograd_conv3x3.argtypes = [p, i, i, i, i, p, p, i, p, i, long_, long_]
        lib.dualsr_winograd_conv3x3_parallel.restype = i
        lib.dualsr_winograd_conv3x3_parallel.argtypes = [p, i, i, i, i, p, p, i, p, i, i]
        lib.dualsr_winograd_tiles.restype = long_
        lib.dualsr_winograd_tiles.argtypes = [i, i, i]
        lib.dualsr_winograd_openmp.restype = i
        lib.dualsr_winograd_openmp.argtypes = []
        lib.openmp = bool(lib.dualsr_winograd_openmp())  # asked once, not per convolution
        return lib
    return _Failure("; ".join(errors))


def uses_openmp() -> bool:
    """Whether the loaded kernel splits its work with OpenMP (PyTorch's thread pool); False
    where it runs its own threads, or is not available."""
    lib = _load()
    return not isinstance(lib, _Failure) and lib.openmp


def missing_requirement() -> str | None:
    """What the kernel lacks here, judged without building it (a C compiler is looked for, not
    run); None if it should build and run. :func:`unavailable_reason` is the final word."""
    return _missing()


def _missing() -> str | None:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"not x86-64 ({platform.machine()})"
    cpu = detect_cpu()
    if not (cpu.has("avx2") and cpu.has("fma")):
        return "the CPU lacks AVX2 or FMA"
    built = any(_library_path(flags).exists() for flags in _flag_sets())
    if not built and shutil.which(os.environ.get("CC", "cc")) is None:
        return "no C compiler to build the kernel (install gcc, or set CC)"
    return None


def kernel_dir() -> Path:
    """Where the built kernel lives: ``$DUALSR_HOME/kernels``."""
    from ..hub import dualsr_home

    return dualsr_home() / "kernels"


def _library_path(flags: tuple[str, ...]) -> Path:
    tag = hashlib.sha256(SOURCE.read_bytes() + " ".join(flags).encode()).hexdigest()[:12]
    return kernel_dir() / f"winograd-{tag}.so"


def unavailable_reason() -> str | None:
    """Why the Winograd kernel cannot run here, or None if it can (builds it on first call)."""
    got = _load()
    return got if isinstance(got, _Failure) else None


def transform_kernel(weight: torch.Tensor) -> torch.Tensor:
    """``U = G g G^T`` of a K x C x 3 x 3 kernel, as the 36 x C x K fp32 tensor the C code reads
    (computed in float64, rounded once)."""
    g = weight.detach().to("cpu", torch.float64)
    gm = torch.from_numpy(G)
    u = torch.einsum("ai,kcij,bj->abck", gm, g, gm)  # 6 x 6 x C x K
    return u.reshape(36, g.shape[1], g.shape[0]).to(torch.float32).contiguous()


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:  # noqa: SLF001 (its own size)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dualsr-winograd")
        return _pool


def conv3x3(
    x: torch.Tensor,
    u: torch.Tensor,
    bias: torch.Tensor | None,
    relu: bool = False,
    threads: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` (ReLU after it if ``relu``) by Winograd.

    ``x``: N x C x H x W fp32 in channels_last layout; ``u``: :func:`transform_kernel` of the
    weight. The output is channels_last, written into ``out`` if given (N x K x H x W fp32,
    channels_last, not overlapping ``x``). ``threads`` defaults to ``torch.get_num_threads()``.
    """
    lib = _load()
    if isinstance(lib, _Failure):
        raise RuntimeError(f"the Winograd kernel is not available: {lib}")
    n, c, h, w = x.shape
    k = u.shape[2]
    if x.dtype != torch.float32 or u.shape[1] != c:
        raise ValueError(f"expected fp32 input with {u.shape[1]} channels, got {x.dtype} {c}")
    x = x.contiguous(memory_format=torch.channels_last)
    if out is None:
        y = torch.empty((n, k, h, w), dtype=torch.float32, memory_format=torch.channels_last)
    elif (
        out.shape != (n, k, h, w)
        or out.dtype != torch.float32
        or not out.is_contiguous(memory_format=torch.channels_last)
    ):
        raise ValueError(f"out must be a channels_last fp32 tensor of {(n, k, h, w)}")
    else:
        y = out
    threads = threads or torch.get_num_threads()
    args = (x.data_ptr(), n, h, w, c, u.data_ptr(), bias.data_ptr() if bias is not None else None)
    args2 = (k, y.data_ptr(), int(relu))
    if lib.openmp:
        status = [lib.dualsr_winograd_conv3x3_parallel(*args, *args2, threads)]
    else:
        tiles = lib.dualsr_winograd_tiles(n, h, w)
        parts = max(1, min(threads, tiles))
        cuts = [tiles * i // parts for i in range(parts + 1)]

        def run(a: int, b: int) -> int:
            return lib.dualsr_winograd_conv3x3(*args, *args2, a, b)

        if parts == 1:
            status = [run(0, tiles)]
        else:
            pool = _executor(parts - 1)
            futures = [pool.submit(run, a, b) for a, b in zip(cuts[1:-1], cuts[2:], strict=True)]
            status = [run(cuts[0], cuts[1])] + [f.result() for f in futures]
    if any(status):
        raise RuntimeError(
            f"the Winograd kernel failed for {c} -> {k} channels (channels must be multiples "
            f"of {CHANNEL_MULTIPLE}; or out of memory)"
        )
    return y


class WinogradConv(nn.Module):
    """A :class:`~dualsr.deploy.fused.FusedConv` (3x3, stride 1, fp32, optional ReLU) computed by
    :func:`conv3x3`."""

    def __init__(self, conv: FusedConv) -> None:
        super().__init__()
        if not eligible(conv):
            raise ValueError(f"not a convolution Winograd F(4x4, 3x3) computes here: {conv}")
        self.register_buffer("u", transform_kernel(conv.weight))
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().float())
        self.relu = conv.act == "relu"
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution (and ReLU) of channels_last fp32 ``x``."""
        return conv3x3(x, self.u, self.bias, self.relu)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, F(4x4, 3x3), relu={self.relu}"


def eligible(conv: nn.Module) -> bool:
    """Whether ``conv`` is a fused 3x3 stride-1 fp32 convolution with channel counts the kernel
    takes (multiples of 8, at least :data:`MIN_CHANNELS` in) and no activation but ReLU."""
    return (
        isinstance(conv, FusedConv)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.groups == 1
        and conv.weight.dtype == torch.float32
        and conv.in_channels % CHANNEL_MULTIPLE == 0
        and conv.out_channels % CHANNEL_MULTIPLE == 0
        and conv.in_channels >= MIN_CHANNELS
        and conv.act in (None, "relu")
    )


def use_winograd(fused: FusedDRN) -> int:
    """Replace the eligible convolutions of an fp32 channels_last ``fused`` model by
    :class:`WinogradConv`, in place; how many were replaced. RuntimeError where the kernel is
    not available (:func:`unavailable_reason`)."""
    why = unavailable_reason()
    if why:
        raise RuntimeError(f"the Winograd kernel is not available: {why}")
    if fused.dtype != torch.float32 or not fused.channels_last:
        raise ValueError("Winograd needs the fp32 channels_last fused model")
    swaps = [
        (parent, name, child)
        for parent in fused.modules()
        for name, child in parent.named_children()
        if eligible(child)
    ]
    for parent, name, child in swaps:
        setattr(parent, name, WinogradConv(child))
    return len(swaps)
