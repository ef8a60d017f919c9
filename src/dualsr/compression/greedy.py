"""Gradient-based greedy channel selection for one searched layer (``drc``, ``dcp``).

Per layer, as in DCP (Zhuang et al. 2018) and stage 2 of the DRC paper (Guo et al., TPAMI 2024,
"Towards Lightweight Super-Resolution with Dual Regression Learning"), with ``W`` the weight of
the layer's consumer conv:

1. start with no unit selected: ``W = 0``;
2. accumulate, over the pruning data, the gradient w.r.t. ``W`` of
   ``MSE(original consumer output, pruned consumer output) + gamma * (primal + lambda * dual)``
   (:class:`~dualsr.compression.pruning.objective.LayerObjective`);
3. score every unselected unit ``j`` from ``grad[:, j]`` (the criterion's ``score``: ``official``,
   the released code's ``sum_o ||grad[o, j]||``, by default; ``dcp-paper``, the DCP paper's
   Frobenius norm ``||grad[:, j]||``; :data:`~dualsr.compression.pruning.scores.GRADIENT_SCORES`);
   select the best (``channels_per_pass`` of them) and warm-start their slices from the
   pretrained weights;
4. one epoch of SGD on the selected slices and, by default (``options.local_bias``, as in the
   released code), the consumer's bias (Nesterov, momentum 0.9, lr 5e-5; the bias unmasked);
5. repeat until the layer holds its configured number of units.

Two variants share steps 1, 3 and 5 and differ in where the gradients of steps 2 and 4 come from:

``greedy="passes"`` (the default) runs the loop literally: each step costs a gradient pass and a
local-SGD epoch over the data (with ``channels_per_pass=1``, the paper's loop: two passes per kept
channel).

``greedy="moments"`` (the fast option) gives the same steps without most passes. The layer's input
does not depend on ``W``, so the reconstruction term is a quadratic in ``W`` whose gradient is
exactly ``scale * (W G - C)`` with ``G`` the second moment of the input patches and ``C`` their
cross moment with the original outputs (:class:`~dualsr.compression.pruning.moments.LayerMoments`,
one truncated pass per layer;
first moments make the bias's gradient and its effect on ``W``'s exact too). The score is a
function of the accumulated gradient only, so both scores apply to this variant unchanged.
Scoring and every local-SGD step then use that exact gradient plus the SR term's per-batch
gradient from a real pass (made once per layer, or every ``refresh`` steps); a real local-SGD
epoch on the whole loss (``final_epochs``) ends the layer. With ``gamma = 0`` this reproduces the
paper's loop exactly; benchmarks/bench_greedy.py measures both (docs/compression-prune.md).

Data: :func:`select_greedy` reads the layer's passes from a
:class:`~dualsr.compression.pruning_data.LayerFeed` (or fixed batches and targets, the same for
every pass). ``greedy="passes"`` asks it for every gradient pass and every local-SGD epoch, so
with fresh crops (the driver's :class:`~dualsr.compression.pruning_data.CropSource`) each sees new
crops, as in the released code. ``greedy="moments"`` asks once per layer: its moments, SR-gradient
passes (refreshes included), emulated steps and final real epochs all read that one draw (the
per-batch moments and SR gradients must come from the same batches), so fresh crops are fresh
per layer.

:func:`select_greedy` runs the configured variant on one layer, for the gradient criteria
(:mod:`dualsr.compression.criteria.dcp`, :mod:`~dualsr.compression.criteria.drc`); the
layer-by-layer driver is :func:`dualsr.compression.prune.prune_model`. Its building blocks live
in :mod:`dualsr.compression.pruning` (the layer objective and local SGD, the moments) and are
re-exported here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from ..models.drn import DRN, DualModels
from .layers import SearchedLayer
from .pruning.moments import LayerMoments, collect_moments, moments_sgd
from .pruning.objective import (
    LOCAL_LR,
    LOCAL_MOMENTUM,
    LayerObjective,
    StopForward,
    accumulate_gradient,
    batch_gradients,
    consumer_inputs,
    forward_until_stop,
    local_sgd,
)
from .pruning.scores import top_units
from .pruning_data import LayerFeed, Pyramid, as_feed

__all__ = [
    "DEFAULT_CHANNELS_PER_PASS",
    "DEFAULT_GREEDY",
    "LOCAL_LR",
    "LOCAL_MOMENTUM",
    "GradientScorer",
    "GreedyCost",
    "GreedyOptions",
    "LayerMoments",
    "LayerObjective",
    "Pyramid",
    "StopForward",
    "accumulate_gradient",
    "batch_gradients",
    "collect_moments",
    "consumer_inputs",
    "forward_until_stop",
    "local_sgd",
    "select_greedy",
]

#: The greedy's defaults (docs/compression-prune.md has the measurements behind them). The
#: released loop ("passes") is the default: on drn-t-x4 at 30% the moments greedy picked the same
#: channels in 22 of 24 layers (522 of 524 channels), not all (benchmarks/results/
#: greedy_vs_official_drn_t_x4_r30.txt), so it stays the fast option.
DEFAULT_GREEDY: Literal["moments", "passes"] = "passes"
DEFAULT_CHANNELS_PER_PASS = 1


class GreedyOptions(Protocol):
    """The settings :func:`select_greedy` reads (:class:`~dualsr.compression.prune.PruneOptions`
    has them; its fields document their meaning)."""

    @property
    def greedy(self) -> Literal["moments", "passes"]: ...
    @property
    def gamma(self) -> float: ...
    @property
    def dual_weight(self) -> float: ...
    @property
    def channels_per_pass(self) -> int: ...
    @property
    def local_epochs(self) -> int: ...
    @property
    def local_lr(self) -> float: ...
    @property
    def refresh(self) -> int | None: ...
    @property
    def final_epochs(self) -> int: ...
    @property
    def local_bias(self) -> bool: ...


@dataclass
class GreedyCost:
    """What the greedy selection of one layer cost, and the reconstruction MSE it ended with.

    ``gradient_passes`` and ``local_passes`` are full forward/backward passes over the pruning
    data; ``moment_passes`` are the truncated passes that collect :class:`LayerMoments`.
    """

    gradient_passes: int = 0
    local_passes: int = 0
    moment_passes: int = 0
    loss: float | None = None


class GradientScorer(Protocol):
    """What :func:`select_greedy` needs of a gradient criterion
    (:class:`~dualsr.compression.criteria.dcp.DCP` and its subclasses)."""

    @property
    def dual(self) -> bool: ...
    def scores(self, grad: torch.Tensor) -> torch.Tensor: ...


# ----------------------------------------------------------------------------------------------
# The greedy loops
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _empty_selection(weight: torch.Tensor) -> Iterator[torch.Tensor]:
    """The frame of a greedy loop: yield the (empty) selection mask over ``weight``'s input units.

    ``weight`` is zeroed (no unit selected yet) and trainable inside; afterwards it is frozen
    again and has no gradient, however the loop ends.
    """
    selected = torch.zeros(weight.shape[1], dtype=torch.bool, device=weight.device)
    with torch.no_grad():
        weight.zero_()
    weight.requires_grad_(True)
    try:
        yield selected
    finally:
        weight.requires_grad_(False)
        weight.grad = None


def _select_step(
    weight: torch.Tensor,
    selected: torch.Tensor,
    grad: torch.Tensor,
    pretrained: torch.Tensor,
    criterion: GradientScorer,
    n_keep: int,
    per_step: int,
) -> None:
    """One selection step: score the units by ``grad`` (``criterion.scores``), add the best
    ``per_step`` unselected ones (no more than ``n_keep`` in all) to ``selected`` and warm-start
    their slices of ``weight``."""
    scores = criterion.scores(grad).to("cpu", torch.float64)
    scores[selected.cpu()] = -math.inf
    step = min(per_step, n_keep - int(selected.sum()))
    new = top_units(scores, step)
    selected[new] = True
    with torch.no_grad():
        weight[:, new] = pretrained[:, new]  # warm start


def _kept(selected: torch.Tensor) -> list[int]:
    return [int(j) for j in torch.nonzero(selected).flatten()]


def _greedy_layer(
    objective: LayerObjective,
    pretrained: torch.Tensor,
    n_keep: int,
    feed: LayerFeed,
    criterion: GradientScorer,
    options: GreedyOptions,
    cost: GreedyCost,
) -> list[int]:
    """The paper's greedy loop: a real gradient pass and a real local-SGD epoch per step, each
    reading the next pass of ``feed``."""
    weight = objective.layer.consumer.weight
    with _empty_selection(weight) as selected:
        while int(selected.sum()) < n_keep:
            batches, targets = feed.next_pass()
            grad, cost.loss = accumulate_gradient(objective, batches, targets)
            cost.gradient_passes += 1
            _select_step(
                weight,
                selected,
                grad,
                pretrained,
                criterion,
                n_keep,
                options.channels_per_pass,
            )
            if options.local_epochs > 0:
                cost.loss = local_sgd(
                    objective,
                    feed,
                    None,
                    selected,
                    options.local_epochs,
                    options.local_lr,
                    options.local_bias,
                )
                cost.local_passes += options.local_epochs
    return _kept(selected)


def _moments_layer(
    moments: LayerMoments,
    sr_objective: LayerObjective | None,
    full_objective: LayerObjective,
    pretrained: torch.Tensor,
    n_keep: int,
    batches: Sequence[Pyramid],
    targets: Sequence[torch.Tensor],
    criterion: GradientScorer,
    options: GreedyOptions,
    cost: GreedyCost,
) -> list[int]:
    """The greedy loop with the MSE part of every gradient computed exactly from moments.

    Scoring and the local SGD use ``moments`` for the reconstruction term and, for the SR term
    (``sr_objective``), per-batch gradients from a real pass, refreshed every ``options.refresh``
    selection steps (once per layer by default). ``options.final_epochs`` real epochs of local
    SGD on the whole loss end the layer.
    """
    conv = full_objective.layer.consumer
    weight = conv.weight
    bias = conv.bias if options.local_bias else None
    sr_grads: list[torch.Tensor] | None = None
    sr_bias_grads: list[torch.Tensor] | None = None
    since_refresh = 0
    with _empty_selection(weight) as selected:
        while int(selected.sum()) < n_keep:
            stale = options.refresh is not None and since_refresh >= options.refresh
            if sr_objective is not None and (sr_grads is None or stale):
                sr_bias_grads = [] if bias is not None else None
                sr_grads = batch_gradients(sr_objective, batches, targets, sr_bias_grads)
                cost.gradient_passes += 1
                since_refresh = 0
            grad = moments.gradient(weight, bias=conv.bias)
            if sr_grads is not None:
                grad = grad + sum(sr_grads)
            _select_step(
                weight,
                selected,
                grad,
                pretrained,
                criterion,
                n_keep,
                options.channels_per_pass,
            )
            if options.local_epochs > 0:
                with torch.no_grad():
                    moments_sgd(
                        weight,
                        bias,
                        moments,
                        sr_grads,
                        sr_bias_grads,
                        selected,
                        options.local_epochs,
                        options.local_lr,
                    )
            since_refresh += 1
        cost.loss = moments.mse(weight, conv.bias)
        if options.final_epochs > 0:
            cost.loss = local_sgd(
                full_objective,
                batches,
                targets,
                selected,
                options.final_epochs,
                options.local_lr,
                options.local_bias,
            )
            cost.local_passes += options.final_epochs
    return _kept(selected)


def select_greedy(
    model: DRN,
    layer: SearchedLayer,
    pretrained: torch.Tensor,
    duals: DualModels | None,
    n_keep: int,
    batches: Sequence[Pyramid] | LayerFeed,
    targets: Sequence[torch.Tensor] | None,
    criterion: GradientScorer,
    options: GreedyOptions,
) -> tuple[list[int], GreedyCost]:
    """Select ``n_keep`` input units of ``layer`` (a layer of ``model``) with the greedy loop.

    Runs the variant ``options.greedy`` names (see the module docstring). On return, the
    consumer weight of ``layer`` holds the selected units' slices (warm-started from
    ``pretrained`` and tuned by the local SGD) and zeros elsewhere; the weight is frozen.

    Args:
        model: the network being pruned (earlier layers already pruned, later ones full).
        layer: the searched layer of ``model`` to select units of.
        pretrained: the original weight of ``layer``'s consumer conv (the warm start).
        duals: the dual models for the SR term's dual part, or None (used only when
            ``criterion.dual``).
        n_keep: how many units to select.
        batches: the pruning data (pyramids ``[LR, ..., HR]``), read by every pass; or a
            :class:`~dualsr.compression.pruning_data.LayerFeed` that gives each pass its batches
            and targets (``greedy="passes"``: every gradient pass and local-SGD epoch draws
            one; ``"moments"``: one draw for the whole layer).
        targets: the original model's consumer output of ``layer`` for each batch (None with a
            feed).
        criterion: a gradient criterion: its ``scores(grad)`` scores the units from the
            accumulated consumer-weight gradient, its ``dual`` says whether the loss has the
            dual term.
        options: the greedy's settings, e.g. a :class:`~dualsr.compression.prune.PruneOptions`.

    Returns:
        The selected units (ascending) and what the selection cost.
    """
    cost = GreedyCost()
    duals = duals if criterion.dual else None
    feed = as_feed(batches, targets)
    with LayerObjective(model, layer, duals, options.gamma, options.dual_weight) as objective:
        if options.greedy == "passes":
            kept = _greedy_layer(objective, pretrained, n_keep, feed, criterion, options, cost)
            return kept, cost
        batches, drawn = feed.next_pass()  # the moments greedy: one draw for the layer
        if any(t is None for t in drawn):
            raise ValueError("the moments greedy needs the original consumer outputs")
        targets = [t for t in drawn if t is not None]
        args = (pretrained, n_keep, batches, targets, criterion, options, cost)
        moments = collect_moments(model, layer, targets, batches)
        cost.moment_passes += 1
        if options.gamma == 0:  # no SR term: every gradient comes from the moments
            return _moments_layer(moments, None, objective, *args), cost
        sr_only = LayerObjective(
            model, layer, duals, options.gamma, options.dual_weight, mse_weight=0
        )
        with sr_only:
            return _moments_layer(moments, sr_only, objective, *args), cost
