"""Running a trained model on images: whole-image or tiled forward, and x8 self-ensemble.

An *upscaler* is any callable taking an H x W x 3 float32 array in [0, 255] and returning the
``scale``-times larger array; :class:`TorchUpscaler` runs a DRN, :class:`BicubicUpscaler` is the
MATLAB-bicubic baseline. Deployment backends (ONNX Runtime) follow the same interface.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from .data.imresize import imresize
from .errors import DualSRError
from .models.drn import DRN
from .tiling import (  # noqa: F401  (re-exported: the tiling API's historical home)
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILES,
    MIN_TILE,
    auto_tile,
    available_memory_bytes,
    forward_bytes_per_lr_pixel,
    is_out_of_memory,
    tile_grid,
    upscale_within_memory,
)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or DualSRError (one line) if it cannot be used here: CUDA
    missing from this PyTorch build or without a GPU, a ``cuda:N`` index beyond the GPUs
    present, MPS (Apple silicon) unavailable."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DualSRError(
            f"--device {device}: not a device name ({exc}); use cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this PyTorch build has no CUDA support"
                if torch.version.cuda is None
                else "no usable GPU or driver was found"
            )
            raise DualSRError(
                f"--device {device} was requested but CUDA is not available here ({why}); "
                "use --device cpu"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DualSRError(
                f"--device {device}: there are only {count} CUDA device(s) here "
                f"(cuda:0 to cuda:{count - 1}); pick one of those"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DualSRError(
                f"--device {device} was requested but Apple's MPS backend is not available here "
                "(it needs macOS on Apple silicon and a PyTorch build with MPS); use --device cpu"
            )
    elif dev.type != "cpu":
        raise DualSRError(f"--device {device}: unsupported device; use cpu, cuda, cuda:N or mps")
    return dev


class Upscaler(Protocol):
    """Maps H x W x 3 pixels in [0, 255] (uint8 or float) to (H*scale) x (W*scale) x 3 uint8."""

    scale: int

    def __call__(self, pixels: np.ndarray) -> np.ndarray: ...


def sr_output(model: DRN, lr: torch.Tensor) -> torch.Tensor:
    """The final SR output of ``model`` for an N x 3 x h x w batch in [0, 255]."""
    out = model(lr * (model.arch.rgb_range / 255.0))[-1]
    return out * (255.0 / model.arch.rgb_range)


def self_ensemble(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Average ``fn`` over the 8 flips/transposes of ``x`` (N x C x H x W), each inverted back."""
    total = None
    for transpose in (False, True):
        for flip in ((), (-1,), (-2,), (-2, -1)):
            t = x.transpose(-2, -1) if transpose else x
            t = t.flip(flip) if flip else t
            y = fn(t)
            y = y.flip(flip) if flip else y
            y = y.transpose(-2, -1) if transpose else y
            total = y if total is None else total + y
    return total / 8


class TiledUpscaler:
    """Base of the model upscalers: whole-image or tiled forward, optional x8 self-ensemble.

    Subclasses set ``scale`` and implement :meth:`_forward` (N x 3 x h x w float32 CPU tensor in
    0..255 -> the SR tensor in 0..255); this class does the tiling, the ensemble and the
    conversion to an H x W x 3 array.

    Args:
        scale: the upscaling factor.
        tile: LR tile size in pixels; 0 or None processes the whole image at once.
        tile_overlap: LR pixels of context added on each side of a tile.
        ensemble: average over the 8 flips/transposes (x8 slower).
        progress: optional callback called with (done, total) tiles.
    """

    def __init__(
        self,
        scale: int,
        tile: int | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        ensemble: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.scale = scale
        self.tile = tile or 0
        self.tile_overlap = max(0, tile_overlap)
        self.ensemble = ensemble
        self.progress = progress

    def _forward(self, lr: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _start_job(self, tiles: int) -> None:
        """Called before the tiles of each image are upscaled (a hook for subclasses)."""

    @torch.inference_mode()
    def _run(self, lr: torch.Tensor) -> torch.Tensor:
        return self_ensemble(self._forward, lr) if self.ensemble else self._forward(lr)

    def upscale_within_memory(
        self,
        pixels: np.ndarray,
        out_dtype: type = np.uint8,
        source: str | os.PathLike = "image",
    ) -> np.ndarray:
        """``self(pixels)``, with tiles sized to the memory available and halved on
        out-of-memory errors: see :func:`upscale_within_memory`."""
        return upscale_within_memory(self, pixels, out_dtype, source)

    def __call__(self, pixels: np.ndarray, out_dtype: type = np.uint8) -> np.ndarray:
        """Upscale H x W x 3 float pixels in [0, 255]; uint8 output (rounded) by default."""
        h, w = pixels.shape[:2]
        s = self.scale
        src = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        src = src.permute(2, 0, 1).unsqueeze(0)
        out = np.empty((h * s, w * s, 3), dtype=out_dtype)
        ys, xs = tile_grid(h, w, self.tile, self.tile_overlap)
        total, done = len(ys) * len(xs), 0
        self._start_job(total)
        for y0, y1, iy0, iy1 in ys:
            for x0, x1, ix0, ix1 in xs:
                sr = self._run(src[:, :, iy0:iy1, ix0:ix1])[0]
                sr = sr[:, (y0 - iy0) * s : (y1 - iy0) * s, (x0 - ix0) * s : (x1 - ix0) * s]
                sr = sr.clamp(0, 255).permute(1, 2, 0).float().cpu().numpy()
                if out_dtype == np.uint8:
                    sr = np.rint(sr)
                out[y0 * s : y1 * s, x0 * s : x1 * s] = sr
                done += 1
                if self.progress:
                    self.progress(done, total)
        return out


#: PyTorch backends of :class:`TorchUpscaler` ("auto" picks the measured-fastest one).
TORCH_BACKENDS = ("auto", "eager", "fused", "compile", "winograd")
#: Largest difference (0..255 scale) allowed between a fast path and eager in the self-check.
FAST_PATH_TOLERANCE = 1e-3
#: The Winograd self-check: largest difference (0..255) from fp32 eager. Winograd's transforms
#: round differently from direct convolution: 8e-5 on DRN-S and 1.5e-3 on drn-t-x4 at 320x180,
#: where fused fp32 differs by 7e-5 and 4e-4 (docs/deployment.md); a broken kernel is far off.
WINOGRAD_TOLERANCE = 1e-2
#: The bf16 self-check: largest mean absolute difference (0..255) from fp32 eager on the probe.
BF16_TOLERANCE = 0.5


class TorchUpscaler(TiledUpscaler):
    """Runs a DRN on whole images or tiles, optionally with x8 self-ensemble.

    Args:
        model: the DRN (put in eval mode).
        device: "cpu", "cuda", "cuda:N", "mps" or a torch.device (checked: DualSRError if
            it is not available here).
        tile: LR tile size in pixels; 0 or None processes the whole image at once; ``"auto"``:
            the largest tile whose forward fits in half the memory available now (at most 4 GiB,
            :func:`auto_tile`, for the resolved ``precision``).
        tile_overlap: LR pixels of context added on each side of a tile.
        ensemble: average over the 8 flips/transposes (x8 slower).
        progress: optional callback called with (done, total) tiles.
        backend: how the model runs. ``"eager"``: the model as written (NCHW, every pyramid
            output). ``"fused"``: :func:`dualsr.deploy.fuse_for_inference` (final output only,
            folded convolutions, channels_last; the fastest CPU path measured, see
            docs/deployment.md). ``"compile"``: ``torch.compile`` of the fused module (needs a C++
            compiler, compiles for tens of seconds per input shape). ``"winograd"``: the fused
            module in fp32 with its 3x3 convolutions of 16 to 64+ channels computed by Winograd
            F(4x4, 3x3) (:mod:`dualsr.deploy.winograd`: 4x fewer multiply-adds; CPU with AVX2,
            a C compiler on first use; fp32 arithmetic, but not rounded like direct convolution:
            within :data:`WINOGRAD_TOLERANCE` of eager, so ``--backend auto`` takes it under
            ``--precision auto`` only). ``"auto"`` (default): ``"fused"`` on CPU,
            ``"eager"`` elsewhere. A fast path that fails to build, disagrees with eager by more
            than 1e-3 on a self-check, or fails at run time falls back (compile or winograd ->
            fused -> eager) with a one-line warning. On CPU the fast paths also call
            :func:`dualsr.deploy.allocator.tune_allocator` (process-wide: freed activation
            buffers are reused instead of returned to the OS; ``DUALSR_TUNE_MALLOC=0`` disables
            it).
        precision: ``"auto"`` (default: bf16 where the device computes it natively, fp32
            elsewhere; :mod:`dualsr.deploy.precision`), ``"fp32"`` or ``"bf16"``. The fused
            path runs its body with bf16 weights and keeps the input scaling, the bicubic
            pre-upsampling and the last convolution in fp32; eager runs under
            ``torch.autocast``. bf16 changes PSNR by about 0.001 dB (docs/deployment.md); its
            self-check compares with fp32 eager within :data:`BF16_TOLERANCE`.
    """

    def __init__(
        self,
        model: DRN,
        device: str | torch.device = "cpu",
        tile: int | str | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        ensemble: bool = False,
        progress: Callable[[int, int], None] | None = None,
        backend: str = "auto",
        precision: str = "auto",
    ) -> None:
        if isinstance(tile, str) and tile != "auto":
            raise ValueError(f"tile must be a number of pixels or 'auto', got {tile!r}")
        super().__init__(
            model.scale, None if tile == "auto" else tile, tile_overlap, ensemble, progress
        )
        self.device = check_device(device)
        from .deploy.precision import DTYPES, resolve_precision

        if backend == "winograd" and precision == "auto":
            precision = "fp32"  # its only precision
        self.precision = resolve_precision(precision, self.device)
        if backend == "winograd" and (self.precision != "fp32" or self.device.type != "cpu"):
            raise ValueError("the winograd backend runs fp32 on the CPU only")
        if tile == "auto":
            self.tile = auto_tile(model, self.precision, self.tile_overlap)
        self.dtype = DTYPES[self.precision]
        if backend not in TORCH_BACKENDS:
            raise ValueError(
                f"unknown backend {backend!r}; choose from {', '.join(TORCH_BACKENDS)}"
            )
        self.model = model.eval().to(self.device)
        if backend == "auto":
            backend = "fused" if self.device.type == "cpu" else "eager"
        self.backend = "eager"
        self._fast: Callable[[torch.Tensor], torch.Tensor] | None = None
        if backend in ("fused", "compile", "winograd"):
            if self.device.type == "cpu":
                from .deploy.allocator import tune_allocator

                # heap-only malloc is decided per image (_start_job): fp32 jobs of one tile
                tune_allocator(heap_only=False)
            self._fast = self._build_fused(winograd=backend == "winograd")
            if self._fast is not None:
                self.backend = "winograd" if getattr(self._fast, "winograd", 0) else "fused"
        if backend == "compile" and self._fast is not None:
            self._fast = torch.compile(self._fast, options={"freezing": True})
            self.backend = "compile"

    def _build_fused(self, winograd: bool = False) -> Callable[[torch.Tensor], torch.Tensor] | None:
        from .deploy.fused import fuse_for_inference

        if winograd:
            fast = self._build_winograd()
            if fast is not None:
                return fast
        try:
            fused = fuse_for_inference(self.model, dtype=self.dtype).to(self.device)
            with torch.inference_mode():
                gen = torch.Generator().manual_seed(0)  # leaves the global RNG alone
                probe = (torch.rand(1, 3, 12, 12, generator=gen) * 255).to(self.device)
                diff = (fused(probe) - sr_output(self.model, probe)).abs()
        except Exception as exc:  # any failure: the eager path still works
            _fallback_warning("fused", exc)
            return None
        # fp32: equal to rounding; bf16: close on average (a broken kernel is far off)
        err, limit, what = float(diff.max()), FAST_PATH_TOLERANCE, "by"
        if self.dtype != torch.float32:
            err, limit, what = float(diff.mean()), BF16_TOLERANCE, "on average by"
        if not err <= limit:
            _fallback_warning("fused", f"differs from eager {what} {err:.3g} on a self-check")
            return None
        return fused

    def _build_winograd(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The fused fp32 module with Winograd convolutions, self-checked like fused; None (with
        a warning: it falls back to fused) where it cannot be built or disagrees."""
        from .deploy.fused import fuse_for_inference
        from .deploy.winograd import use_winograd

        try:
            fused = fuse_for_inference(self.model)
            fused.winograd = use_winograd(fused)
            with torch.inference_mode():
                gen = torch.Generator().manual_seed(0)
                probe = torch.rand(1, 3, 12, 12, generator=gen) * 255
                err = float((fused(probe) - sr_output(self.model, probe)).abs().max())
        except Exception as exc:
            _fallback_warning("winograd", exc)
            return None
        if not err <= WINOGRAD_TOLERANCE:
            _fallback_warning("winograd", f"differs from eager by {err:.3g} on a self-check")
            return None
        return fused

    def _run(self, lr: torch.Tensor) -> torch.Tensor:
        return super()._run(lr.to(self.device))

    def _start_job(self, tiles: int) -> None:
        """Heap-only malloc (:mod:`dualsr.deploy.allocator`) for fp32 jobs of one tile on the
        fast CPU paths: faster there (DRN-S's 59 MB activations); over many tiles it fragments
        the heap and raises the peak memory, so it is off for those."""
        if self._fast is not None and self.device.type == "cpu":
            from .deploy.allocator import set_heap_only

            set_heap_only(self.precision == "fp32" and tiles == 1)

    def _forward(self, lr: torch.Tensor) -> torch.Tensor:
        while self._fast is not None:
            try:
                return self._fast(lr)
            except Exception as exc:  # e.g. no C++ compiler for torch.compile
                if is_out_of_memory(exc):  # eager needs more memory: no point falling back
                    raise
                _fallback_warning(self.backend, exc)
                if self.backend in ("compile", "winograd"):
                    self._fast, self.backend = self._build_fused(), "fused"
                    if self._fast is None:
                        self.backend = "eager"
                else:
                    self._fast, self.backend = None, "eager"
        if self.dtype == torch.float32:
            return sr_output(self.model, lr)
        with torch.autocast(self.device.type, dtype=self.dtype):
            return sr_output(self.model, lr).float()


def _fallback_warning(backend: str, reason: object) -> None:
    if isinstance(reason, BaseException):
        text = str(reason).strip().splitlines()
        reason = f"{type(reason).__name__}: {text[0] if text else ''}"
    fallback = "fused" if backend in ("compile", "winograd") else "eager"
    warnings.warn(
        f"the {backend} inference path failed ({reason}); falling back to {fallback}", stacklevel=3
    )


class BicubicUpscaler:
    """The bicubic baseline: MATLAB-style bicubic interpolation by ``scale``."""

    def __init__(self, scale: int) -> None:
        self.scale = scale

    def __call__(self, pixels: np.ndarray, out_dtype: type = np.uint8) -> np.ndarray:
        """Upscale H x W x 3 pixels in [0, 255]; uint8 input stays on the uint8 MATLAB path."""
        if out_dtype == np.uint8 and pixels.dtype == np.uint8:
            return imresize(pixels, self.scale)
        out = np.clip(imresize(pixels.astype(np.float64), self.scale), 0, 255)
        return np.rint(out).astype(np.uint8) if out_dtype == np.uint8 else out.astype(out_dtype)
