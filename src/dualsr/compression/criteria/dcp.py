"""``dcp``: discrimination-aware channel pruning (Zhuang et al. 2018), the greedy by gradients.

Per layer, :func:`~dualsr.compression.greedy.select_greedy` grows the kept set from nothing,
scoring the units by the gradient of ``MSE + gamma x primal`` w.r.t. their consumer weight slices
(:meth:`DCP.scores`, by the rule ``score``), with a warm start and local SGD after every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..greedy import select_greedy
from ..pruning.scores import DEFAULT_SCORE, check_score, gradient_scores
from .base import Criterion, LayerContext


@dataclass
class DCP(Criterion):
    """The gradient greedy without the dual term.

    Attributes:
        score: how a unit is scored from its gradient slice ``g = grad[:, j]``: ``official``
            (default, the released code, ``sum_o ||g[o]||``) or ``dcp-paper`` (``||g||``);
            :data:`~dualsr.compression.pruning.scores.GRADIENT_SCORES`.
    """

    name = "dcp"
    description = (
        "discrimination-aware channel pruning: greedy by gradient norm of MSE + gamma primal"
    )
    needs = "gradients"

    score: str = DEFAULT_SCORE

    def __post_init__(self) -> None:
        check_score(self.score)

    def scores(self, grad: torch.Tensor) -> torch.Tensor:
        """One score per input unit of an accumulated consumer-weight gradient (float64)."""
        return gradient_scores(grad, self.score)

    def select(self, context: LayerContext, n_keep: int) -> list[int]:
        """The greedy of :func:`~dualsr.compression.greedy.select_greedy` on the layer, its
        variant and settings from ``context.options``."""
        feed = context.feed("original")
        kept, cost = select_greedy(
            context.model,
            context.layer,
            context.pretrained,
            context.duals,
            n_keep,
            feed,
            None,
            self,
            context.options,
        )
        context.gradient_passes += cost.gradient_passes
        context.local_passes += cost.local_passes
        context.feature_passes += cost.moment_passes
        context.loss = cost.loss
        return kept
