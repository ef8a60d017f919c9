"""DRN graphs for ONNX runtimes that lack ``Resize`` (cubic), ``DepthToSpace`` or shape ops.

The bicubic pre-upsampling and the pixel shuffle as padding, fixed convolutions and a 0/1
transposed convolution live in :mod:`dualsr.deploy.resample` (:class:`BicubicUpsample`,
:class:`PixelShuffleConv`; re-exported here). :func:`portable_fused` and
:class:`PortableSROutput` apply the same idea to the rest of a DRN graph (the upsamplers' pixel
shuffles, the channel attentions' means), which is what :func:`dualsr.deploy.export_onnx`
exports by default.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..models.drn import unet_path

# the primitives live in .resample (fused.py uses them too); re-exported here for callers
from .resample import (
    CUBIC_A,
    PAD,
    TAPS,
    BicubicUpsample,
    PixelShuffleConv,
    cubic_weight,
    edge_pad,
    phase_taps,
)

if TYPE_CHECKING:
    from ..models.drn import DRN
    from .fused import FusedDRN, FusedRCAB, FusedUpStage

__all__ = [
    "CUBIC_A",
    "PAD",
    "TAPS",
    "BicubicUpsample",
    "PixelShuffleConv",
    "PortableChannelAttention",
    "PortableRCAB",
    "PortableSROutput",
    "PortableUpStage",
    "UnitScale",
    "cubic_weight",
    "edge_pad",
    "global_mean",
    "phase_taps",
    "portable_fused",
]


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
        x = unet_path(x, m.down, m.up_blocks)
        return m.add_mean(m.tail[-1](x)) / to_model
