"""Reading and writing images for SR: 8-bit RGB arrays plus what is needed to write back.

Handled: PNG, JPEG, BMP, WebP, TIFF; EXIF orientation; grayscale (processed as RGB, written back
as grayscale); an alpha channel (returned separately, to be upscaled with bicubic); 16-bit
grayscale (kept at 16 bits through a float path). 16-bit-per-channel colour images are refused
with a clear message, since Pillow decodes them to 8 bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError
from ..fileio import atomic_write

_DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


@dataclass
class LoadedImage:
    """An image ready for SR.

    ``pixels`` is H x W x 3 float32 in [0, 255] (16-bit input keeps its precision, scaled to
    that range); ``alpha`` is H x W float32 in [0, 255] or None; ``grayscale`` and ``bits``
    say how to write the result back.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    grayscale: bool = False
    bits: int = 8

    def rgb_uint8(self) -> np.ndarray:
        """The colour channels as uint8 H x W x 3 (the array itself when it already is)."""
        if self.pixels.dtype == np.uint8:  # no float temporaries: outputs can be GBs
            return self.pixels
        return np.clip(np.rint(self.pixels), 0, 255).astype(np.uint8)


def allow_huge_images(allow: bool = True) -> None:
    """Lift (or restore) Pillow's decompression-bomb limit for this process."""
    Image.MAX_IMAGE_PIXELS = None if allow else _DEFAULT_MAX_PIXELS


def is_image_file(path: Path) -> bool:
    """True for a file with a supported image suffix."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> LoadedImage:
    """Decode ``path``, applying EXIF orientation; ImageError says what is wrong."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            _refuse_16bit_colour(im, path)
            im.load()
            im = ImageOps.exif_transpose(im)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image (unknown format or corrupt file)") from None
    except Image.DecompressionBombError as exc:
        what = str(exc).split(", could be")[0]  # "Image size (N pixels) exceeds limit of M"
        raise ImageError(
            f"{path}: {what} (Pillow's guard against decompression bombs); if you trust the "
            "file, pass --allow-huge"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(
            f"{path}: cannot decode image ({exc}); the file may be truncated"
        ) from None
    return _from_pil(im, path)


def _refuse_16bit_colour(im: Image.Image, path: Path) -> None:
    """Pillow silently decodes 16-bit RGB(A) to 8 bits; detect that from the raw mode."""
    for tile in getattr(im, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if im.mode in ("RGB", "RGBA") and isinstance(rawmode, str) and ";16" in rawmode:
            raise ImageError(
                f"{path}: 16-bit-per-channel colour images are not supported "
                "(Pillow would truncate them to 8 bits); convert to 8-bit RGB first"
            )


def _from_pil(im: Image.Image, path: Path) -> LoadedImage:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        if mode == "I" and arr.max(initial=0) > 65535:
            raise ImageError(
                f"{path}: 32-bit integer images are not supported; convert to 8 or 16 bits"
            )
        gray = (arr * (255.0 / 65535.0)).astype(np.float32)
        return LoadedImage(np.repeat(gray[..., None], 3, axis=2), None, True, 16)
    if mode == "F":
        raise ImageError(
            f"{path}: floating-point images are not supported; convert to 8 or 16 bits"
        )
    alpha = None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("LA" if mode == "LA" else "RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32)
        im = rgba
    grayscale = im.mode in ("L", "LA", "1")
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    return LoadedImage(np.ascontiguousarray(rgb), alpha, grayscale, 8)


def to_pil(image: LoadedImage) -> Image.Image:
    """Convert a (processed) LoadedImage back to a Pillow image in its original kind."""
    if image.bits == 16:
        gray = image.pixels.mean(axis=2) * (65535.0 / 255.0)
        return Image.fromarray(np.clip(np.rint(gray), 0, 65535).astype(np.uint16))
    rgb = Image.fromarray(image.rgb_uint8(), "RGB")
    out = rgb.convert("L") if image.grayscale else rgb
    if image.alpha is not None:
        out.putalpha(Image.fromarray(np.clip(np.rint(image.alpha), 0, 255).astype(np.uint8)))
    return out


def write_image(path: str | Path, image: LoadedImage | np.ndarray, quality: int = 95) -> Path:
    """Write atomically; the format follows the suffix. ``image`` may be a uint8 H x W x 3 array."""
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(
            f"{path}: unsupported output format {path.suffix!r}; use one of "
            f"{', '.join(IMAGE_SUFFIXES)}"
        )
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else to_pil(image)
    if fmt in ("JPEG", "BMP") and pil.mode in ("RGBA", "LA"):
        pil = pil.convert("RGB" if pil.mode == "RGBA" else "L")  # these formats drop alpha
    if fmt == "JPEG" and pil.mode == "I;16":
        raise ImageError(f"{path}: JPEG cannot hold 16-bit images; write PNG or TIFF instead")
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    return atomic_write(path, lambda tmp: pil.save(tmp, format=fmt, **kwargs))


def load_rgb_uint8(path: str | Path) -> np.ndarray:
    """Read an image as uint8 RGB H x W x 3 (for evaluation on benchmark folders)."""
    return read_image(path).rgb_uint8()


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files directly inside ``folder``."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
