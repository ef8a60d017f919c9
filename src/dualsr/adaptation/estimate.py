"""Estimating the degradation of the user's LR images, without HR.

JPEG is detected, and its quality estimated, from the images' block DCT coefficients: JPEG
quantises the DCT of every aligned 8x8 luma block, so after decoding the low-frequency
coefficients sit near multiples of the quantiser step, which follows from the quality through
the standard (libjpeg) table; clean images show no such lattice. The quality estimate is the
lowest quality (the coarsest steps) whose lattice the coefficients fit.

Blur is then found by statistics matching: three statistics of the luma (the finest band's
energy over the next band's, which blur lowers; an 8x8 blockiness ratio; Immerkaer's noise
estimate) of the user's images are compared with those of synthetic LR images made, with each
candidate blur and the detected JPEG, from reference HR images (the paired data); the closest
wins; the candidates are the blurs below with bicubic downscaling and plain nearest-neighbour
downscaling. Without paired data the blur is not estimated (``estimate_blur`` False): taking the
user's LR images themselves as the reference over-estimated it by 0.4-1.6 and took clean Set5
for blur 1.6, which cost 5 dB (docs/adaptation.md). Noise is not estimated (blur and noise
trade off in these statistics, and clean images were taken for blurred noisy ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics import rgb_to_y
from .degradations import Degradation, gaussian_blur

#: The candidate grid (blur sigma in HR pixels, noise sigma, JPEG quality; None = no JPEG).
#: No blur between 0 and 1.2: at x4 MATLAB bicubic already blurs by about that much, and the
#: statistics of clean Set5 landed on 0.8 (docs/adaptation.md).
#: Noise is left out of the search: with it, blur and noise trade off (one lowers the band
#: ratio, the other raises it) and clean images were taken for blurred noisy ones.
BLURS = (0.0, 1.2, 1.6, 2.0, 2.4, 2.8)
NOISES = (0.0,)
JPEGS = (None, 90, 75, 60, 45, 30)
#: Downscales other than bicubic tried (without blur). Nearest-neighbour LR images alias: their
#: finest band and noise statistic sit far above every bicubic candidate's (statistics on
#: Set5/Set14/BSD100 and T91+BSD200 references: distance 0.004-0.036 to the nearest candidate,
#: 0.13-0.26 to the next), while clean bicubic images never came closer to it than to bicubic.
#: Nearest with blur is left out: blur 1.2 + nearest lies close to clean bicubic.
OTHER_DOWNSCALES = ("nearest",)
#: JPEG qualities tried by the detector, and the libjpeg luminance table's first AC entries.
JPEG_QUALITIES = tuple(range(95, 4, -5))
_LUMA_TABLE = {(0, 1): 11, (1, 0): 12, (1, 1): 12, (0, 2): 10, (2, 0): 14}
#: The mean cosine a lattice must reach to count (clean images stay near 0).
JPEG_THRESHOLD = 0.2
#: Reference crops per candidate and their HR side (capped by the images).
REFERENCE_CROPS = 48
REFERENCE_SIDE = 128


@dataclass(frozen=True)
class Statistics:
    """The statistics of one or more images: band ratio, blockiness, noise (means)."""

    band_ratio: float
    blockiness: float
    noise: float

    def vector(self) -> np.ndarray:
        """The matching space: logs, so ratios count alike at every level."""
        return np.array(
            [np.log(self.band_ratio), 3.0 * np.log(self.blockiness), np.log1p(self.noise) / 2]
        )


def image_statistics(images: Sequence[np.ndarray]) -> Statistics:
    """Mean statistics of uint8 RGB images (each at least 16 pixels a side)."""
    rows = np.array([_one(img) for img in images])
    return Statistics(*map(float, rows.mean(axis=0)))


def _one(image: np.ndarray) -> tuple[float, float, float]:
    y = rgb_to_y(image).astype(np.float32)
    g1 = gaussian_blur(y, 1.0)
    g2 = gaussian_blur(g1, 1.0)
    fine = float(np.abs(y - g1)[2:-2, 2:-2].mean())
    coarse = float(np.abs(g1 - g2)[2:-2, 2:-2].mean())
    return fine / max(coarse, 1e-3), _blockiness(y), _noise_sigma(y)


def _blockiness(y: np.ndarray) -> float:
    steps = []
    for d in (np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0)).T):
        n = d.shape[1]
        border = np.arange(7, n, 8)
        if len(border) == 0:
            continue
        inner = np.setdiff1d(np.arange(n), border)
        steps.append((d[:, border].mean() + 0.5) / (d[:, inner].mean() + 0.5))
    return float(np.mean(steps)) if steps else 1.0


def _noise_sigma(y: np.ndarray) -> float:
    """Immerkaer (1996): the mean absolute response of a Laplacian difference mask."""
    k = y[:-2, :-2] - 2 * y[:-2, 1:-1] + y[:-2, 2:]
    k += -2 * y[1:-1, :-2] + 4 * y[1:-1, 1:-1] - 2 * y[1:-1, 2:]
    k += y[2:, :-2] - 2 * y[2:, 1:-1] + y[2:, 2:]
    return float(np.sqrt(np.pi / 2) / 6 * np.abs(k).mean())


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    c = np.cos((2 * k[None, :] + 1) * k[:, None] * np.pi / 16) * np.sqrt(2 / 8)
    c[0] /= np.sqrt(2)
    return c


def _quantiser(position: tuple[int, int], quality: int) -> int:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return max(1, int((_LUMA_TABLE[position] * scale + 50) // 100))


def jpeg_lattice_scores(images: Sequence[np.ndarray]) -> dict[int, float]:
    """Quality -> mean cosine of the low-frequency block DCT coefficients against the lattice
    of that quality's quantiser steps (near 1: on the lattice; near 0 or below: not). The
    coefficients of the zero bin are left out: they sit near a multiple of any step."""
    c = _dct_matrix()
    coeffs: dict[tuple[int, int], list[np.ndarray]] = {pos: [] for pos in _LUMA_TABLE}
    for image in images:
        rgb = image.astype(np.float64)
        y = rgb @ np.array([0.299, 0.587, 0.114]) - 128.0
        h, w = y.shape[0] // 8 * 8, y.shape[1] // 8 * 8
        if h == 0 or w == 0:
            continue
        blocks = y[:h, :w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
        dct = c @ blocks @ c.T
        for pos in coeffs:
            coeffs[pos].append(dct[:, pos[0], pos[1]])
    if not coeffs[(0, 1)]:
        return {}
    values = {pos: np.concatenate(v) for pos, v in coeffs.items()}
    scores = {}
    for quality in JPEG_QUALITIES:
        cos = []
        for pos, v in values.items():
            step = _quantiser(pos, quality)
            off_zero = v[np.abs(v) >= step / 2]  # the zero bin fits every lattice: left out
            if step >= 2 and off_zero.size >= 50:
                cos.append(float(np.cos(2 * np.pi * off_zero / step).mean()))
        scores[quality] = float(np.mean(cos)) if cos else 0.0
    return scores


def detect_jpeg(images: Sequence[np.ndarray]) -> int | None:
    """The estimated JPEG quality of the images (the lowest quality whose lattice they fit),
    or None when they show no JPEG lattice."""
    scores = jpeg_lattice_scores(images)
    fitting = [q for q, score in scores.items() if score >= JPEG_THRESHOLD]
    return min(fitting) if fitting else None


def candidates(down: str = "bicubic") -> list[Degradation]:
    """The candidate grid."""
    return [
        Degradation(blur=b, down=down, noise=n, jpeg=q)
        for b in BLURS
        for n in NOISES
        for q in JPEGS
    ]


def reference_crops(
    references: Sequence[np.ndarray], scale: int, seed: int = 0
) -> list[np.ndarray]:
    """Up to :data:`REFERENCE_CROPS` HR crops (sides multiples of ``scale``, at most
    :data:`REFERENCE_SIDE`, at least 16 LR pixels) from the reference images."""
    rng = np.random.default_rng(seed)
    crops = []
    order = rng.permutation(len(references))
    for i in range(REFERENCE_CROPS):
        img = references[order[i % len(order)]]
        side_h = min(REFERENCE_SIDE, img.shape[0]) // scale * scale
        side_w = min(REFERENCE_SIDE, img.shape[1]) // scale * scale
        if min(side_h, side_w) < 16 * scale:
            continue
        top = int(rng.integers(0, img.shape[0] - side_h + 1))
        left = int(rng.integers(0, img.shape[1] - side_w + 1))
        crops.append(np.ascontiguousarray(img[top : top + side_h, left : left + side_w]))
    return crops


def estimate_degradation(
    lr_images: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    scale: int,
    seed: int = 0,
    estimate_blur: bool = True,
) -> tuple[Degradation, dict]:
    """The candidate whose synthetic LR statistics are closest to those of ``lr_images``.

    ``references`` are HR images (uint8 RGB). Returns the estimate and a report (the user's
    statistics, the estimate's, the distance). Falls back to clean bicubic when no reference
    is large enough. ``estimate_blur`` False detects JPEG only (blur 0).
    """
    target = image_statistics(lr_images)
    if not estimate_blur:
        jpeg = detect_jpeg(lr_images)
        return Degradation(jpeg=jpeg), {"target": target.__dict__, "jpeg_quality": jpeg}
    crops = reference_crops(references, scale, seed)
    if not crops:
        return Degradation(), {"target": target.__dict__, "note": "no reference large enough"}
    best, best_dist, best_stats = Degradation(), float("inf"), None
    goal = target.vector()
    blurred: dict[tuple[float, str], list[np.ndarray]] = {}
    jpeg = detect_jpeg(lr_images)
    for cand in [Degradation(blur=b, jpeg=jpeg) for b in BLURS] + [
        Degradation(down=down, jpeg=jpeg) for down in OTHER_DOWNSCALES
    ]:
        rng = np.random.default_rng(seed)
        base = blurred.setdefault(
            (cand.blur, cand.down),
            [Degradation(blur=cand.blur, down=cand.down).apply(c, scale) for c in crops],
        )
        rest = Degradation(noise=cand.noise, jpeg=cand.jpeg)
        lrs = [rest.apply(b, 1, rng) for b in base]
        stats = image_statistics(lrs)
        dist = float(np.sum((stats.vector() - goal) ** 2))
        if dist < best_dist - 1e-12:
            best, best_dist, best_stats = cand, dist, stats
    report = {
        "target": target.__dict__,
        "estimate": best_stats.__dict__ if best_stats else None,
        "distance": best_dist,
        "jpeg_quality": jpeg,
        "reference_crops": len(crops),
    }
    return best, report
