"""Reading and writing images for SR: 8-bit RGB arrays plus what is needed to write back.

Handled: PNG, JPEG, BMP, WebP, TIFF; EXIF orientation; grayscale (processed as RGB, written back
as grayscale); an alpha channel (returned separately, to be upscaled with bicubic); 16-bit
grayscale (kept at 16 bits through a float path). 16-bit-per-channel colour images are refused
with a clear message, since Pillow decodes them to 8 bits. The ICC profile, EXIF (orientation
reset to 1 once applied) and DPI are carried to the written image where its format holds them.
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
#: JPEG/WebP quality of written images unless told otherwise (1-100).
DEFAULT_QUALITY = 95
#: zlib level of written PNGs unless told otherwise (0-9). Level 1 (OpenCV's default too)
#: encodes SR outputs 4.7x faster than Pillow's level 6 for files 13% larger (Set14 outputs of
#: drn-t-x4; benchmarks/results/bench_png_write_*.txt). The pixels are the same at every level.
DEFAULT_PNG_COMPRESSION = 1
#: The EXIF orientation tag.
_ORIENTATION = 0x0112
#: The metadata each output format can hold (Pillow's save keywords).
_FORMAT_METADATA = {
    "PNG": ("icc_profile", "exif", "dpi"),
    "JPEG": ("icc_profile", "exif", "dpi"),
    "WEBP": ("icc_profile", "exif"),
    "TIFF": ("icc_profile", "exif", "dpi"),
    "BMP": ("dpi",),
}
#: A JPEG APP1 segment holds at most this many bytes of EXIF.
_JPEG_MAX_EXIF = 65533
#: Image suffixes that Pillow may not know but are clearly images, not folder names.
_OTHER_IMAGE_SUFFIXES = (".heic", ".heif", ".avif", ".jxl", ".svg", ".dng", ".cr2", ".nef", ".arw")
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
    say how to write the result back. ``icc_profile`` (bytes), ``exif`` (bytes, orientation
    reset to 1 when it was applied) and ``dpi`` are the source's, written back where the
    output format holds them (the DPI is kept as it is: the upscaled image prints larger).
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    grayscale: bool = False
    bits: int = 8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None

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


def can_write(suffix: str) -> bool:
    """Whether images can be written with file suffix ``suffix`` (``.png``, ...)."""
    return suffix.lower() in _SAVE_FORMATS


def is_unwritable_image_suffix(suffix: str) -> bool:
    """Whether ``suffix`` names an image format that dualsr cannot write (``.gif``, ``.heic``,
    ...): an output path ending so is a mistake, not a folder name."""
    suffix = suffix.lower()
    if not suffix or can_write(suffix):
        return False
    return suffix in Image.registered_extensions() or suffix in _OTHER_IMAGE_SUFFIXES


def writable_formats() -> str:
    """The writable suffixes, for messages: ``png, jpg, jpeg, bmp, webp, tif, tiff``."""
    return ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES)


def check_quality(quality: int) -> int:
    """``quality`` if it is a JPEG/WebP quality (1-100), else ValueError."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be a whole number from 1 to 100, got {quality!r}")
    return quality


def check_png_compression(level: int) -> int:
    """``level`` if it is a PNG (zlib) compression level (0-9), else ValueError."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise ValueError(f"PNG compression must be a whole number from 0 to 9, got {level!r}")
    return level


def read_image(path: str | Path) -> LoadedImage:
    """Decode ``path``, applying EXIF orientation; ImageError says what is wrong."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            _refuse_16bit_colour(im, path)
            im.load()
            orientation = im.getexif().get(_ORIENTATION)
            im = ImageOps.exif_transpose(im)
            meta = _metadata(im, orientation is not None)
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
    image = _from_pil(im, path)
    image.icc_profile, image.exif, image.dpi = meta
    return image


def _metadata(
    im: Image.Image, had_orientation: bool
) -> tuple[bytes | None, bytes | None, tuple[float, float] | None]:
    """(ICC profile, EXIF bytes, DPI) of an opened image whose orientation was applied; the
    EXIF orientation, if there was one, becomes 1 (normal), since the pixels are upright now."""
    icc = im.info.get("icc_profile") or None
    exif = None
    try:
        exif_data = im.getexif()
        if len(exif_data):
            if had_orientation:
                exif_data[_ORIENTATION] = 1
            exif = exif_data.tobytes()
    except Exception:  # noqa: BLE001 - damaged EXIF: the pixels are still fine, drop it
        exif = None
    dpi = im.info.get("dpi")
    if dpi is not None:
        try:
            dpi = (float(dpi[0]), float(dpi[1]))
        except (TypeError, ValueError, IndexError):
            dpi = None
    return icc, exif, dpi if dpi and dpi[0] > 0 and dpi[1] > 0 else None


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


def write_image(
    path: str | Path,
    image: LoadedImage | np.ndarray,
    quality: int = DEFAULT_QUALITY,
    png_compression: int = DEFAULT_PNG_COMPRESSION,
) -> Path:
    """Write atomically; the format follows the suffix. ``image`` may be a uint8 H x W x 3 array.

    ``quality`` (1-100) applies to JPEG and WebP; ``png_compression`` (zlib level 0-9: higher
    is smaller and slower, the pixels are the same) to PNG. A LoadedImage's ICC profile, EXIF
    and DPI are written where the format holds them (PNG, JPEG, TIFF: all three; WebP: ICC and
    EXIF; BMP: DPI); EXIF too large for a JPEG segment (64 KB) is left out.
    """
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageError(
            f"{path}: unsupported output format {path.suffix!r}; use one of {writable_formats()}"
        )
    check_quality(quality)
    check_png_compression(png_compression)
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else to_pil(image)
    if fmt in ("JPEG", "BMP") and pil.mode in ("RGBA", "LA"):
        pil = pil.convert("RGB" if pil.mode == "RGBA" else "L")  # these formats drop alpha
    if fmt == "JPEG" and pil.mode == "I;16":
        raise ImageError(f"{path}: JPEG cannot hold 16-bit images; write PNG or TIFF instead")
    kwargs: dict = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "PNG":
        kwargs["compress_level"] = png_compression
    if isinstance(image, LoadedImage):
        meta = {"icc_profile": image.icc_profile, "exif": image.exif, "dpi": image.dpi}
        if fmt == "JPEG" and image.exif is not None and len(image.exif) > _JPEG_MAX_EXIF:
            meta["exif"] = None
        kwargs.update({k: meta[k] for k in _FORMAT_METADATA[fmt] if meta[k] is not None})
    return atomic_write(path, lambda tmp: pil.save(tmp, format=fmt, **kwargs))


def load_rgb_uint8(path: str | Path) -> np.ndarray:
    """Read an image as uint8 RGB H x W x 3 (for evaluation on benchmark folders)."""
    return read_image(path).rgb_uint8()


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files directly inside ``folder``."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
