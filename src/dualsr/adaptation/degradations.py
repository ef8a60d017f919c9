"""Synthetic degradations: how an LR image is made from an HR one, beyond MATLAB bicubic.

A :class:`Degradation` is, in order: a Gaussian blur of the HR image (``blur`` = sigma in HR
pixels, 0 = none), a downscale by the model's scale (``down``: ``bicubic`` = MATLAB-compatible
:func:`dualsr.imresize`, antialiased; ``nearest`` = every ``scale``-th pixel, no filtering),
additive Gaussian noise (``noise`` = sigma in 0..255 units, 0 = none) and a JPEG round trip of
the LR image (``jpeg`` = quality 1..100, None = none). Written as a spec string, e.g.
``blur=1.6,jpeg=75`` (``bicubic`` is the clean default, every field at rest).

``dualsr adapt`` uses them to synthesise paired data that look like the user's LR images, and
``experiments/adapt_degradations.py`` to make degraded test sets from HR benchmarks.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from ..data.imresize import imresize
from ..errors import ConfigError

DOWNSCALES = ("bicubic", "nearest")


@dataclass(frozen=True)
class Degradation:
    """HR -> LR: blur (sigma, HR pixels), downscale kind, noise (sigma, 0..255), JPEG quality."""

    blur: float = 0.0
    down: str = "bicubic"
    noise: float = 0.0
    jpeg: int | None = None

    def __post_init__(self) -> None:
        if self.blur < 0 or self.noise < 0:
            raise ConfigError(f"degradation: blur and noise must be >= 0, got {self}")
        if self.down not in DOWNSCALES:
            raise ConfigError(
                f"degradation: unknown downscale {self.down!r}; choose {' or '.join(DOWNSCALES)}"
            )
        if self.jpeg is not None and not 1 <= self.jpeg <= 100:
            raise ConfigError(f"degradation: JPEG quality must be 1..100, got {self.jpeg}")

    @property
    def is_clean(self) -> bool:
        """True for plain MATLAB bicubic (what the shipped models were trained on)."""
        return self == Degradation()

    def spec(self) -> str:
        """The spec string :func:`parse_degradation` reads back (``bicubic`` when clean)."""
        parts = []
        if self.blur:
            parts.append(f"blur={self.blur:g}")
        if self.down != "bicubic":
            parts.append(f"down={self.down}")
        if self.noise:
            parts.append(f"noise={self.noise:g}")
        if self.jpeg is not None:
            parts.append(f"jpeg={self.jpeg}")
        return ",".join(parts) or "bicubic"

    def to_dict(self) -> dict:
        """JSON-friendly fields."""
        return asdict(self)

    def apply(
        self, hr: np.ndarray, scale: int, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """The uint8 LR image of a uint8 H x W x 3 ``hr`` whose sides are multiples of ``scale``.

        ``rng`` draws the noise (a fixed seed when None, so a call is reproducible).
        """
        h, w = hr.shape[:2]
        if h % scale or w % scale:
            raise ValueError(f"HR size {w}x{h} must be a multiple of the scale {scale}")
        image = hr
        if self.blur > 0:
            image = gaussian_blur(hr.astype(np.float32), self.blur)
            image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        if scale == 1:
            lr = image
        elif self.down == "nearest":
            off = scale // 2 - 1 if scale > 1 else 0
            lr = np.ascontiguousarray(image[off::scale, off::scale][: h // scale, : w // scale])
        else:
            lr = imresize(image, output_shape=(h // scale, w // scale))
        if self.noise > 0:
            rng = rng if rng is not None else np.random.default_rng(0)
            noisy = lr.astype(np.float32) + rng.normal(0.0, self.noise, lr.shape)
            lr = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        if self.jpeg is not None:
            lr = jpeg_round_trip(lr, self.jpeg)
        return lr


def parse_degradation(spec: str) -> Degradation:
    """``bicubic`` or comma-separated ``key=value`` (keys blur, down, noise, jpeg), e.g.
    ``blur=1.2,jpeg=60``; ConfigError names a bad key or value."""
    text = spec.strip().lower()
    if text in ("", "bicubic", "clean", "none"):
        return Degradation()
    fields: dict = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in ("blur", "down", "noise", "jpeg"):
            raise ConfigError(
                f"degradation {spec!r}: expected key=value pairs with keys blur, down, noise, "
                "jpeg (e.g. blur=1.6,jpeg=75), or 'bicubic'"
            )
        try:
            fields[key] = value if key == "down" else int(value) if key == "jpeg" else float(value)
        except ValueError:
            raise ConfigError(f"degradation {spec!r}: {key}={value!r} is not a number") from None
    return Degradation(**fields)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian of radius ceil(3 sigma)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-(x**2) / (2 * sigma**2))
    return (taps / taps.sum()).astype(np.float32)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a float H x W (x C) image, edges reflected (float32 out)."""
    import torch
    import torch.nn.functional as F

    taps = torch.from_numpy(gaussian_kernel(sigma))
    radius = len(taps) // 2
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    planes = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
    planes = planes.unsqueeze(1)  # C x 1 x H x W
    mode = "reflect" if min(planes.shape[-2:]) > radius else "replicate"
    planes = F.pad(planes, (radius, radius, radius, radius), mode=mode)
    planes = F.conv2d(planes, taps.view(1, 1, 1, -1))
    planes = F.conv2d(planes, taps.view(1, 1, -1, 1))[:, 0]
    out = planes[0] if x.ndim == 2 else planes.permute(1, 2, 0)
    return out.numpy()


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode a uint8 RGB image as JPEG at ``quality`` (4:2:0, as cameras do) and decode it."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.asarray(im.convert("RGB")).copy()
