"""Benchmark evaluation with the SR papers' protocol.

HR images are cropped (top-left) to a multiple of the scale, the LR input is the MATLAB-style
bicubic downscale of the crop (uint8), SR outputs are rounded to uint8, and PSNR/SSIM are computed
on the BT.601 Y channel with a border of ``scale`` pixels shaved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .data.image_io import list_images, load_rgb_uint8
from .data.imresize import imresize
from .errors import DualSRError
from .inference import Upscaler
from .metrics import _SSIM_WINDOW, psnr, ssim


@dataclass
class ImageResult:
    """Scores of one image."""

    dataset: str
    image: str
    psnr: float
    ssim: float
    seconds: float


@dataclass
class DatasetResult:
    """Scores of one benchmark folder; means over its images."""

    dataset: str
    images: list[ImageResult] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # image name -> why it failed

    @property
    def psnr(self) -> float:
        """Mean PSNR (dB) over the images (NaN when none was evaluated)."""
        return float(np.mean([r.psnr for r in self.images])) if self.images else float("nan")

    @property
    def ssim(self) -> float:
        """Mean SSIM over the images (NaN when none was evaluated)."""
        return float(np.mean([r.ssim for r in self.images])) if self.images else float("nan")

    @property
    def seconds(self) -> float:
        """Total SR time over the images."""
        return float(sum(r.seconds for r in self.images))

    def summary(self) -> dict:
        """A JSON-friendly summary row."""
        return {
            "dataset": self.dataset,
            "psnr": self.psnr if self.images else None,
            "ssim": self.ssim if self.images else None,
            "images": len(self.images),
            "seconds": self.seconds,
            "failed": dict(self.failed),
        }


def crop_to_scale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Crop H x W (x C) to multiples of ``scale``, keeping the top-left corner."""
    h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
    if h == 0 or w == 0:
        raise DualSRError(
            f"image of size {hr.shape[1]}x{hr.shape[0]} is smaller than the scale {scale}"
        )
    return hr[:h, :w]


def min_eval_size(scale: int) -> int:
    """The smallest side (after cropping to a multiple of ``scale``) that can be scored: PSNR
    and SSIM shave ``scale`` pixels from each border and SSIM needs its 11x11 window in what
    is left."""
    return 2 * scale + _SSIM_WINDOW


def make_pair(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(cropped HR, bicubic LR), both uint8, following the standard protocol. DualSRError if
    the image is too small to be scored (see :func:`min_eval_size`)."""
    hr = crop_to_scale(hr, scale)
    need = min_eval_size(scale)
    if min(hr.shape[:2]) < need:
        raise DualSRError(
            f"image of size {hr.shape[1]}x{hr.shape[0]} is too small to score at x{scale}: "
            f"PSNR/SSIM shave {scale} pixels from each border and SSIM needs an "
            f"{_SSIM_WINDOW}x{_SSIM_WINDOW} window in the rest, so at least {need}x{need}"
        )
    return hr, imresize(hr, 1.0 / scale)


def score(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    """(PSNR, SSIM) on Y with ``scale`` pixels shaved, for uint8 images."""
    return psnr(sr, hr, crop_border=scale), ssim(sr, hr, crop_border=scale)


def benchmark_images(folder: str | Path, name: str | None = None) -> tuple[str, list[Path]]:
    """(dataset name, its HR image files) of a benchmark folder: a folder of images, or one
    with an ``HR/`` subfolder. DualSRError if it is missing or holds no images."""
    folder = Path(folder)
    if folder.is_file():
        raise DualSRError(
            f"--data {folder} is a file: --data takes folders of HR images (or benchmark folders "
            "with an HR/ subfolder) or data set names such as Set5; put the image in a folder "
            "and pass that"
        )
    if not folder.is_dir():
        raise DualSRError(f"data folder not found: {folder}")
    if not list_images(folder) and (folder / "HR").is_dir():
        name = name or folder.name
        folder = folder / "HR"
    files = list_images(folder)
    if not files:
        raise DualSRError(f"no images (png, jpg, bmp, webp, tif) in {folder}")
    return name or folder.name, files


def evaluate_folder(
    upscaler: Upscaler,
    folder: str | Path,
    name: str | None = None,
    on_image: Callable[[ImageResult], None] | None = None,
    on_error: Callable[[Path, DualSRError], None] | None = None,
) -> DatasetResult:
    """Evaluate ``upscaler`` on every image of ``folder`` (HR ground truth).

    An image that cannot be read or scored (smaller than :func:`min_eval_size`) raises
    DualSRError naming the file, unless ``on_error`` is given: then it is called, the image is
    recorded in ``failed`` and the others are evaluated.
    """
    dataset, files = benchmark_images(folder, name)
    result = DatasetResult(dataset)
    for path in files:
        try:
            hr, lr = make_pair(load_rgb_uint8(path), upscaler.scale)
            start = time.perf_counter()
            sr = upscaler(lr)
            seconds = time.perf_counter() - start
            p, s = score(sr, hr, upscaler.scale)
        except (DualSRError, ValueError) as exc:  # ValueError: the metrics refuse the pair
            text = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            if on_error is None:
                raise DualSRError(text) from None
            result.failed[path.name] = text
            on_error(path, DualSRError(text))
            continue
        item = ImageResult(result.dataset, path.name, p, s, seconds)
        result.images.append(item)
        if on_image:
            on_image(item)
    return result


def evaluate(upscaler: Upscaler, folders: Iterable[str | Path]) -> list[DatasetResult]:
    """Evaluate on several benchmark folders."""
    return [evaluate_folder(upscaler, f) for f in folders]


def results_rows(results: Iterable[DatasetResult]) -> list[dict]:
    """Per-image rows (for CSV/JSON output) of the scored images."""
    return [asdict(r) for res in results for r in res.images]


def failed_rows(results: Iterable[DatasetResult]) -> list[dict]:
    """One row per image that could not be scored: dataset, image, error."""
    return [
        {"dataset": res.dataset, "image": image, "error": error}
        for res in results
        for image, error in res.failed.items()
    ]
