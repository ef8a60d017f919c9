"""``thinet``: ThiNet (Luo et al. 2017), as the released DRC code (``thinet_prune.py``).

Greedy removal of the units whose summed contribution to the consumer output stays smallest on
sampled (position, output channel) pairs (:func:`thinet_select`), least-squares per-unit scales,
then local SGD of the kept slices on the SR loss alone (:func:`sr_local_sgd`). Options (the
released code's behaviour by default, our earlier one as the other value): ``thinet_error``
(``abs`` / ``squared``) and ``thinet_targets`` (``pruned``: the network being pruned's own
consumer output / ``original``: the original model's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ...models.drn import DRN, DualModels
from ..layers import SearchedLayer
from ..pruning.features import FeatureStats, Selection
from ..pruning.objective import LayerObjective, local_sgd, zero_unkept
from ..pruning.solvers import least_squares
from ..pruning_data import LayerFeed
from .base import LayerContext, PruneSettings, check_choice
from .feature_based import FeatureCriterion

#: ThiNet's greedy removal error: ``abs`` (released code, default) or ``squared`` (ours before).
THINET_ERRORS = ("abs", "squared")
DEFAULT_THINET_ERROR = "abs"
#: Whose consumer output ThiNet reconstructs: ``pruned`` (the network being pruned, released code,
#: default) or ``original`` (the original model, ours before).
THINET_TARGETS = ("pruned", "original")
DEFAULT_THINET_TARGETS = "pruned"


def thinet_select(
    stats: FeatureStats, n_keep: int, ridge: float = 1e-6, error: str = DEFAULT_THINET_ERROR
) -> Selection:
    """ThiNet (Luo et al. 2017): greedily remove the units whose summed contribution stays
    smallest, then re-scale each kept unit's weight slice by least squares.

    With ``z`` the ``S x C`` contributions (each sample a position and a random output channel),
    the removed set ``T`` grows one unit at a time, taking the ``j`` (the first on ties)
    minimising ``sum_s |sum_{t in T + j} z[s, t]|`` (``error="abs"``, default, the released
    ``ThinetFilterPrune.channel_select``) or ``sum_s (sum_{t in T + j} z[s, t])^2``
    (``error="squared"``, our earlier variant, the ThiNet paper's). The scales minimise
    ``sum_s (sampled_target[s] - sum_{j kept} scale_j z[s, j])^2``; the targets have the bias
    subtracted (the released code fits the output with its bias, without an intercept).
    The local SGD that follows in the released code is run by the pruning loop
    (:meth:`ThiNet.refine`, :func:`sr_local_sgd`).
    """
    check_choice("thinet_error", error, THINET_ERRORS)
    z = stats.contributions().double()
    c = z.shape[1]
    acc = torch.zeros(z.shape[0], dtype=torch.float64, device=z.device)
    alive = torch.ones(c, dtype=torch.bool, device=z.device)
    for _ in range(c - n_keep):
        total = acc[:, None] + z
        cost = total.abs().sum(0) if error == "abs" else total.pow(2).sum(0)
        cost[~alive] = math.inf
        j = int(torch.argmin(cost))  # first minimum on ties
        alive[j] = False
        acc += z[:, j]
    keep = [j for j in range(c) if alive[j]]
    scales = least_squares(z[:, keep], stats.sampled_targets().double(), ridge)
    w = stats.weight[:, keep] * scales.to(stats.weight.dtype).view(1, -1, 1, 1)
    return Selection(keep, w, scales.to(stats.weight.dtype))


def sr_local_sgd(
    model: DRN,
    layer: SearchedLayer,
    duals: DualModels | None,
    feed: LayerFeed,
    selection: Selection,
    opts: PruneSettings,
) -> None:
    """ThiNet's local SGD after its selection (the released ``finetune_params``).

    ``opts.local_epochs`` epochs of SGD (Nesterov, momentum 0.9, ``opts.local_lr``, no weight
    decay) on the SR loss alone (primal + ``dual_weight`` x dual with ``duals``; no
    reconstruction term, no gamma), updating the kept slices of the consumer weight (the
    removed ones stay zero) and, with ``opts.local_bias``, its bias. The released code updates
    ``pruned_weight`` with the ThiNet scales ``beta`` held fixed (``beta`` gets a gradient but
    is not among the optimiser's parameters); the effective weight is
    ``pruned_weight * beta``, so an SGD step on ``pruned_weight`` moves slice ``j`` of our
    (effective) weight by ``beta_j^2`` times the step on the weight itself: each kept slice's
    gradient is multiplied by its squared scale, which reproduces that trajectory exactly
    (momentum and Nesterov are linear in the gradients). Each epoch reads ``feed``'s next pass
    (new crops per epoch with fresh data); the SR loss needs no targets.
    """
    conv = layer.consumer
    weight = conv.weight
    units = torch.zeros(conv.in_channels, dtype=weight.dtype, device=weight.device)
    scales = selection.scales
    if scales is None:
        scales = torch.ones(len(selection.keep))
    units[selection.keep] = scales.to(units).pow(2)
    weight.requires_grad_(True)
    try:
        with LayerObjective(
            model, layer, duals, gamma=1.0, dual_weight=opts.dual_weight, mse_weight=0.0
        ) as objective:
            local_sgd(
                objective,
                feed,
                None,
                units,
                opts.local_epochs,
                opts.local_lr,
                opts.local_bias,
            )
    finally:
        weight.requires_grad_(False)
        weight.grad = None


@dataclass
class ThiNet(FeatureCriterion):
    """ThiNet: :func:`thinet_select` on sampled statistics, then :func:`sr_local_sgd`.

    Attributes:
        thinet_error: the greedy removal error, ``abs`` (default, released code) or ``squared``.
        thinet_targets: whose consumer output is reconstructed, ``pruned`` (default, released
            code: the network being pruned's own) or ``original`` (the original model's).
    """

    name = "thinet"
    description = (
        "ThiNet: greedy removal by least change of the consumer output, least-squares scales, "
        "local SGD on the SR loss"
    )

    thinet_error: str = DEFAULT_THINET_ERROR
    thinet_targets: str = DEFAULT_THINET_TARGETS

    def __post_init__(self) -> None:
        check_choice("thinet_error", self.thinet_error, THINET_ERRORS)
        check_choice("thinet_targets", self.thinet_targets, THINET_TARGETS)

    @property
    def feature_targets(self) -> Literal["original", "pruned"]:
        """``thinet_targets``."""
        return "pruned" if self.thinet_targets == "pruned" else "original"

    def uses_duals(self, options: PruneSettings) -> bool:
        """The local SGD's SR loss has the dual term when it runs with ``dual_weight > 0``."""
        return options.local_epochs > 0 and options.dual_weight > 0

    def choose(self, stats: FeatureStats, n_keep: int) -> Selection:
        """:func:`thinet_select` with ``thinet_error``."""
        return thinet_select(stats, n_keep, error=self.thinet_error)

    def refine(self, context: LayerContext, selection: Selection) -> None:
        """``local_epochs`` of :func:`sr_local_sgd`, the removed slices zeroed first."""
        options = context.options
        if options.local_epochs > 0:
            zero_unkept(context.layer.consumer, selection.keep)
            sr_feed = context.feed(None)  # the SR loss alone: no targets
            sr_local_sgd(context.model, context.layer, context.duals, sr_feed, selection, options)
            context.local_passes = options.local_epochs
