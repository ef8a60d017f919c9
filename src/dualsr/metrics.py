"""Super-resolution quality metrics following the usual SR evaluation protocol.

* PSNR and SSIM are computed on 8-bit images (values 0..255), after removing ``crop_border``
  pixels from every side (the border shave, usually equal to the SR scale).
* With ``y_channel=True`` (the default) RGB images are first converted to the luma channel Y of
  ITU-R BT.601 (range 16..235) in float64, without re-rounding to integers.
* SSIM follows Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
  K2 = 0.03, L = 255, evaluated only where the window fits entirely inside the image ('valid'
  filtering, no padding) and averaged over that map; for RGB the per-channel SSIMs are averaged.

Only numpy is needed at runtime.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["rgb_to_y", "psnr", "ssim"]

_DATA_RANGE = 255.0
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
# BT.601 luma for R, G, B in 0..255: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255.
_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64) / 255.0
_Y_OFFSET = 16.0


def _as_numeric(image: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(f"{name} must have an integer or floating dtype, got {array.dtype}")
    return array


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Convert an RGB image (values 0..255) to BT.601 luma Y (16..235) as float64.

    Args:
        image: ``H x W x 3`` RGB array, uint8 or float in 0..255. A single-channel ``H x W``
            (or ``H x W x 1``) image is taken to be Y already and returned as ``H x W`` float64.

    Returns:
        ``H x W`` float64 array ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``.

    Raises:
        ValueError: if the image is not ``H x W``, ``H x W x 1`` or ``H x W x 3``.
    """
    array = _as_numeric(image, "image")
    if array.ndim == 2:
        return array.astype(np.float64)
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0].astype(np.float64)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be HxW, HxWx1 or HxWx3 RGB, got shape {array.shape}")
    return array.astype(np.float64) @ _Y_COEFFS + _Y_OFFSET


def _prepare_pair(
    sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Validate, crop and convert a pair to float64 ``H x W x C`` arrays."""
    sr_arr = _as_numeric(sr, "sr")
    hr_arr = _as_numeric(hr, "hr")
    if sr_arr.shape != hr_arr.shape:
        raise ValueError(
            f"sr and hr must have the same shape, got sr {sr_arr.shape} and hr {hr_arr.shape}"
        )
    if sr_arr.ndim not in (2, 3):
        raise ValueError(f"images must be HxW or HxWxC, got shape {sr_arr.shape}")
    if (
        isinstance(crop_border, bool)
        or not isinstance(crop_border, (int, np.integer))
        or crop_border < 0
    ):
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    crop = int(crop_border)
    height, width = sr_arr.shape[:2]
    if height - 2 * crop < 1 or width - 2 * crop < 1:
        raise ValueError(f"crop_border={crop} leaves nothing of images of size {height}x{width}")
    if crop:
        sr_arr = sr_arr[crop:-crop, crop:-crop]
        hr_arr = hr_arr[crop:-crop, crop:-crop]
    if y_channel:
        return rgb_to_y(sr_arr)[:, :, None], rgb_to_y(hr_arr)[:, :, None]
    sr_f = sr_arr.astype(np.float64)
    hr_f = hr_arr.astype(np.float64)
    if sr_f.ndim == 2:
        return sr_f[:, :, None], hr_f[:, :, None]
    return sr_f, hr_f


def psnr(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB between two 8-bit images (peak 255).

    Args:
        sr: super-resolved image, ``H x W x 3`` RGB or ``H x W``, values 0..255 (uint8).
        hr: ground-truth image of the same shape.
        crop_border: pixels removed from each of the four sides before comparing.
        y_channel: compare BT.601 luma Y (float64, not re-rounded) instead of all channels.

    Returns:
        ``10 * log10(255**2 / MSE)``; ``inf`` when the (cropped) images are identical.

    Raises:
        ValueError: on a shape mismatch, a bad ``crop_border`` or an unsupported shape.
    """
    sr_f, hr_f = _prepare_pair(sr, hr, crop_border, y_channel)
    mse = float(np.mean((sr_f - hr_f) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(_DATA_RANGE**2 / mse)


def _gaussian_window(size: int = _SSIM_WINDOW, sigma: float = _SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps; their outer product is the 2-D SSIM window."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return taps / taps.sum()


def _filter_valid(image: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D float64 image with ``taps`` on both axes."""
    size = taps.shape[0]
    out_h = image.shape[0] - size + 1
    out_w = image.shape[1] - size + 1
    rows = taps[0] * image[:out_h]
    for k in range(1, size):
        rows += taps[k] * image[k : k + out_h]
    result = taps[0] * rows[:, :out_w]
    for k in range(1, size):
        result += taps[k] * rows[:, k : k + out_w]
    return result


def _ssim_plane(x: np.ndarray, y: np.ndarray, taps: np.ndarray) -> float:
    """Mean SSIM of two 2-D float64 planes over the valid region."""
    c1 = (_SSIM_K1 * _DATA_RANGE) ** 2
    c2 = (_SSIM_K2 * _DATA_RANGE) ** 2
    mu_x = _filter_valid(x, taps)
    mu_y = _filter_valid(y, taps)
    mu_xx = mu_x * mu_x
    mu_yy = mu_y * mu_y
    mu_xy = mu_x * mu_y
    var_x = _filter_valid(x * x, taps) - mu_xx
    var_y = _filter_valid(y * y, taps) - mu_yy
    cov_xy = _filter_valid(x * y, taps) - mu_xy
    numerator = (2.0 * mu_xy + c1) * (2.0 * cov_xy + c2)
    denominator = (mu_xx + mu_yy + c1) * (var_x + var_y + c2)
    return float(np.mean(numerator / denominator))


def ssim(sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool = True) -> float:
    """Structural similarity (Wang et al. 2004) between two 8-bit images.

    Gaussian 11x11 window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 255; the SSIM map is
    computed only where the window fits inside the (cropped) image and then averaged. For RGB
    input with ``y_channel=False`` the result is the mean of the three per-channel SSIMs.

    Args:
        sr: super-resolved image, ``H x W x 3`` RGB or ``H x W``, values 0..255 (uint8).
        hr: ground-truth image of the same shape.
        crop_border: pixels removed from each of the four sides before comparing.
        y_channel: compare BT.601 luma Y (float64, not re-rounded) instead of all channels.

    Returns:
        The mean SSIM (1.0 for identical images).

    Raises:
        ValueError: on a shape mismatch, a bad ``crop_border``, an unsupported shape, or a
            cropped image smaller than the 11x11 window.
    """
    sr_f, hr_f = _prepare_pair(sr, hr, crop_border, y_channel)
    if sr_f.shape[0] < _SSIM_WINDOW or sr_f.shape[1] < _SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels after cropping, "
            f"got {sr_f.shape[0]}x{sr_f.shape[1]}"
        )
    taps = _gaussian_window()
    values = [_ssim_plane(sr_f[:, :, c], hr_f[:, :, c], taps) for c in range(sr_f.shape[2])]
    return float(np.mean(values))
