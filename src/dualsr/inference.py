"""Running a trained model on images: whole-image or tiled forward, and x8 self-ensemble.

An *upscaler* is any callable taking an H x W x 3 float32 array in [0, 255] and returning the
``scale``-times larger array; :class:`TorchUpscaler` runs a DRN, :class:`BicubicUpscaler` is the
MATLAB-bicubic baseline. Deployment backends (ONNX Runtime) follow the same interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import torch

from .data.imresize import imresize
from .models.drn import DRN

DEFAULT_TILE_OVERLAP = 16


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


def tile_spans(length: int, tile: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(core_start, core_end, in_start, in_end)`` covering ``[0, length)`` in tiles.

    Each core span (at most ``tile`` long) is computed from an input span extended by ``overlap``
    on each side (clipped to the image); only the core of each output tile is kept.
    """
    if tile <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    for start in range(0, length, tile):
        end = min(start + tile, length)
        yield start, end, max(0, start - overlap), min(length, end + overlap)


class TorchUpscaler:
    """Runs a DRN on whole images or tiles, optionally with x8 self-ensemble.

    Args:
        model: the DRN (put in eval mode).
        device: "cpu", "cuda", or a torch.device.
        tile: LR tile size in pixels; 0 or None processes the whole image at once.
        tile_overlap: LR pixels of context added on each side of a tile.
        ensemble: average over the 8 flips/transposes (x8 slower).
        progress: optional callback called with (done, total) tiles.
    """

    def __init__(
        self,
        model: DRN,
        device: str | torch.device = "cpu",
        tile: int | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        ensemble: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            from .errors import DualSRError

            raise DualSRError(
                "--device cuda was requested but CUDA is not available here; use --device cpu"
            )
        self.model = model.eval().to(self.device)
        self.scale = model.scale
        self.tile = tile or 0
        self.tile_overlap = max(0, tile_overlap)
        self.ensemble = ensemble
        self.progress = progress

    @torch.inference_mode()
    def _run(self, lr: torch.Tensor) -> torch.Tensor:
        fn = lambda t: sr_output(self.model, t)  # noqa: E731
        return self_ensemble(fn, lr) if self.ensemble else fn(lr)

    def __call__(self, pixels: np.ndarray, out_dtype: type = np.uint8) -> np.ndarray:
        """Upscale H x W x 3 float pixels in [0, 255]; uint8 output (rounded) by default."""
        h, w = pixels.shape[:2]
        s = self.scale
        src = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        src = src.permute(2, 0, 1).unsqueeze(0)
        out = np.empty((h * s, w * s, 3), dtype=out_dtype)
        tile = self.tile if self.tile and self.tile < max(h, w) else max(h, w)
        ys, xs = (
            list(tile_spans(h, tile, self.tile_overlap)),
            list(tile_spans(w, tile, self.tile_overlap)),
        )
        total, done = len(ys) * len(xs), 0
        for y0, y1, iy0, iy1 in ys:
            for x0, x1, ix0, ix1 in xs:
                lr = src[:, :, iy0:iy1, ix0:ix1].to(self.device)
                sr = self._run(lr)[0]
                sr = sr[:, (y0 - iy0) * s : (y1 - iy0) * s, (x0 - ix0) * s : (x1 - ix0) * s]
                sr = sr.clamp(0, 255).permute(1, 2, 0).float().cpu().numpy()
                if out_dtype == np.uint8:
                    sr = np.rint(sr)
                out[y0 * s : y1 * s, x0 * s : x1 * s] = sr
                done += 1
                if self.progress:
                    self.progress(done, total)
        return out


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
