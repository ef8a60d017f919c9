"""The image pyramid that DRN is trained on: ``[LR, 2x LR, ..., HR]``.

Level ``l`` of a x``scale`` pyramid is the MATLAB-bicubic downscale of the HR image by
``scale / 2**l`` (each level made from the HR image directly, rounded to uint8 like the standard
benchmark LR). Level 0 is the network input, the last level is the HR image itself.
"""

from __future__ import annotations

import numpy as np

from ..models.drn import num_phases
from .imresize import imresize


def make_pyramid(hr: np.ndarray, scale: int) -> list[np.ndarray]:
    """Pyramid of a uint8 H x W x C image whose sides are multiples of ``scale``."""
    phases = num_phases(scale)
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"HR size {w}x{h} must be a multiple of the scale {scale}; crop it first")
    levels = [
        imresize(hr, output_shape=(h * 2**lvl // scale, w * 2**lvl // scale))
        for lvl in range(phases)
    ]
    return [*levels, hr]
