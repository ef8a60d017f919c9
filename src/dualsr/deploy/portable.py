"""Bicubic upsampling by an integer factor as ordinary ops, for ONNX graphs every runtime reads.

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

:func:`portable_fused` and :class:`PortableSROutput` apply the same idea to the rest of a DRN graph
(the upsamplers' pixel shuffles, the channel attentions' means), which is what
:func:`dualsr.deploy.export_onnx` exports by default.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # fused.py imports this module
    from ..models.drn import DRN
    from .fused import FusedDRN, FusedRCAB, FusedUpStage

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


# ----------------------------------------------------------------------------------------------
# Whole graphs: the fused DRN and the DRN as written, with no DepthToSpace, Resize or Shape ops
# ----------------------------------------------------------------------------------------------
def global_mean(x: torch.Tensor) -> torch.Tensor:
    """The N x C x 1 x 1 mean of N x C x H x W ``x`` over H and W (ONNX ``GlobalAveragePool``).

    ``GlobalAveragePool`` rather than ``ReduceMean``: OpenCV 4.10's dnn module, once it has run
    a 1 x 1 image through a ``ReduceMean`` over H and W, computes wrong values (or fails) for
    every later input size of that network; its global pooling has no such problem.
    """
    return F.adaptive_avg_pool2d(x, 1)


def _conv1x1(linear: nn.Linear) -> nn.Conv2d:
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1)
    with torch.no_grad():
        conv.weight.copy_(linear.weight[:, :, None, None])
        conv.bias.copy_(linear.bias)
    return conv.requires_grad_(False)


class PortableRCAB(nn.Module):
    """A :class:`~dualsr.deploy.fused.FusedRCAB` with a portable channel attention.

    ``FusedRCAB`` averages with a product by a vector of ones whose length is computed from the
    input's shape (ONNX ``Shape`` ops, which OpenCV's dnn module refuses with dynamic sizes);
    here the mean is :func:`global_mean` and the squeeze and excitation are 1x1 convolutions
    (the same weights). Same result to float32 rounding; the input is not overwritten.
    """

    def __init__(self, block: FusedRCAB) -> None:
        super().__init__()
        self.conv1, self.conv2 = block.conv1, block.conv2
        self.squeeze, self.excite = _conv1x1(block.squeeze), _conv1x1(block.excite)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + body(x)``."""
        y = self.conv2(self.conv1(x))
        return x + y * torch.sigmoid(self.excite(torch.relu(self.squeeze(global_mean(y)))))


class PortableChannelAttention(nn.Module):
    """A :class:`~dualsr.models.drn.ChannelAttention` whose mean is :func:`global_mean`."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.conv_du = attention.conv_du

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` scaled by its channel attention."""
        return x * self.conv_du(global_mean(x))


class PortableUpStage(nn.Module):
    """A :class:`~dualsr.deploy.fused.FusedUpStage` with :class:`PortableRCAB` blocks and its
    pixel shuffle as :class:`PixelShuffleConv` (same weights, same result)."""

    def __init__(self, stage: FusedUpStage) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[PortableRCAB(b) for b in stage.blocks])
        self.upconv, self.post, self.folded = stage.upconv, stage.post, stage.folded
        self.shuffle = PixelShuffleConv(stage.upconv.out_channels // 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RCABs, the upsampling convolution, the pixel shuffle, then the 1x1 conv if any."""
        x = self.shuffle(self.upconv(self.blocks(x)))
        return self.post(x) if self.post is not None else x


class UnitScale(nn.Module):
    """Multiplies by a constant 1 (an ONNX ``Mul``): a sizing hint for OpenCV's dnn module.

    OpenCV 4.10 sizes a graph when importing it, giving dynamic dimensions the size 0; a 0 x 0
    image does not survive DRN's stride-2 convolutions and skip connections (the import fails
    at the first ``Concat``). A broadcast ``Mul`` turns those 0s into 1s, a size every DRN
    accepts; the network is sized again for each real input at ``setInput``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x * 1``."""
        return x * 1.0


def portable_fused(fused: FusedDRN) -> FusedDRN:
    """A copy of ``fused`` that exports to ONNX with only widely supported ops.

    The bicubic pre-upsampling becomes :class:`BicubicUpsample` (if ``fused`` was not built with
    ``portable_upsample=True`` already), each stage a :class:`PortableUpStage`, and the input
    passes through :class:`UnitScale` first: the graph has ``Conv``, ``ConvTranspose``,
    ``Slice``, ``Concat``, ``GlobalAveragePool`` and element-wise ops, and no ``Resize``,
    ``DepthToSpace`` or shape computations, with dynamic batch, height and width. The output
    equals ``fused``'s to float32 rounding.
    """
    out = copy.deepcopy(fused)
    if out.upsample is None:
        out.upsample = BicubicUpsample(out.scale)
    out.sub_mean = nn.Sequential(UnitScale(), out.sub_mean)
    out.stages = nn.ModuleList(PortableUpStage(s) for s in out.stages)
    return out


class PortableSROutput(nn.Module):
    """The final SR output of a DRN as written (the ``--graph eager`` export), portable.

    Same computation as ``DRN.forward_with_features`` followed by the 0..255 scaling, with the
    bicubic upsampling as :class:`BicubicUpsample`, the upsamplers' ``nn.PixelShuffle`` as
    :class:`PixelShuffleConv` and the channel attentions as :class:`PortableChannelAttention`
    (in a copy of ``model``; ``model`` is untouched). Input and output
    N x 3 x h x w and N x 3 x (h*scale) x (w*scale) in 0..255.
    """

    def __init__(self, model: DRN) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).eval()
        self.scale = model.scale
        for up in self.model.up_blocks:
            for block in up[:-2]:  # RCABs: conv, ReLU, conv, channel attention
                block.body[3] = PortableChannelAttention(block.body[3])
            upsampler = up[-2]  # conv3x3 C -> 4 * groups, PixelShuffle(2)
            upsampler[1] = PixelShuffleConv(upsampler[0].out_channels // 4, 2)
        self.upsample = BicubicUpsample(model.scale)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """The SR image for ``lr`` in 0..255."""
        m = self.model
        to_model = m.arch.rgb_range / 255.0
        x = m.head(m.sub_mean(self.upsample(lr * to_model)))
        skips = []
        for down in m.down:
            skips.append(x)
            x = down(x)
        for stage, up in enumerate(m.up_blocks):
            x = torch.cat((up(x), skips[m.phases - stage - 1]), dim=1)
        return m.add_mean(m.tail[-1](x)) / to_model
