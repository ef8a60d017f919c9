"""The dual regression objective (Guo et al., CVPR 2020, Eq. 1).

primal = L1(final output, HR) + sum over the lower pyramid levels of L1(output, LR of that size),
level 0 (the LR input itself) included; dual = sum_i L1(dual_i(output at level i+1), LR at level i);
total = primal + dual_weight * dual, dual_weight (lambda) = 0.1 in the paper.

Optionally (``dual_hr``) the closed loop is also run on the HR side ("DRN-S with dual HR"):
the duals map the HR image y down to an estimated LR image, the primal maps that back up, and
``dual_weight`` x L1(P(D(y)) at the top level, y) is added (:func:`hr_loop`).

The loss knows nothing about the model: it takes the primal outputs, the dual outputs, the
HR-loop output and the target pyramid, so training, compression and other backbones reuse it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LossTerms:
    """The total loss and its parts (``dual`` is zero when the dual term is off; ``dual_hr``,
    the unweighted HR-loop L1, is None when that term is off)."""

    total: torch.Tensor
    primal: torch.Tensor
    dual: torch.Tensor
    dual_hr: torch.Tensor | None = None

    def item(self) -> dict[str, float]:
        """Python floats for logging (``dual_hr`` 0.0 when off)."""
        return {
            "loss": float(self.total.detach()),
            "primal": float(self.primal.detach()),
            "dual": float(self.dual.detach()),
            "dual_hr": float(self.dual_hr.detach()) if self.dual_hr is not None else 0.0,
        }


def hr_loop(
    primal: Callable[[torch.Tensor], list[torch.Tensor]],
    duals: Sequence[nn.Module],
    hr: torch.Tensor,
) -> torch.Tensor:
    """The closed loop on the HR side: ``P(D(hr))`` at the top level of the primal's pyramid.

    The duals are chained from the top: ``duals[-1]`` maps the HR image (level P) to level P-1,
    ..., ``duals[0]`` maps level 1 to level 0, giving the estimated LR image x_hat (two halving
    steps for x4, three for x8). ``primal(x_hat)`` is the estimated HR pyramid; its last (full
    scale) level is returned.

    Nothing is detached: the gradient of a loss on the result reaches the primal's parameters
    (through the second primal pass) and every dual's parameters (through x_hat), so the loop
    trains both P and D.
    """
    x = hr
    for i in range(len(duals) - 1, -1, -1):
        x = duals[i](x)
    return primal(x)[-1]


class DualRegressionLoss(nn.Module):
    """primal L1 at every pyramid level + ``dual_weight`` x dual L1 (+ ``dual_weight`` x dual HR).

    The dual HR term (``dual_hr=True``) is ``L1(P(D(y))_top, y)``, y the HR image (the top of
    the target pyramid) and ``P(D(y))_top`` the full-scale output of the primal fed with the
    duals' estimate of the LR image (:func:`hr_loop`), weighted by the same lambda as the
    LR-side dual term. Top level only, by choice and source: the paper's closed loop (Sec. 3,
    Eq. 1: ``L_P(P(x), y) + lambda L_D(D(P(x)), x)``) compares a loop's output with the image
    the loop started from; the HR-side loop of its "DRN-S with dual HR" variant starts from y,
    so its term is ``L(P(D(y)), y)``, one full-scale comparison. The lower levels of
    ``P(D(y))`` have no target of their own (their input is the duals' estimate, not the
    bicubic LR), and the pyramid levels stay supervised by the primal term, unchanged. The
    released DRN code has no such term (``trainer.py`` computes only
    ``loss_primary + dual_weight * loss_dual``, lines 51-61).

    total = primal + dual_weight * dual [+ dual_weight * dual_hr]; with ``dual_hr`` off the
    total is computed exactly as before.

    Args:
        dual_weight: lambda; 0.1 in the paper.
        use_dual: False trains the primal alone (the paper's ablation baseline).
        dual_hr: add the HR-side closed loop; needs ``use_dual`` (it runs through the duals).
    """

    def __init__(
        self, dual_weight: float = 0.1, use_dual: bool = True, dual_hr: bool = False
    ) -> None:
        super().__init__()
        if dual_weight < 0:
            raise ValueError(f"dual_weight must be >= 0, got {dual_weight}")
        if dual_hr and not use_dual:
            raise ValueError("dual_hr needs use_dual: the HR loop runs through the dual models")
        self.dual_weight = dual_weight
        self.use_dual = use_dual
        self.dual_hr = dual_hr

    def forward(
        self,
        outputs: list[torch.Tensor],
        targets: list[torch.Tensor],
        dual_outputs: list[torch.Tensor] | None = None,
        hr_cycle: torch.Tensor | None = None,
    ) -> LossTerms:
        """Compute the loss.

        Args:
            outputs: primal outputs, level 0 (LR size) .. level P (SR).
            targets: the image pyramid, same sizes: LR input .. HR.
            dual_outputs: ``dual_outputs[i]`` = dual i applied to ``outputs[i + 1]``
                (required when ``use_dual``).
            hr_cycle: ``P(D(HR))`` at full scale, :func:`hr_loop` of ``targets[-1]``
                (required when ``dual_hr``, ignored otherwise).
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
        total = primal + self.dual_weight * dual
        if not self.dual_hr:
            return LossTerms(total, primal, dual)
        if hr_cycle is None or hr_cycle.shape != targets[-1].shape:
            shape = None if hr_cycle is None else tuple(hr_cycle.shape)
            raise ValueError(
                f"the dual HR term needs P(D(HR)) of the HR shape {tuple(targets[-1].shape)}, "
                f"got {shape}"
            )
        dual_hr = F.l1_loss(hr_cycle, targets[-1])
        return LossTerms(total + self.dual_weight * dual_hr, primal, dual, dual_hr)
