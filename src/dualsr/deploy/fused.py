"""An inference-only DRN that computes the same SR image with less work: the fast CPU path.

:func:`fuse_for_inference` rewrites a trained :class:`~dualsr.models.drn.DRN` into
:class:`FusedDRN`, which differs from the plain forward only in ways that are exact in real
arithmetic (outputs agree to float32 rounding, about 1e-4 on 0..255):

- only the final SR image is computed: the lower pyramid outputs (``tail[0..P-1]``) are skipped;
- the 0..255 <-> ``rgb_range`` scalings and ``sub_mean`` are applied on the LR input (bicubic
  interpolation is affine with weights summing to one, so it commutes with a per-pixel colour
  transform), and ``add_mean`` is folded into the last tail convolution;
- each upsampler's 1x1 convolution after PixelShuffle is folded into the 3x3 convolution before
  it, when that needs fewer multiply-adds (PixelShuffle only permutes channels into positions);
- activations run in place, and each RCAB ends with one in-place ``addcmul_`` (residual plus
  channel attention in a single pass over memory);
- tensors are kept in ``channels_last`` (NHWC) layout, the layout oneDNN's convolutions prefer;
- optionally (``dtype=torch.bfloat16``) the body runs with bf16 weights and activations, while the
  input scaling, the bicubic pre-upsampling and the last convolution stay in fp32 (see
  :func:`fuse_for_inference`; that path is not exact: about 0.001 dB of PSNR, docs/deployment.md).

The result is an ordinary ``nn.Module`` (inputs N x 3 x h x w in 0..255, output the SR image in
0..255, not clamped) that also exports to ONNX.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.drn import DRN, RCAB, unet_path
from .resample import BicubicUpsample


class FusedConv(nn.Conv2d):
    """A 'same'-padded convolution with an optional in-place activation after it.

    Args:
        weight: the kernel, ``out x in x k x k``.
        bias: the bias or None.
        stride: 1 or 2.
        act: None, ``"relu"`` or ``"leaky_relu"`` (slope ``negative_slope``).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: int = 1,
        act: str | None = None,
        negative_slope: float = 0.2,
    ) -> None:
        out_ch, in_ch, k, _ = weight.shape
        super().__init__(in_ch, out_ch, k, stride=stride, padding=k // 2, bias=bias is not None)
        with torch.no_grad():
            self.weight.copy_(weight)
            if bias is not None:
                self.bias.copy_(bias)
        self.act = act
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution, then the activation in place."""
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        if self.act == "relu":
            y = y.relu_()
        elif self.act == "leaky_relu":
            y = F.leaky_relu_(y, self.negative_slope)
        return y


class FusedRCAB(nn.Module):
    """An RCAB whose residual and channel attention are one in-place ``addcmul_``.

    The block overwrites its input: only use it where the input is not needed afterwards.
    """

    def __init__(self, block: RCAB) -> None:
        super().__init__()
        conv1, _, conv2, attention = block.body
        self.conv1 = FusedConv(conv1.weight, conv1.bias, act="relu")
        self.conv2 = FusedConv(conv2.weight, conv2.bias)
        squeeze, _, excite, _ = attention.conv_du
        self.squeeze = _linear_from_1x1(squeeze)
        self.excite = _linear_from_1x1(excite)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + body(x)``, computed into ``x``."""
        y = self.conv2(self.conv1(x))
        s = torch.sigmoid(self.excite(torch.relu(self.squeeze(spatial_mean(y)))))
        return x.addcmul_(y, s[:, :, None, None])


def spatial_mean(y: torch.Tensor) -> torch.Tensor:
    """The N x C mean of N x C x H x W ``y`` over H and W, as a product with a vector of ones.

    A matrix product accumulates in fp32 and reads ``y`` once in place, where ``Tensor.mean`` of a
    bf16 tensor first copies all of it to fp32: about 9x faster for DRN-S's RCABs in bf16.
    """
    n, c, h, w = y.shape
    ones = y.new_ones(1, 1, h * w)
    if y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous():
        rows = y.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view: N x HW x C
        total = torch.matmul(ones.expand(n, 1, h * w), rows).reshape(n, c)
    else:
        total = torch.matmul(y.reshape(n, c, h * w), ones.reshape(h * w, 1)).reshape(n, c)
    return total / (h * w)


def _linear_from_1x1(conv: nn.Conv2d) -> nn.Linear:
    lin = nn.Linear(conv.in_channels, conv.out_channels)
    with torch.no_grad():
        lin.weight.copy_(conv.weight[:, :, 0, 0])
        lin.bias.copy_(conv.bias)
    return lin


class FusedUpStage(nn.Module):
    """RCABs, the (possibly folded) upsampler, PixelShuffle, then the 1x1 conv if not folded."""

    def __init__(self, up: nn.Sequential, fold: bool | None = None) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[FusedRCAB(b) for b in up[:-2]])
        upconv, one = up[-2][0], up[-1]
        groups, out, ch = one.in_channels, one.out_channels, upconv.in_channels
        if fold is None:  # fold when it saves multiply-adds (per LR pixel, see module docstring)
            fold = 36 * out * ch < 36 * groups * ch + 4 * groups * out
        self.folded = fold
        if fold:
            mix = one.weight[:, :, 0, 0].detach()  # out x groups
            kernel = upconv.weight.detach().reshape(groups, 4, ch, 3, 3)
            weight = torch.einsum("og,gkcij->okcij", mix, kernel).reshape(4 * out, ch, 3, 3)
            bias = mix @ upconv.bias.detach().reshape(groups, 4) + one.bias.detach()[:, None]
            self.upconv = FusedConv(weight, bias.reshape(4 * out))
            self.post = None
        else:
            self.upconv = FusedConv(upconv.weight, upconv.bias)
            self.post = FusedConv(one.weight, one.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Overwrites ``x`` (through the RCABs) and returns the upsampled features."""
        x = F.pixel_shuffle(self.upconv(self.blocks(x)), 2)
        return self.post(x) if self.post is not None else x


class FusedDRN(nn.Module):
    """The final SR output of a DRN, computed the fast way (see the module docstring).

    Build it with :func:`fuse_for_inference`. ``forward(lr)`` takes N x 3 x h x w in 0..255 and
    returns N x 3 x (h*scale) x (w*scale) in 0..255 (not clamped). Inference only: parameters do
    not require gradients and the forward overwrites intermediate tensors.
    """

    def __init__(
        self,
        model: DRN,
        channels_last: bool = True,
        fold: bool | None = None,
        dtype: torch.dtype = torch.float32,
        fp32_tail: bool = True,
        portable_upsample: bool = False,
    ) -> None:
        super().__init__()
        self.scale = model.scale
        # the bicubic as pad + fixed conv + pixel shuffle (no ONNX Resize node), else F.interpolate
        self.upsample = BicubicUpsample(self.scale) if portable_upsample else None
        self.phases = model.phases
        self.channels_last = channels_last
        self.dtype = dtype
        to_model = model.arch.rgb_range / 255.0  # input 0..255 -> the model's range
        with torch.no_grad():
            # sub_mean(to_model * x), applied on the LR input
            sub = model.sub_mean
            self.sub_mean = FusedConv(sub.weight * to_model, sub.bias)
            self.head = FusedConv(model.head.weight, model.head.bias)
            self.down = nn.ModuleList(
                nn.Sequential(
                    FusedConv(d.dual_module[0][0].weight, None, stride=2, act="leaky_relu"),
                    FusedConv(d.dual_module[1].weight, None),
                )
                for d in model.down
            )
            self.stages = nn.ModuleList(FusedUpStage(up, fold) for up in model.up_blocks)
            # (add_mean(tail(x))) / to_model as one conv
            tail, add = model.tail[-1], model.add_mean
            mix = add.weight[:, :, 0, 0] / to_model
            self.tail = FusedConv(
                torch.einsum("oc,cikl->oikl", mix, tail.weight),
                mix @ tail.bias + add.bias / to_model,
            )
        # the body in ``dtype``; the LR-side scaling and the bicubic stay fp32 (their inputs are
        # pixels, which bf16 would round to 1 level above 128), the tail too unless told otherwise
        self.head.to(dtype)
        self.down.to(dtype)
        self.stages.to(dtype)
        self.tail_dtype = torch.float32 if fp32_tail else dtype
        self.tail.to(self.tail_dtype)
        self.requires_grad_(False)
        self.eval()

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """The SR image for ``lr`` in 0..255."""
        x = self.sub_mean(lr)
        if self.upsample is not None:
            x = self.upsample(x)
        else:
            x = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = unet_path(self.head(x.to(self.dtype, memory_format=fmt)), self.down, self.stages)
        return self.tail(x.to(self.tail_dtype)).float()


def fuse_for_inference(
    model: DRN,
    channels_last: bool = True,
    fold: bool | None = None,
    dtype: torch.dtype = torch.float32,
    fp32_tail: bool = True,
    portable_upsample: bool = False,
) -> FusedDRN:
    """The fast inference module for ``model`` (its weights are copied, ``model`` is untouched).

    Args:
        model: a DRN (any preset or width configuration).
        channels_last: keep activations in NHWC layout (faster with oneDNN on CPU).
        fold: fold each upsampler's 1x1 conv into its 3x3 conv: True, False, or None to fold
            where it saves multiply-adds.
        dtype: ``torch.float32``, or ``torch.bfloat16`` for the body's weights and activations
            (about twice as fast on CPUs with native bf16, see :mod:`dualsr.deploy.precision`).
            The input scaling and the bicubic pre-upsampling always run in fp32; the output is
            fp32.
        fp32_tail: with bf16, run the last convolution in fp32 too (its input is cast up).
        portable_upsample: compute the bicubic pre-upsampling with
            :class:`~dualsr.deploy.resample.BicubicUpsample` (padding, a fixed convolution and
            a pixel shuffle: no ONNX ``Resize`` node when exported) instead of
            ``F.interpolate``; the same image to float32 rounding.
    """
    return FusedDRN(
        model,
        channels_last=channels_last,
        fold=fold,
        dtype=dtype,
        fp32_tail=fp32_tail,
        portable_upsample=portable_upsample,
    )
