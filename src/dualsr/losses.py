"""The dual regression objective (Guo et al., CVPR 2020, Eq. 1).

primal = L1(final output, HR) + sum over the lower pyramid levels of L1(output, LR of that size),
level 0 (the LR input itself) included; dual = sum_i L1(dual_i(output at level i+1), LR at level i);
total = primal + dual_weight * dual, dual_weight (lambda) = 0.1 in the paper.

The loss knows nothing about the model: it takes the primal outputs, the dual outputs and the
target pyramid, so training, compression and other backbones reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LossTerms:
    """The total loss and its parts (``dual`` is zero when the dual term is off)."""

    total: torch.Tensor
    primal: torch.Tensor
    dual: torch.Tensor

    def item(self) -> dict[str, float]:
        """Python floats for logging."""
        return {"loss": float(self.total), "primal": float(self.primal), "dual": float(self.dual)}


class DualRegressionLoss(nn.Module):
    """primal L1 at every pyramid level + ``dual_weight`` x dual L1.

    Args:
        dual_weight: lambda; 0.1 in the paper.
        use_dual: False trains the primal alone (the paper's ablation baseline).
    """

    def __init__(self, dual_weight: float = 0.1, use_dual: bool = True) -> None:
        super().__init__()
        if dual_weight < 0:
            raise ValueError(f"dual_weight must be >= 0, got {dual_weight}")
        self.dual_weight = dual_weight
        self.use_dual = use_dual

    def forward(
        self,
        outputs: list[torch.Tensor],
        targets: list[torch.Tensor],
        dual_outputs: list[torch.Tensor] | None = None,
    ) -> LossTerms:
        """Compute the loss.

        Args:
            outputs: primal outputs, level 0 (LR size) .. level P (SR).
            targets: the image pyramid, same sizes: LR input .. HR.
            dual_outputs: ``dual_outputs[i]`` = dual i applied to ``outputs[i + 1]``
                (required when ``use_dual``).
        """
        if len(outputs) != len(targets):
            raise ValueError(f"{len(outputs)} outputs but {len(targets)} targets")
        primal = sum(F.l1_loss(o, t) for o, t in zip(outputs, targets, strict=True))
        if not self.use_dual:
            zero = primal.new_zeros(())
            return LossTerms(primal, primal, zero)
        if dual_outputs is None or len(dual_outputs) != len(targets) - 1:
            raise ValueError("the dual term needs one dual output per level below the top")
        dual = sum(F.l1_loss(d, t) for d, t in zip(dual_outputs, targets[:-1], strict=True))
        return LossTerms(primal + self.dual_weight * dual, primal, dual)
