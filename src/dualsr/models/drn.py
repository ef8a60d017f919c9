"""Dual Regression Networks (DRN).

Guo et al., "Closed-loop Matters: Dual Regression Networks for Single Image Super-Resolution",
CVPR 2020, and "Towards Lightweight Super-Resolution with Dual Regression Learning", TPAMI 2024.

The primal network :class:`DRN` maps an LR image to a pyramid of outputs (LR size, 2x, ..., full
scale); the dual networks in :class:`DualModels` map each output back to the level below. Module
and parameter names follow the released checkpoints exactly, so official weights load with
``strict=True``. A pruned ("width-configured") model is the same class built from a channel
configuration: one inner width per searched layer, in the official file order (see
:func:`split_channel_config`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

RGB_MEAN = (0.4488, 0.4371, 0.4040)
CA_REDUCTION = 16


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------
def conv3x3(in_ch: int, out_ch: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """A 3x3 convolution with 'same' padding (stride 1) or halving (stride 2)."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=bias)


class MeanShift(nn.Conv2d):
    """1x1 convolution that subtracts (sign -1) or adds (sign +1) the dataset RGB mean.

    Its weight and bias are ordinary parameters, as in the released checkpoints.
    """

    def __init__(self, rgb_range: float, sign: int) -> None:
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(RGB_MEAN))


class DownBlock(nn.Module):
    """Stride-2 conv, LeakyReLU(0.2), conv; no biases.

    Used by the primal down path (``c -> width -> 2c``) and by every dual model (``3 -> n -> 3``).
    The attribute name ``dual_module`` is the official checkpoint's.
    """

    def __init__(self, in_ch: int, width: int, out_ch: int) -> None:
        super().__init__()
        self.dual_module = nn.Sequential(
            nn.Sequential(conv3x3(in_ch, width, stride=2, bias=False), nn.LeakyReLU(0.2, True)),
            conv3x3(width, out_ch, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dual_module(x)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average pool, 1x1 C->C//16, ReLU, 1x1 -> C, sigmoid."""

    def __init__(self, channels: int, reduced: int | None = None) -> None:
        super().__init__()
        reduced = reduced or max(1, channels // CA_REDUCTION)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, reduced, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(reduced, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(x.mean(dim=(2, 3), keepdim=True))


class RCAB(nn.Module):
    """Residual channel attention block: conv, ReLU, conv, channel attention, plus identity.

    ``width`` is the inner width between the two 3x3 convs (the searched/pruned dimension).
    """

    def __init__(self, channels: int, width: int | None = None) -> None:
        super().__init__()
        width = width or channels
        self.body = nn.Sequential(
            conv3x3(channels, width),
            nn.ReLU(inplace=True),
            conv3x3(width, channels),
            ChannelAttention(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsampler(nn.Sequential):
    """conv3x3 C -> 4*groups, PixelShuffle(2): doubles the resolution, ``groups`` channels out."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__(conv3x3(channels, 4 * groups), nn.PixelShuffle(2))


# ----------------------------------------------------------------------------------------------
# Architecture description and channel configurations
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DRNArch:
    """Everything needed to rebuild a DRN: stored beside the weights in every checkpoint."""

    scale: int
    n_feats: int
    n_blocks: int
    channel_config: tuple[int, ...] | None = None
    rgb_range: float = 255.0

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (``channel_config`` as a list or None)."""
        d = asdict(self)
        d["channel_config"] = list(self.channel_config) if self.channel_config else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DRNArch:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        allowed = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"unknown architecture field(s): {sorted(unknown)}")
        cfg = d.get("channel_config")
        return cls(
            scale=int(d["scale"]),
            n_feats=int(d["n_feats"]),
            n_blocks=int(d["n_blocks"]),
            channel_config=tuple(int(c) for c in cfg) if cfg else None,
            rgb_range=float(d.get("rgb_range", 255.0)),
        )


def num_phases(scale: int) -> int:
    """log2(scale) for the supported power-of-two scales; ValueError otherwise."""
    phases = int(round(math.log2(scale))) if scale > 1 else 0
    if scale < 2 or 2**phases != scale:
        raise ValueError(f"scale must be a power of two >= 2 (4 and 8 in the paper), got {scale}")
    return phases


def full_widths(scale: int, n_feats: int, n_blocks: int) -> list[int]:
    """The unpruned inner width of every searched layer, in the official file order.

    Order: each down block's inner width (P of them), then for each up stage its RCABs' inner
    widths followed by its upsampler's group count. Length ``P * (n_blocks + 2)``.
    """
    phases = num_phases(scale)
    widths = [n_feats * 2**p for p in range(phases)]
    for stage in range(phases):
        c = stage_width(stage, phases, n_feats)
        widths += [c] * n_blocks + [c]
    return widths


def stage_width(stage: int, phases: int, n_feats: int) -> int:
    """Channel width of up stage ``stage`` (0 = deepest)."""
    return n_feats * 2**phases if stage == 0 else n_feats * 2 ** (phases - stage + 1)


@dataclass
class ChannelSpec:
    """A channel configuration split by role."""

    down: list[int]
    rcab: list[list[int]] = field(default_factory=list)
    upsampler: list[int] = field(default_factory=list)


def split_channel_config(
    config: list[int] | tuple[int, ...], scale: int, n_feats: int, n_blocks: int
) -> ChannelSpec:
    """Split a flat channel configuration (official order) into down / RCAB / upsampler widths.

    Raises ValueError naming the layer when the length is wrong or a width is out of range.
    """
    phases = num_phases(scale)
    full = full_widths(scale, n_feats, n_blocks)
    config = [int(c) for c in config]
    if len(config) != len(full):
        raise ValueError(
            f"channel configuration has {len(config)} entries; a x{scale} DRN with "
            f"{n_blocks} RCABs per stage needs {len(full)} (= {phases} x ({n_blocks} + 2))"
        )
    for i, (c, cmax) in enumerate(zip(config, full, strict=True)):
        if not 1 <= c <= cmax:
            raise ValueError(
                f"channel configuration entry {i} (line {i + 1}) is {c}; it must be in [1, {cmax}]"
            )
    spec = ChannelSpec(down=config[:phases])
    pos = phases
    for _ in range(phases):
        spec.rcab.append(config[pos : pos + n_blocks])
        spec.upsampler.append(config[pos + n_blocks])
        pos += n_blocks + 1
    return spec


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
def unet_path(
    x: torch.Tensor,
    downs: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    ups: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    at_level: Callable[[int, torch.Tensor], object] | None = None,
) -> torch.Tensor:
    """DRN's U-Net from the head's features ``x`` to the features entering the last tail conv.

    The down blocks halve the resolution one after another (each input is kept as a skip); each
    up stage upsamples and is concatenated with the skip of its resolution. ``at_level(level, y)``
    sees the features of every pyramid level, coarsest (0) first, as they are made: where
    :class:`DRN` computes its lower outputs. The plain, fused and portable forwards all run this
    one function (same ops, same order: the same numbers).
    """
    skips = []
    for down in downs:
        skips.append(x)
        x = down(x)
    if at_level is not None:
        at_level(0, x)
    for stage, up in enumerate(ups):
        x = torch.cat((up(x), skips[len(skips) - stage - 1]), dim=1)
        if at_level is not None:
            at_level(stage + 1, x)
    return x


class DRN(nn.Module):
    """The DRN primal network.

    Args:
        scale: upscaling factor, a power of two (4 or 8 in the paper).
        n_feats: base feature width ``n`` (16 for DRN-S x4, 20 for DRN-L x4).
        n_blocks: RCABs per up stage (30 for DRN-S, 40 for DRN-L x4).
        channel_config: optional per-layer inner widths in the official configuration-file order
            (length ``log2(scale) * (n_blocks + 2)``); None builds the full model.
        rgb_range: the pixel range of inputs and outputs (255 for the released models).

    ``forward(lr)`` takes ``N x 3 x h x w`` in ``[0, rgb_range]`` and returns the list of
    ``log2(scale) + 1`` outputs, from LR size to ``scale``-times size; the last one is the SR image.
    """

    def __init__(
        self,
        scale: int,
        n_feats: int,
        n_blocks: int,
        channel_config: list[int] | tuple[int, ...] | None = None,
        rgb_range: float = 255.0,
    ) -> None:
        super().__init__()
        if n_feats < 1 or n_blocks < 0:
            raise ValueError(f"n_feats must be >= 1 and n_blocks >= 0, got {n_feats}, {n_blocks}")
        self.phases = num_phases(scale)
        self.arch = DRNArch(
            scale=scale,
            n_feats=n_feats,
            n_blocks=n_blocks,
            channel_config=tuple(int(c) for c in channel_config) if channel_config else None,
            rgb_range=float(rgb_range),
        )
        widths = full_widths(scale, n_feats, n_blocks) if channel_config is None else channel_config
        spec = split_channel_config(widths, scale, n_feats, n_blocks)
        phases = self.phases

        self.sub_mean = MeanShift(rgb_range, sign=-1)
        self.head = conv3x3(3, n_feats)
        self.down = nn.ModuleList(
            DownBlock(n_feats * 2**p, spec.down[p], n_feats * 2 ** (p + 1)) for p in range(phases)
        )
        self.up_blocks = nn.ModuleList()
        for stage in range(phases):
            c = stage_width(stage, phases, n_feats)
            out = n_feats * 2 ** (phases - stage - 1)
            groups = spec.upsampler[stage]
            self.up_blocks.append(
                nn.Sequential(
                    *[RCAB(c, w) for w in spec.rcab[stage]],
                    Upsampler(c, groups),
                    nn.Conv2d(groups, out, 1),
                )
            )
        tail_in = [n_feats * 2**phases] + [n_feats * 2 ** (phases - s) for s in range(phases)]
        self.tail = nn.ModuleList(conv3x3(c, 3) for c in tail_in)
        self.add_mean = MeanShift(rgb_range, sign=1)

    @property
    def scale(self) -> int:
        """The upscaling factor."""
        return self.arch.scale

    def forward(self, lr: torch.Tensor) -> list[torch.Tensor]:
        """The output pyramid ``[LR size, 2x, ..., scale x]`` for ``lr`` in [0, rgb_range]."""
        return self.forward_with_features(lr)[0]

    def forward_with_features(self, lr: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The output pyramid and the features entering the last tail conv (for distillation)."""
        x = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        x = self.head(self.sub_mean(x))
        outputs: list[torch.Tensor] = []
        x = unet_path(
            x,
            self.down,
            self.up_blocks,
            lambda level, y: outputs.append(self.add_mean(self.tail[level](y))),
        )
        return outputs, x

    def channel_widths(self) -> list[int]:
        """The inner width of every searched layer (official order), read from the modules."""
        widths = [d.dual_module[1].in_channels for d in self.down]
        for up in self.up_blocks:
            widths += [blk.body[0].out_channels for blk in up[:-2]]
            widths.append(up[-1].in_channels)
        return widths


class DualModels(nn.ModuleList):
    """The dual networks of a DRN: element ``i`` maps the level-``i+1`` output to level ``i``.

    Each element's state_dict matches one released dual checkpoint (``dual_module.*``).
    """

    def __init__(self, scale: int, n_feats: int) -> None:
        super().__init__(DownBlock(3, n_feats, 3) for _ in range(num_phases(scale)))
        self.scale = scale
        self.n_feats = n_feats

    def forward(self, outputs: list[torch.Tensor]) -> list[torch.Tensor]:  # type: ignore[override]
        """Map ``outputs[i + 1]`` to level ``i`` for every dual; returns one tensor per dual."""
        return [dual(outputs[i + 1]) for i, dual in enumerate(self)]


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
