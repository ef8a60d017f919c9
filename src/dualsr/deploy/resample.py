"""Bicubic upsampling and pixel shuffle as ordinary ops, for ONNX graphs every runtime reads.

DRN starts with ``F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)``, which
exports as an ONNX ``Resize`` node (cubic, a = -0.75, half-pixel coordinates). Several runtimes
lack that mode or compute it differently (OpenCV 4.10's dnn module refuses it). For an integer
factor the same result is a fixed linear filter, which :class:`BicubicUpsample` computes with ops
that every ONNX runtime has:

1. edge-replicate padding by 2 pixels on each side, as ``Concat`` of ``Slice`` s (PyTorch clamps
   source indices at the borders, which is edge replication, for any image size, even 1 x 1);
2. one 5 x 5 ``Conv`` with fixed weights, per channel (``groups=channels``): ``s * s`` output
   maps per channel, one per output phase ``(py, px)``;
3. a pixel shuffle that interleaves the phases into the ``s``-times larger image, written as a
   ``ConvTranspose`` with 0/1 weights (:class:`PixelShuffleConv`, exact): ``DepthToSpace`` would
   do the same, but OpenCV 4.10 cannot import it when height and width are dynamic.

Derivation: with half-pixel centres, output pixel ``s * i + p`` samples the input at
``x = i + t_p`` with ``t_p = (p + 0.5) / s - 0.5`` in (-0.5, 0.5). Cubic convolution uses the 4
pixels ``floor(x) - 1 .. floor(x) + 2``: ``i - 2 .. i + 1`` when ``t_p < 0`` and ``i - 1 .. i + 2``
otherwise, so every phase is a 5-tap filter centred on ``i`` (one tap zero). The 2-D filter is
the outer product of the vertical and horizontal taps.

These primitives have no dependency on the rest of :mod:`dualsr.deploy`: :mod:`.fused` and
:mod:`.portable` both import them from here, so imports run one way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: PyTorch's (and the ONNX Resize default's) cubic coefficient.
CUBIC_A = -0.75
#: Taps per phase: input pixels i-2 .. i+2.
TAPS = 5
PAD = TAPS // 2


def cubic_weight(d: float, a: float = CUBIC_A) -> float:
    """Keys' cubic convolution kernel at distance ``d`` (zero for ``|d| >= 2``)."""
    d = abs(d)
    if d <= 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    if d < 2:
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return 0.0


def phase_taps(scale: int, a: float = CUBIC_A) -> torch.Tensor:
    """The 1-D filters of an integer ``scale`` bicubic upsampling: ``scale x 5`` (float64).

    Row ``p`` gives output pixel ``scale * i + p`` as a weighted sum of input pixels
    ``i - 2 .. i + 2`` (half-pixel centres, as ``align_corners=False``); each row sums to one.
    """
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    taps = torch.zeros(scale, TAPS, dtype=torch.float64)
    for p in range(scale):
        t = (p + 0.5) / scale - 0.5
        base = math.floor(t)  # -1 or 0: the offset of floor(x) from i
        frac = t - base
        for k, d in enumerate((frac + 1, frac, 1 - frac, 2 - frac)):
            taps[p, base - 1 + k + PAD] = cubic_weight(d, a)
    return taps


def edge_pad(x: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Replicate the border pixels of N x C x H x W ``x`` ``pad`` times on each side.

    Written as concatenations of one-pixel slices (ONNX ``Slice`` and ``Concat``), which every
    runtime supports, unlike ``Pad`` in ``edge`` mode; correct for any size, even 1 x 1.
    """
    for dim in (2, 3):
        first = x.narrow(dim, 0, 1)
        last = x[:, :, -1:] if dim == 2 else x[:, :, :, -1:]
        x = torch.cat([first] * pad + [x] + [last] * pad, dim=dim)
    return x


class PixelShuffleConv(nn.Module):
    """``F.pixel_shuffle(x, factor)`` as a grouped transposed convolution with 0/1 weights.

    Output pixel ``(factor * i + dy, factor * j + dx)`` of channel ``c`` is input channel
    ``c * factor**2 + dy * factor + dx`` at ``(i, j)``: one weight of 1, the others 0, so the
    result is exact. Exported as ``ConvTranspose`` (stride ``factor``), which runtimes read with
    dynamic height and width where ``DepthToSpace`` fails (OpenCV 4.10's dnn module).

    Args:
        channels: the number of output channels (the input has ``channels * factor**2``).
        factor: the upscaling factor.
    """

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.channels = channels
        self.factor = factor
        weight = torch.eye(factor * factor).reshape(factor * factor, 1, factor, factor)
        self.register_buffer("weight", weight.repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The ``factor``-times larger N x channels x H x W tensor."""
        w = self.weight.to(x.dtype)
        return F.conv_transpose2d(x, w, stride=self.factor, groups=self.channels)

    def extra_repr(self) -> str:
        """The channels and factor, for ``print(module)``."""
        return f"channels={self.channels}, factor={self.factor}"


class BicubicUpsample(nn.Module):
    """``F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)`` as a
    padding, a fixed convolution and a pixel shuffle (see the module docstring).

    Args:
        scale: the integer upscaling factor (2, 4, 8, ...).
        channels: the number of input channels (3 for RGB).

    Matches PyTorch to float32 rounding (about 1e-4 on 0..255 inputs), border pixels included.
    """

    def __init__(self, scale: int, channels: int = 3) -> None:
        super().__init__()
        self.scale = int(scale)
        self.channels = channels
        taps = phase_taps(self.scale)
        # phase (py, px) -> channel py * s + px of each group, PixelShuffle's order
        kernel = torch.einsum("pk,ql->pqkl", taps, taps).reshape(self.scale**2, 1, TAPS, TAPS)
        self.register_buffer("weight", kernel.repeat(channels, 1, 1, 1).float(), persistent=False)
        self.shuffle = PixelShuffleConv(channels, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The ``scale``-times larger bicubic image of N x C x H x W ``x``."""
        y = F.conv2d(edge_pad(x), self.weight.to(x.dtype), groups=self.channels)
        return self.shuffle(y)

    def extra_repr(self) -> str:
        """The scale and channels, for ``print(module)``."""
        return f"scale={self.scale}, channels={self.channels}"
