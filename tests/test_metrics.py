"""Tests for the SR metrics (BT.601 Y, PSNR, SSIM)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dualsr.metrics import psnr, rgb_to_y, ssim


def _pair(shape: tuple[int, ...], seed: int, noise: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """A ground truth uint8 image and a correlated noisy copy (realistic SSIM values)."""
    rng = np.random.default_rng(seed)
    hr = rng.integers(0, 256, size=shape).astype(np.float64)
    hr = (hr + np.roll(hr, 1, axis=0) + np.roll(hr, 1, axis=1)) / 3.0  # some local structure
    sr = hr + rng.normal(0.0, noise, size=shape)
    return (
        np.clip(np.rint(sr), 0, 255).astype(np.uint8),
        np.clip(np.rint(hr), 0, 255).astype(np.uint8),
    )


def _skimage_ssim(a: np.ndarray, b: np.ndarray, channel_axis: int | None = None) -> float:
    metrics = pytest.importorskip("skimage.metrics")
    return float(
        metrics.structural_similarity(
            a,
            b,
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            K1=0.01,
            K2=0.03,
            channel_axis=channel_axis,
        )
    )


# --------------------------------------------------------------------------- rgb_to_y


def test_rgb_to_y_white_black_and_primaries() -> None:
    image = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    y = rgb_to_y(image)
    assert y.dtype == np.float64 and y.shape == (1, 4)
    # White: 16 + (65.481 + 128.553 + 24.966) = 16 + 219 = 235; black: 16.
    np.testing.assert_allclose(y, [[235.0, 16.0, 16 + 65.481, 16 + 24.966]], rtol=0, atol=1e-12)


def test_rgb_to_y_float_input_and_single_channel() -> None:
    rgb = np.full((2, 3, 3), 127.5)
    np.testing.assert_allclose(rgb_to_y(rgb), 16 + 219 * 0.5, rtol=0, atol=1e-12)
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = rgb_to_y(gray)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, gray)
    np.testing.assert_array_equal(rgb_to_y(gray[:, :, None]), gray)


@pytest.mark.parametrize("shape", [(4, 4, 2), (4, 4, 4), (4,), (2, 4, 4, 3)])
def test_rgb_to_y_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="shape"):
        rgb_to_y(np.zeros(shape))


# --------------------------------------------------------------------------- psnr


def test_psnr_golden_values() -> None:
    # Y differs by a constant 5 -> MSE = 25 -> PSNR = 10 log10(255^2 / 25) = 10 log10(2601)
    # = 34.1514 dB. Grayscale input is already Y.
    hr = np.full((16, 16), 100, dtype=np.uint8)
    assert psnr(hr + 5, hr, crop_border=0) == pytest.approx(10 * math.log10(2601), abs=1e-12)
    assert psnr(hr + 5, hr, crop_border=0) == pytest.approx(34.1514, abs=1e-4)
    # RGB: adding 85 to R, G and B raises Y by 85 * 219 / 255 = 73 exactly -> MSE 73^2 = 5329
    # -> 10 log10(65025 / 5329) = 10 log10(12.2021) = 10.8643 dB.
    rgb = np.full((16, 16, 3), 60, dtype=np.uint8)
    assert psnr(rgb + 85, rgb, crop_border=2) == pytest.approx(10.8643, abs=1e-4)
    # Same pair on RGB channels: every channel differs by 85 -> 10 log10(65025 / 7225) = 9.5424.
    value = psnr(rgb + 85, rgb, crop_border=2, y_channel=False)
    assert value == pytest.approx(10 * math.log10(9.0), abs=1e-12)


def test_psnr_identical_is_inf() -> None:
    sr, _ = _pair((20, 20, 3), seed=0)
    assert psnr(sr, sr.copy(), crop_border=4) == math.inf
    assert psnr(sr, sr.copy(), crop_border=0, y_channel=False) == math.inf


def test_psnr_matches_skimage_on_y_and_rgb() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    sr, hr = _pair((40, 36, 3), seed=1)
    for crop in (0, 4):
        window = (slice(crop, 40 - crop), slice(crop, 36 - crop))
        expected_y = metrics.peak_signal_noise_ratio(
            rgb_to_y(hr[window]), rgb_to_y(sr[window]), data_range=255
        )
        assert psnr(sr, hr, crop_border=crop) == pytest.approx(expected_y, abs=1e-10)
        expected_rgb = metrics.peak_signal_noise_ratio(
            hr[window].astype(np.float64), sr[window].astype(np.float64), data_range=255
        )
        value = psnr(sr, hr, crop_border=crop, y_channel=False)
        assert value == pytest.approx(expected_rgb, abs=1e-10)


def test_psnr_y_is_not_rounded() -> None:
    sr, hr = _pair((24, 24, 3), seed=2)
    mse = np.mean((rgb_to_y(sr) - rgb_to_y(hr)) ** 2)
    rounded = np.mean((np.rint(rgb_to_y(sr)) - np.rint(rgb_to_y(hr))) ** 2)
    assert mse != rounded
    assert psnr(sr, hr, crop_border=0) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-12)


# --------------------------------------------------------------------------- ssim


def test_ssim_matches_skimage_on_gray_and_rgb() -> None:
    sr, hr = _pair((48, 41, 3), seed=3)
    expected = _skimage_ssim(sr, hr, channel_axis=2)
    assert ssim(sr, hr, crop_border=0, y_channel=False) == pytest.approx(expected, abs=1e-6)
    expected_gray = _skimage_ssim(sr[:, :, 1], hr[:, :, 1])
    assert ssim(sr[:, :, 1], hr[:, :, 1], crop_border=0) == pytest.approx(expected_gray, abs=1e-6)
    assert 0.1 < expected < 0.99  # a non-trivial comparison


def test_ssim_matches_skimage_on_y_channel_with_crop() -> None:
    sr, hr = _pair((50, 44, 3), seed=4, noise=6.0)
    for crop in (0, 3):
        window = (slice(crop, 50 - crop), slice(crop, 44 - crop))
        expected = _skimage_ssim(rgb_to_y(sr[window]), rgb_to_y(hr[window]))
        assert ssim(sr, hr, crop_border=crop) == pytest.approx(expected, abs=1e-6)


def test_ssim_matches_skimage_on_random_images() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)
    b = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)
    assert ssim(a, b, crop_border=0) == pytest.approx(_skimage_ssim(a, b), abs=1e-6)


def test_ssim_identical_is_one() -> None:
    sr, _ = _pair((30, 30, 3), seed=6)
    assert ssim(sr, sr.copy(), crop_border=4) == pytest.approx(1.0, abs=1e-12)
    assert ssim(sr, sr.copy(), crop_border=0, y_channel=False) == pytest.approx(1.0, abs=1e-12)


def test_ssim_uses_valid_window_only() -> None:
    # An 11x11 image has a single valid window position: the result is that one SSIM value.
    sr, hr = _pair((11, 11), seed=7)
    taps = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    window = np.outer(taps, taps) / taps.sum() ** 2
    x, y = sr.astype(np.float64), hr.astype(np.float64)
    mx, my = (window * x).sum(), (window * y).sum()
    vx = (window * x * x).sum() - mx**2
    vy = (window * y * y).sum() - my**2
    cxy = (window * x * y).sum() - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ssim(sr, hr, crop_border=0) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------- shared behaviour


def test_crop_border_ignores_differences_in_the_border() -> None:
    hr, _ = _pair((32, 32, 3), seed=8)
    sr = hr.copy()
    sr[:3] = 0
    sr[:, -3:] = 255
    assert psnr(sr, hr, crop_border=3) == math.inf
    assert ssim(sr, hr, crop_border=3) == pytest.approx(1.0, abs=1e-12)
    assert psnr(sr, hr, crop_border=2) < 40
    assert ssim(sr, hr, crop_border=0) < 1.0


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_shape_mismatch_names_both_shapes(metric) -> None:  # type: ignore[no-untyped-def]
    a = np.zeros((20, 20, 3), dtype=np.uint8)
    b = np.zeros((20, 24, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"\(20, 20, 3\).*\(20, 24, 3\)"):
        metric(a, b, crop_border=0)


@pytest.mark.parametrize("metric", [psnr, ssim])
@pytest.mark.parametrize("crop", [-1, 1.5, 10])
def test_bad_crop_border_raises(metric, crop: object) -> None:  # type: ignore[no-untyped-def]
    a = np.zeros((20, 20), dtype=np.uint8)
    with pytest.raises(ValueError, match="crop_border"):
        metric(a, a, crop_border=crop)


def test_ssim_needs_a_full_window() -> None:
    a = np.zeros((20, 20), dtype=np.uint8)
    with pytest.raises(ValueError, match="11x11"):
        ssim(a, a, crop_border=5)
