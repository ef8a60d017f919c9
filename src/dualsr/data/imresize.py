"""MATLAB-compatible bicubic image resizing.

This module reproduces MATLAB's ``imresize(image, scale, 'bicubic')`` (with its default
antialiasing) for numpy images, and offers the same linear operator for batches of torch
tensors so that the training data pipeline and the evaluation protocol agree.

The resize is separable. For each axis, every output sample ``x`` (1-based) is centred on the
input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``. The cubic convolution kernel
(Keys, a = -0.5) is evaluated at the distance from ``u`` to each of the ``ceil(width) + 2``
nearest input samples; when downscaling the kernel is stretched by ``1 / scale`` (and its values
multiplied by ``scale``) so that it acts as a low-pass filter. The weights of each output sample
are normalised to sum to one, and input indices falling outside the image are mirrored
symmetrically (``..., 2, 1, 1, 2, ..., n, n, n-1, ...``). MATLAB resizes the axis with the
smallest scale factor first, which this implementation mirrors.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

__all__ = ["imresize", "imresize_torch", "resize_matrix", "output_size"]

_KERNEL_WIDTH = 4.0  # support of the bicubic kernel, in input samples, at scale 1


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (the kernel MATLAB uses)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0))
    return inner + outer


def _check_scale(scale: float) -> float:
    try:
        value = float(scale)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scale must be a positive number, got {scale!r}") from exc
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return value


def _check_lengths(in_len: int, out_len: int) -> None:
    if in_len < 1:
        raise ValueError(f"input length must be >= 1, got {in_len}")
    if out_len < 1:
        raise ValueError(f"output length must be >= 1, got {out_len}")


@lru_cache(maxsize=256)
def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-sample input indices (0-based, mirrored) and normalised weights.

    Returns two read-only arrays of shape ``(out_len, taps)``: ``indices`` (int64) and
    ``weights`` (float64). Each row of ``weights`` sums to one.
    """
    _check_lengths(in_len, out_len)
    scale = _check_scale(scale)
    antialias = scale < 1.0  # MATLAB's default antialiasing: widen the kernel when shrinking
    kernel_width = _KERNEL_WIDTH / scale if antialias else _KERNEL_WIDTH

    x = np.arange(1, out_len + 1, dtype=np.float64)
    centre = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(centre - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based positions
    dist = centre[:, None] - idx
    weights = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)

    # Symmetric padding: the sequence 1..n, n..1 repeats with period 2n.
    period = 2 * in_len
    pos = np.mod(idx.astype(np.int64) - 1, period)  # 0-based position within the period
    indices = np.where(pos < in_len, pos, period - 1 - pos)

    # Drop tap columns that carry no weight for any output sample (cheaper gathers).
    keep = np.any(weights != 0.0, axis=0)
    indices = np.ascontiguousarray(indices[:, keep])
    weights = np.ascontiguousarray(weights[:, keep])
    indices.setflags(write=False)
    weights.setflags(write=False)
    return indices, weights


@lru_cache(maxsize=256)
def resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """Return the dense ``(out_len, in_len)`` float64 matrix resizing one axis.

    Multiplying a signal of length ``in_len`` by this matrix gives MATLAB's bicubic resize of
    that signal to ``out_len`` samples, with ``scale`` the factor used for the kernel
    (MATLAB's scale: the one passed by the user, or ``out_len / in_len`` when an output size is
    given). Rows sum to one. The result is cached and returned read-only; copy it before
    modifying it.
    """
    indices, weights = _contributions(int(in_len), int(out_len), float(scale))
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], indices.shape)
    # Mirrored taps may hit the same input sample twice: accumulate, do not overwrite.
    np.add.at(matrix, (rows, indices), weights)
    matrix.setflags(write=False)
    return matrix


def output_size(
    in_shape: tuple[int, int],
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Return MATLAB's output size ``(H_out, W_out)`` and per-axis scales for a resize.

    Exactly one of ``scale`` and ``output_shape`` must be given. With ``scale`` the output size
    is ``ceil(in * scale)`` per axis and both axes use ``scale``; with ``output_shape`` each axis
    uses the scale ``out / in``.
    """
    if (scale is None) == (output_shape is None):
        raise ValueError("exactly one of scale and output_shape must be given")
    h, w = int(in_shape[0]), int(in_shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"image must be non-empty, got spatial shape {(h, w)}")
    if scale is not None:
        s = _check_scale(scale)
        return (math.ceil(h * s), math.ceil(w * s)), (s, s)
    assert output_shape is not None
    if len(output_shape) != 2:
        raise ValueError(f"output_shape must be (height, width), got {output_shape!r}")
    oh, ow = (int(v) for v in output_shape)
    if oh < 1 or ow < 1 or (oh, ow) != tuple(output_shape):
        raise ValueError(f"output_shape must hold two positive integers, got {output_shape!r}")
    return (oh, ow), (oh / h, ow / w)


def _axis_order(scales: tuple[float, float]) -> tuple[int, int]:
    """MATLAB resizes the axis with the smaller scale first (axis 0 first on ties)."""
    return (0, 1) if scales[0] <= scales[1] else (1, 0)


def _resize_axis_gather(
    planes: np.ndarray, axis: int, indices: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Resize float64 ``planes`` (C x H x W) along ``axis`` (1 or 2) tap by tap."""
    shape = [1, 1, 1]
    shape[axis] = -1
    out: np.ndarray | None = None
    buf: np.ndarray | None = None
    for t in range(indices.shape[1]):
        buf = np.take(planes, indices[:, t], axis=axis, out=buf)
        buf *= weights[:, t].reshape(shape)
        if out is None:
            out = buf.copy()
        else:
            out += buf
    assert out is not None
    return out


def _resize_axis_dense(planes: np.ndarray, axis: int, matrix: np.ndarray) -> np.ndarray:
    """Resize float64 ``planes`` (C x H x W) along ``axis`` (1 or 2) with an (out, in) matrix."""
    if axis == 1:
        return np.matmul(matrix, planes)  # one (out x H) @ (H x W) product per plane
    c, h, w = planes.shape
    return (planes.reshape(c * h, w) @ matrix.T).reshape(c, h, matrix.shape[0])


# BLAS makes the dense product faster than the tap-by-tap gather unless the weight matrix is very
# sparse: use it while the input length is at most this many times the number of taps.
_DENSE_MAX_RATIO = 128


def _resize_planes(planes: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    """Resize float64 ``planes`` (C x H x W) along spatial ``axis`` (1 or 2)."""
    in_len = planes.shape[axis]
    indices, weights = _contributions(in_len, out_len, scale)
    if in_len <= _DENSE_MAX_RATIO * indices.shape[1]:
        return _resize_axis_dense(planes, axis, resize_matrix(in_len, out_len, scale))
    return _resize_axis_gather(planes, axis, indices, weights)


def imresize(
    image: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Resize an image like MATLAB's ``imresize(image, scale, 'bicubic')``.

    Args:
        image: ``H x W`` or ``H x W x C`` array. Integer images (e.g. uint8 in 0..255) are
            resized in float64 and then rounded (half away from zero) and clipped to the range
            of their dtype, as MATLAB does. Floating images are resized in float64 and returned
            in their own dtype, without clipping.
        scale: resize factor (> 0); the output size is ``ceil(in * scale)`` per axis.
        output_shape: ``(H_out, W_out)``, as an alternative to ``scale``.

    Returns:
        The resized image, with the same number of dimensions and dtype as ``image``.

    Raises:
        ValueError: on a bad scale or output shape, an empty image, an image that is not 2-D or
            3-D, or a non-numeric dtype.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be HxW or HxWxC, got an array with ndim={image.ndim}")
    if image.size == 0:
        raise ValueError(f"image must be non-empty, got shape {image.shape}")
    dtype = image.dtype
    is_int = np.issubdtype(dtype, np.integer)
    if dtype == np.bool_ or not (is_int or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"image must have an integer or floating dtype, got {dtype}")

    (out_h, out_w), scales = output_size(image.shape[:2], scale, output_shape)
    out_lens = (out_h, out_w)
    # Work on contiguous float64 planes (C x H x W): both axes then map onto large BLAS
    # products, and only the (usually small) input and the final output change layout.
    planes = np.ascontiguousarray(np.moveaxis(np.atleast_3d(image), -1, 0), dtype=np.float64)
    for axis in _axis_order(scales):
        planes = _resize_planes(planes, axis + 1, out_lens[axis], scales[axis])

    if is_int:
        info = np.iinfo(dtype)
        rounded = np.floor(np.abs(planes) + 0.5)  # MATLAB rounds half away from zero
        np.copysign(rounded, planes, out=planes)
        np.clip(planes, info.min, info.max, out=planes)
    if image.ndim == 2:
        return planes[0].astype(dtype, copy=False)
    result = np.empty((out_h, out_w, planes.shape[0]), dtype=dtype)
    np.copyto(result, np.moveaxis(planes, 0, -1), casting="unsafe")
    return result


@lru_cache(maxsize=64)
def _torch_matrix(
    in_len: int, out_len: int, scale: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    return torch.from_numpy(np.array(resize_matrix(in_len, out_len, scale))).to(
        device=device, dtype=dtype
    )


def imresize_torch(batch: torch.Tensor, scale: float) -> torch.Tensor:
    """Resize a float tensor ``... x H x W`` (typically ``N x C x H x W``) like :func:`imresize`.

    The same per-axis weights as :func:`imresize` are applied as two matrix products, so the
    result matches the numpy path on float input up to floating point rounding. Works on any
    device and is differentiable. ``float16``/``bfloat16`` inputs are computed in float32 and
    cast back. No rounding or clipping is applied.

    Raises:
        ValueError: on a non-floating tensor, fewer than two dimensions, an empty spatial
            extent, or a bad scale.
    """
    if not isinstance(batch, torch.Tensor):
        raise ValueError(f"batch must be a torch.Tensor, got {type(batch).__name__}")
    if not batch.is_floating_point():
        raise ValueError(f"batch must have a floating dtype, got {batch.dtype}")
    if batch.ndim < 2:
        raise ValueError(f"batch must be ... x H x W (ndim >= 2), got ndim={batch.ndim}")
    if batch.numel() == 0:
        raise ValueError(f"batch must be non-empty, got shape {tuple(batch.shape)}")
    in_h, in_w = int(batch.shape[-2]), int(batch.shape[-1])
    (out_h, out_w), scales = output_size((in_h, in_w), scale, None)

    compute_dtype = batch.dtype if batch.dtype in (torch.float32, torch.float64) else torch.float32
    x = batch.to(compute_dtype)
    for axis in _axis_order(scales):
        if axis == 0:
            mat = _torch_matrix(in_h, out_h, scales[0], compute_dtype, x.device)
            x = torch.matmul(mat, x)
        else:
            mat = _torch_matrix(in_w, out_w, scales[1], compute_dtype, x.device)
            x = torch.matmul(x, mat.transpose(0, 1))
    return x.to(batch.dtype)
