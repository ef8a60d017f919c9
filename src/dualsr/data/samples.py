"""Sample images for the demo: photographs that scikit-image ships in its wheel, or, without it,
a generated test pattern. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SKIMAGE_SAMPLES = ("astronaut.png", "chelsea.png", "coffee.png")


def sample_images() -> dict[str, np.ndarray]:
    """Named uint8 RGB sample images (scikit-image's bundled photos if installed)."""
    try:
        import skimage.data
    except ImportError:
        return {"pattern": synthetic_image()}
    from PIL import Image

    folder = Path(skimage.data.__file__).parent
    images = {}
    for name in SKIMAGE_SAMPLES:
        path = folder / name
        if path.is_file():
            with Image.open(path) as im:
                images[path.stem] = np.asarray(im.convert("RGB"))
    return images or {"pattern": synthetic_image()}


def synthetic_image(height: int = 192, width: int = 256, seed: int = 0) -> np.ndarray:
    """A deterministic RGB test pattern with edges, rings, gradients and texture (uint8)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    cy, cx = height / 2, width / 2
    r = np.hypot(y - cy, x - cx)
    rings = 0.5 + 0.5 * np.cos(r**2 / (0.9 * max(height, width)))
    stripes = (np.floor(x / 12) + np.floor(y / 12)) % 2
    grad = x / width
    noise = rng.normal(0, 0.03, size=(height, width))
    img = (
        np.stack(
            [0.6 * rings + 0.4 * grad, 0.5 * stripes + 0.5 * rings, 0.7 * grad + 0.3 * stripes],
            axis=-1,
        )
        + noise[..., None]
    )
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
