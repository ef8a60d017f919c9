"""Tile geometry and memory estimates of the upscalers, without PyTorch.

Shared by :mod:`dualsr.inference` (the PyTorch upscalers) and :mod:`dualsr.deploy.launch` (ONNX
Runtime in a process that never imports PyTorch). The estimates only read a model's ``scale``
and ``arch.n_feats``: a DRN, or a :class:`Footprint` recorded from one.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import DualSRError


class SizedModel(Protocol):
    """What the memory estimates read from a model: a DRN is one."""

    scale: int
    arch: Any  # with an ``n_feats`` attribute


@dataclass(frozen=True)
class Footprint:
    """A DRN's scale and width, all the memory estimates need (a DRN stands in for itself)."""

    scale: int
    n_feats: int

    @property
    def arch(self) -> Footprint:
        """Itself: ``footprint.arch.n_feats`` reads as ``model.arch.n_feats`` does."""
        return self


DEFAULT_TILE_OVERLAP = 16
#: Smallest useful LR tile: every tile is computed with ``tile_overlap`` context pixels on each
#: side and the RCABs' channel attention pools over the tile, so below 32 pixels the work
#: multiplies (a 16-pixel tile with the default overlap computes 9x its area) and the results
#: drift from whole-image ones, for a memory saving that no longer matters.
MIN_TILE = 32
#: ``dualsr upscale``'s LR tile size per precision: the bf16 tile holds about as many bytes of
#: activations as the fp32 one ((352 + 2*16)^2 * 2 bytes vs (256 + 2*16)^2 * 4), so memory stays
#: bounded alike while a 320 x 180 photo (720p out) runs as one tile.
DEFAULT_TILES = {"fp32": 256, "bf16": 352}


def available_memory_bytes() -> int | None:
    """Memory the OS can still give this process (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def forward_bytes_per_lr_pixel(model: SizedModel, precision: str = "fp32") -> int:
    """Estimated peak bytes of one forward per LR input pixel (activations, not weights).

    DRN works at the output resolution: the largest live tensors are the ``n_feats``-channel
    maps at scale**2 times the input size (the head's output kept for the last skip, the last
    stage's output and their concatenation), plus the fp32 image at both ends. Calibrated on a
    measured peak (DRN-S x4, fp32, a 288 x 288 LR tile: about 0.7 GB above the process's
    baseline); bf16 halves the feature maps but casts the last concatenation to fp32.
    """
    hr = model.scale**2
    feats = model.arch.n_feats
    if precision == "bf16":
        return hr * (feats * 8 * 2 + 2 * feats * 4 + 24)
    return hr * (feats * 8 * 4 + 24)


def auto_tile(
    model: SizedModel,
    precision: str = "fp32",
    overlap: int = DEFAULT_TILE_OVERLAP,
    budget_bytes: int | None = None,
) -> int:
    """The largest LR tile (a multiple of 16, at least 32) whose forward fits in the budget:
    by default half the memory available now, at most 4 GiB."""
    if budget_bytes is None:
        free = available_memory_bytes() or 2 << 30
        budget_bytes = min(free // 2, 4 << 30)
    side = int((budget_bytes / forward_bytes_per_lr_pixel(model, precision)) ** 0.5) - 2 * overlap
    return max(MIN_TILE, side // 16 * 16)


Span = tuple[int, int, int, int]


def even_spans(length: int, count: int, overlap: int) -> list[Span]:
    """``count`` tiles of (nearly) equal size covering ``[0, length)``, as
    ``(core_start, core_end, in_start, in_end)``.

    Each core span is computed from an input span extended by ``overlap`` on each side (clipped
    to the image); only the core of each output tile is kept.
    """
    if not 1 <= count <= max(1, length):
        raise ValueError(f"cannot cut {length} pixels into {count} tiles")
    cuts = [i * length // count for i in range(count + 1)]
    pairs = zip(cuts[:-1], cuts[1:], strict=True)
    return [(a, b, max(0, a - overlap), min(length, b + overlap)) for a, b in pairs]


def _widest_input(length: int, count: int, overlap: int) -> int:
    """The longest input span of :func:`even_spans` ``(length, count, overlap)``."""
    if count == 1:
        return length
    core = -(-length // count)
    return min(length, core + (overlap if count == 2 else 2 * overlap))


def tile_grid(
    height: int, width: int, tile: int | None, overlap: int
) -> tuple[list[Span], list[Span]]:
    """The row and column spans (:func:`even_spans`) of the tiles that cover a height x width
    image with the least work.

    ``tile`` bounds memory, not shape: no tile's input (its core with ``overlap`` pixels of
    context on each side that has a neighbour) holds more than ``(tile + 2 * overlap)^2``
    pixels, the input of a square tile of side ``tile``. Among the grids within that bound, the
    one that computes the fewest pixels (the overlaps are computed twice) wins, fewer tiles on a
    tie. So a 320x180 image with ``tile=256`` runs as one tile, not as a 256- and a 64-pixel-wide
    one that compute 352 columns. ``tile`` None or 0: one tile.
    """
    if height < 1 or width < 1:
        raise ValueError(f"cannot tile an image of {height}x{width} pixels")
    overlap = max(0, overlap)
    if not tile:
        return even_spans(height, 1, overlap), even_spans(width, 1, overlap)
    if tile < 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    budget = (tile + 2 * overlap) ** 2

    def computed(length: int, count: int) -> int:  # the input pixels along one axis
        return min(length + 2 * overlap * (count - 1), count * length)

    best: tuple[int, int, int, int] | None = None  # (work, tiles, rows, cols)
    # columns much narrower than the tile only add overlap: a quarter of it is the narrowest
    for cols in range(1, min(width, -(-width // max(1, tile // 4))) + 1):
        span_x = _widest_input(width, cols, overlap)
        rows = next(
            (
                n
                for n in (1, 2)
                if n <= height and _widest_input(height, n, overlap) * span_x <= budget
            ),
            None,
        )
        if rows is None:
            room = budget // span_x - 2 * overlap
            if room < 1:
                continue
            rows = max(3, -(-height // room))
            while rows <= height and _widest_input(height, rows, overlap) * span_x > budget:
                rows += 1
            if rows > height:
                continue
        work = computed(height, rows) * computed(width, cols)
        if best is None or (work, rows * cols) < best[:2]:
            best = (work, rows * cols, rows, cols)
    if best is None:  # tiles of one pixel and their context do not fit: the smallest grid
        return even_spans(height, height, overlap), even_spans(width, width, overlap)
    return even_spans(height, best[2], overlap), even_spans(width, best[3], overlap)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (PyTorch's or Python's)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate" in text


def upscale_within_memory(
    upscaler: Any,
    pixels: np.ndarray,
    out_dtype: type = np.uint8,
    source: str | os.PathLike = "image",
) -> np.ndarray:
    """``upscaler(pixels, out_dtype=out_dtype)``, made to fit in memory (what ``dualsr upscale``
    does for every image).

    Before the forward: if a DRN upscaler's estimated peak (:func:`forward_bytes_per_lr_pixel`)
    for the whole image or its current tile exceeds half the memory available, it switches to the
    largest tile that fits (:func:`auto_tile`), with a warning; an allocation that large may not
    fail cleanly but get the process killed. During it: a tiled upscaler (one with a ``tile``
    attribute) that runs out of memory is retried with half the tile size (a multiple of 16, down
    to :data:`MIN_TILE`), with a warning each time; below that, :class:`DualSRError`. The
    upscaler's ``tile`` is put back afterwards. ``source`` names the image in the messages.
    Other upscalers are just called.
    """
    first_tile = getattr(upscaler, "tile", None)
    _fit_tile_to_memory(upscaler, pixels.shape[:2], source)
    try:
        while True:
            try:
                return upscaler(pixels, out_dtype=out_dtype)
            except (RuntimeError, MemoryError) as exc:
                if not is_out_of_memory(exc) or first_tile is None:
                    raise
                current = upscaler.tile or max(pixels.shape[:2])
                smaller = max(MIN_TILE, current // 2 // 16 * 16)
                if smaller >= current:
                    raise DualSRError(
                        f"{source}: out of memory even with {current}-pixel tiles; close other "
                        "programs or use a smaller model"
                    ) from None
                warnings.warn(
                    f"{Path(source).name}: out of memory with {current}-pixel tiles; retrying "
                    f"with {smaller}",
                    stacklevel=2,
                )
                upscaler.tile = smaller
    finally:
        if first_tile is not None:
            upscaler.tile = first_tile


def _fit_tile_to_memory(upscaler: Any, hw: tuple[int, int], source: str | os.PathLike) -> None:
    """Switch ``upscaler`` to the largest tile that fits when the forward's estimated memory
    exceeds half of what is available (see :func:`upscale_within_memory`)."""
    model = getattr(upscaler, "model", None)
    if model is None or not hasattr(model, "arch"):
        return
    side = upscaler.tile if upscaler.tile and upscaler.tile < max(hw) else None
    area = (side + 2 * upscaler.tile_overlap) ** 2 if side else hw[0] * hw[1]
    need = forward_bytes_per_lr_pixel(model, upscaler.precision) * area
    free = available_memory_bytes()
    if free is None or need <= free // 2:
        return
    tile = auto_tile(model, upscaler.precision, upscaler.tile_overlap)
    if side is not None and tile >= side:
        return
    warnings.warn(
        f"{Path(source).name}: {'whole' if side is None else f'{side}-pixel tiles'} would need "
        f"about {need / 2**30:.1f} GiB (estimated, {free / 2**30:.1f} GiB available); using "
        f"{tile}-pixel tiles",
        stacklevel=3,
    )
    upscaler.tile = tile
