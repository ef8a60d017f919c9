"""The images an adaptation learns from: the user's LR images and the optional paired HR data.

Inputs are found the way ``dualsr upscale`` finds them (files, folders, globs) and decoded with
the same reader (EXIF orientation, grayscale and 16-bit handled). Every check that can fail is
made before any training, each with one line that names the file and the fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.image_io import list_images, read_image
from ..errors import DualSRError, ImageError
from ..tiling import available_memory_bytes

#: The smallest LR side an adaptation image may have, in pixels.
MIN_SIDE = 16
#: The least LR pixels all images together must hold (a 64 x 64 image).
MIN_PIXELS = 64 * 64
#: Decoding holds float32 RGB plus the uint8 copy: bytes per pixel while reading.
_READ_BYTES_PER_PIXEL = 3 * 4 + 3


def find_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from files, folders and globs; DualSRError when something is missing."""
    from ..cli.upscale import expand_inputs

    files, problems = expand_inputs([str(i) for i in inputs])
    if problems:
        raise DualSRError(f"{problems[0]}; give LR image files, folders or globs")
    return [f.path for f in files]


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header, without decoding; ImageError when unreadable."""
    try:
        with Image.open(path) as im:
            return im.size
    except Image.DecompressionBombError:
        return read_image(path).pixels.shape[1::-1]  # raises the reader's one-line error
    except (OSError, ValueError):
        raise ImageError(f"{path}: not a readable image (unknown format or corrupt file)") from None


def load_lr_images(inputs: Sequence[str | Path], min_side: int = MIN_SIDE) -> list[np.ndarray]:
    """The user's LR images as uint8 RGB arrays.

    Images smaller than ``min_side`` are skipped with a warning; DualSRError when none is
    left, when they hold fewer than :data:`MIN_PIXELS` pixels together, or when one would not
    fit in memory.
    """
    paths = find_inputs(inputs)
    if not paths:
        raise DualSRError("no LR images given; pass image files, folders or globs")
    free = available_memory_bytes()
    images, small = [], []
    for path in paths:
        w, h = image_size(path)
        if free is not None and w * h * _READ_BYTES_PER_PIXEL > free // 2:
            raise DualSRError(
                f"{path}: {w}x{h} is too large to adapt on in the memory available "
                f"({free / 2**30:.1f} GiB); crop it into parts or downscale it first"
            )
        if min(w, h) < min_side:
            small.append(f"{path.name} ({w}x{h})")
            continue
        images.append(read_image(path).rgb_uint8())
    if small:
        what = ", ".join(small[:3]) + (f" and {len(small) - 3} more" if len(small) > 3 else "")
        if not images:
            raise DualSRError(
                f"every LR image is smaller than {min_side} pixels a side ({what}); adapt on "
                "larger images"
            )
        warnings.warn(
            f"skipped {len(small)} images under {min_side} pixels a side: {what}", stacklevel=2
        )
    total = sum(img.shape[0] * img.shape[1] for img in images)
    if total < MIN_PIXELS:
        raise DualSRError(
            f"too little to adapt on: {len(images)} LR images with {total} pixels in all; give "
            f"at least {MIN_PIXELS} pixels (e.g. one 64x64 image), better several photos"
        )
    return images


def load_paired_hr(folders: Sequence[str | Path], scale: int) -> list[np.ndarray]:
    """The HR images of the paired data folders (a folder, or its ``HR/`` subfolder, as
    ``dualsr train`` reads them), cropped to multiples of ``scale``; images under 16 LR pixels a
    side are skipped."""
    from ..data.dataset import hr_folder
    from ..errors import ConfigError

    images = []
    for folder in folders:
        try:
            files = list_images(hr_folder(Path(folder)))
        except ConfigError:
            raise DualSRError(f"--paired {folder}: folder not found") from None
        if not files:
            raise DualSRError(f"--paired {folder}: no images (png, jpg, bmp, webp, tif)")
        for path in files:
            hr = read_image(path).rgb_uint8()
            h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
            if min(h, w) >= 16 * scale:
                images.append(np.ascontiguousarray(hr[:h, :w]))
    if folders and not images:
        raise DualSRError(
            f"--paired: no HR image is at least {16 * scale} pixels a side; give larger images"
        )
    return images
