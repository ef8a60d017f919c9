"""Sampled consumer statistics of one searched layer, for the feature criteria (ThiNet, CP).

:func:`collect_feature_stats` samples positions of the pruning data and keeps, at each, the
consumer's input patch in the network being pruned and a target consumer output
(:class:`FeatureStats`); a feature criterion turns them into a :class:`Selection` (kept units and,
optionally, re-fitted consumer weights), scored afterwards by :func:`feature_mse`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...models.drn import DRN
from ..layers import SearchedLayer
from ..pruning_data import Pyramid
from .objective import consumer_inputs


@dataclass
class FeatureStats:
    """Sampled statistics of one searched layer's consumer conv, for feature-based criteria.

    ``S`` positions ``(image, y, x)`` are sampled; at each one we keep the consumer's input patch
    (as computed by the network being pruned) and the consumer's target output there: the
    original model's (CP; ThiNet with ``thinet_targets="original"``) or the network being
    pruned's own, all its input units present (ThiNet's default, as the released code).

    Attributes:
        patches: ``S x C x (kh*kw)`` consumer input patches, in the weight's (kh, kw) order.
        targets: ``S x O`` target consumer outputs at those positions, bias subtracted.
        out_channel: ``S`` a random output channel per sample, for per-unit contributions
            (ThiNet's sampling of (location, channel) pairs).
        weight: ``O x C x kh x kw`` the pretrained consumer weight.
        positions: ``S x 4`` (batch, image, y, x) of each sample, or None (hand-built stats).
    """

    patches: torch.Tensor
    targets: torch.Tensor
    out_channel: torch.Tensor
    weight: torch.Tensor
    positions: torch.Tensor | None = None

    def contributions(self) -> torch.Tensor:
        """``S x C``: unit ``j``'s contribution to output ``out_channel[s]`` at sample ``s``."""
        w = self.weight.flatten(2)[self.out_channel]  # S x C x kk
        return (self.patches * w).sum(-1)

    def sampled_targets(self) -> torch.Tensor:
        """``S``: the target output at each sample's ``out_channel``."""
        return self.targets.gather(1, self.out_channel[:, None]).squeeze(1)

    def output_contributions(self) -> torch.Tensor:
        """``S x O x C``: unit ``c``'s contribution to output ``o`` at sample ``s`` (explicit)."""
        return torch.einsum("sck,ock->soc", self.patches, self.weight.flatten(2))

    def all_outputs_design(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The all-outputs regression, explicitly: ``z`` (``S*O x C``, rows sample-major) and
        ``y`` (``S*O``), ``z[s*O + o, c]`` = unit ``c``'s contribution to output ``o`` at
        sample ``s`` (the released ``LassoFilterPrune``'s design). Float64."""
        z = torch.einsum("sck,ock->soc", self.patches.double(), self.weight.double().flatten(2))
        return z.reshape(-1, z.shape[-1]), self.targets.double().reshape(-1)

    def all_outputs_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z^T z / n, z^T y / n)`` of :meth:`all_outputs_design` (``n = S*O``) in float64,
        computed without ``z``: with ``P`` the ``S x (C kk)`` patches and ``W`` the
        ``O x (C kk)`` weight, ``z^T z[c, c'] = sum_{k, k'} (P^T P)[ck, c'k'] (W^T W)[ck, c'k']``
        and ``z^T y[c] = sum_{o, k} (y^T P)[o, ck] W[o, ck]``."""
        s, c, kk = self.patches.shape
        o = self.weight.shape[0]
        p = self.patches.double().reshape(s, c * kk)
        w = self.weight.double().reshape(o, c * kk)
        y = self.targets.double()
        n = s * o
        gram = ((p.T @ p) * (w.T @ w)).view(c, kk, c, kk).sum(dim=(1, 3)) / n
        q = ((y.T @ p) * w).view(o, c, kk).sum(dim=(0, 2)) / n
        return gram, q


@dataclass
class Selection:
    """The outcome of a features criterion: kept units (sorted) and an optional new weight.

    ``weight`` (``O x len(keep) x kh x kw``) replaces the consumer weight's kept slices;
    ``scales`` (``len(keep)``, ThiNet) are the per-unit factors it applied to the pretrained
    slices (the released code's ``beta``).
    """

    keep: list[int]
    weight: torch.Tensor | None = None
    scales: torch.Tensor | None = None  # ThiNet: ``weight = pretrained[:, keep] * scales``


def collect_feature_stats(
    model: DRN,
    layer: SearchedLayer,
    teacher_layer: SearchedLayer,
    teacher_outputs: Sequence[torch.Tensor],
    batches: Sequence[Pyramid],
    samples: int,
    generator: torch.Generator,
) -> FeatureStats:
    """Sample consumer input patches (in ``model``) and target outputs (``teacher_outputs``).

    ``teacher_outputs`` are the consumer outputs of ``teacher_layer`` for every batch: the
    original model's (:func:`teacher_features` of the teacher), or ``model``'s own
    (:func:`teacher_features` of ``model`` and ``layer``: ThiNet's default targets); that
    layer's consumer bias is subtracted from them and its weight is the stats' weight. About
    ``samples`` positions in all, spread evenly over the batches; returned on the CPU, with each
    sample's (batch, image, y, x) in ``positions``.
    """
    conv = layer.consumer
    kh, kw = conv.kernel_size
    ph, pw = conv.padding  # type: ignore[misc]
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or (ph, pw) != (kh // 2, kw // 2):
        raise ValueError(f"{layer.name}: feature statistics need a stride-1 'same' consumer conv")
    bias = teacher_layer.consumer.bias
    per_batch = max(1, math.ceil(samples / len(batches)))
    patches, targets, positions = [], [], []
    with torch.no_grad():
        inputs = consumer_inputs(model, conv, batches)
        for b, (x, y) in enumerate(zip(inputs, teacher_outputs, strict=True)):
            n, _, h, w = x.shape
            ni = torch.randint(n, (per_batch,), generator=generator).to(x.device)
            yi = torch.randint(h, (per_batch,), generator=generator).to(x.device)
            xi = torch.randint(w, (per_batch,), generator=generator).to(x.device)
            xp = F.pad(x, (pw, pw, ph, ph))
            taps = [xp[ni, :, yi + dy, xi + dx] for dy in range(kh) for dx in range(kw)]
            patches.append(torch.stack(taps, -1))
            t = y[ni, :, yi, xi]
            targets.append(t - bias.detach() if bias is not None else t)
            positions.append(torch.stack([torch.full_like(ni, b), ni, yi, xi], 1).cpu())
    targets_t = torch.cat(targets).cpu()
    out_channel = torch.randint(targets_t.shape[1], (targets_t.shape[0],), generator=generator)
    return FeatureStats(
        patches=torch.cat(patches).cpu(),
        targets=targets_t,
        out_channel=out_channel,
        weight=teacher_layer.consumer.weight.detach().cpu().clone(),
        positions=torch.cat(positions),
    )


def feature_mse(
    stats: FeatureStats,
    weight: torch.Tensor,
    keep: list[int],
    bias_shift: torch.Tensor | None = None,
) -> float:
    """Reconstruction MSE on the sampled positions with the kept slices of ``weight`` and the
    consumer's bias moved by ``bias_shift`` from the one subtracted from the targets."""
    pred = stats.patches[:, keep].flatten(1) @ weight[:, keep].flatten(1).T
    if bias_shift is not None:
        pred = pred + bias_shift
    return float(F.mse_loss(pred, stats.targets))
