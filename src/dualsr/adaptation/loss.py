"""The semi-supervised objective of DRN-Adapt (Guo et al., CVPR 2020, Sec. 3 and Algorithm 2).

Over a batch that mixes paired synthetic samples (x, y) and unpaired real LR images x:

    sum_i  1_paired(x_i) L_P(P(x_i), y_i)  +  lambda L_D(D(P(x_i)), x_i)

The indicator keeps the primal (HR) loss to the paired samples; the dual (closed-loop) loss
applies to every sample. For paired samples the terms are exactly those of training
(:class:`dualsr.DualRegressionLoss`: the primal L1 at every pyramid level, the dual L1 of each
dual against its pyramid level). An unpaired sample has no pyramid, only x itself, so its closed
loop runs the duals down from each level of the primal's output to level 0 and compares with x:
``L1(D_0(...D_{l-1}(P(x)_l)), x)`` summed over the levels l = 1..P (for x4: the 2x output through
one dual, the 4x output through both, the paper's D(P(x))).

The two groups are weighted by their share of the batch (the paper's sum over samples), so
``unpaired_ratio`` (rho) sets how much the real images count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import DualRegressionLoss


@dataclass
class AdaptLossTerms:
    """The total and its parts (unweighted means of each group; zero for an empty group)."""

    total: torch.Tensor
    primal: torch.Tensor  # paired samples only
    dual_paired: torch.Tensor
    dual_unpaired: torch.Tensor

    def item(self) -> dict[str, float]:
        """Python floats for logging."""
        return {
            "loss": float(self.total.detach()),
            "primal": float(self.primal.detach()),
            "dual_paired": float(self.dual_paired.detach()),
            "dual_unpaired": float(self.dual_unpaired.detach()),
        }


def closed_loops(duals: Sequence[nn.Module], outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``D_0(...D_{l-1}(outputs[l]))`` for l = 1..P: every level brought back to LR size."""
    loops = []
    for level in range(1, len(outputs)):
        x = outputs[level]
        for i in range(level - 1, -1, -1):
            x = duals[i](x)
        loops.append(x)
    return loops


def adaptation_loss(
    dual_weight: float,
    paired: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] | None,
    unpaired: tuple[torch.Tensor, list[torch.Tensor]] | None,
    primal_only_paired: bool = True,
) -> AdaptLossTerms:
    """The DRN-Adapt loss of one batch.

    Args:
        dual_weight: lambda.
        paired: ``(outputs, targets, dual_outputs)`` of the paired samples (the primal's
            pyramid, the target pyramid, each dual's output on its level), or None.
        unpaired: ``(x, loops)``: the unpaired LR inputs and :func:`closed_loops` of their
            outputs, or None. No HR exists for them, so no primal term can be formed.
        primal_only_paired: False drops the primal term too (fitting duals alone).
    """
    groups = []
    zero = None
    if paired is not None:
        outputs, targets, dual_outputs = paired
        n = outputs[0].shape[0]
        terms = DualRegressionLoss(dual_weight)(outputs, targets, dual_outputs)
        primal, dual_p = terms.primal, terms.dual
        paired_total = (primal if primal_only_paired else 0.0) + dual_weight * dual_p
        groups.append((n, paired_total))
        zero = primal.new_zeros(())
    if unpaired is not None:
        x, loops = unpaired
        m = x.shape[0]
        dual_u = sum(F.l1_loss(loop, x) for loop in loops)
        groups.append((m, dual_weight * dual_u))
        zero = dual_u.new_zeros(()) if zero is None else zero
    if not groups:
        raise ValueError("a batch needs paired or unpaired samples")
    count = sum(n for n, _ in groups)
    total = sum(n / count * value for n, value in groups)
    return AdaptLossTerms(
        total=total,
        primal=primal if paired is not None else zero,
        dual_paired=dual_p if paired is not None else zero,
        dual_unpaired=dual_u if unpaired is not None else zero,
    )
