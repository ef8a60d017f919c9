"""Gradient-based greedy channel selection for one searched layer (``drc``, ``dcp``).

Per layer, as in DCP (Zhuang et al. 2018) and stage 2 of the DRC paper (Guo et al., TPAMI 2024,
"Towards Lightweight Super-Resolution with Dual Regression Learning"), with ``W`` the weight of
the layer's consumer conv:

1. start with no unit selected: ``W = 0``;
2. accumulate, over the pruning data, the gradient w.r.t. ``W`` of
   ``MSE(original consumer output, pruned consumer output) + gamma * (primal + lambda * dual)``
   (:class:`LayerObjective`);
3. score every unselected unit ``j`` from ``grad[:, j]`` (``options.score``: ``official``, the
   released code's ``sum_o ||grad[o, j]||``, by default; ``dcp-paper``, the DCP paper's
   Frobenius norm ``||grad[:, j]||``; :data:`~dualsr.compression.criteria.GRADIENT_SCORES`);
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
cross moment with the original outputs (:class:`LayerMoments`, one truncated pass per layer;
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

:func:`select_greedy` runs the configured variant on one layer; the layer-by-layer driver is
:func:`dualsr.compression.prune.prune_model`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import DualRegressionLoss
from ..models.drn import DRN, DualModels
from .criteria import DEFAULT_SCORE, Criterion, top_units
from .layers import SearchedLayer
from .pruning_data import LayerFeed, Pyramid, Targets, as_feed

#: The greedy's defaults (docs/compression-prune.md has the measurements behind them). The
#: released loop ("passes") is the default: on drn-t-x4 at 30% the moments greedy picked the same
#: channels in 22 of 24 layers (522 of 524 channels), not all (benchmarks/results/
#: greedy_vs_official_drn_t_x4_r30.txt), so it stays the fast option.
DEFAULT_GREEDY: Literal["moments", "passes"] = "passes"
DEFAULT_CHANNELS_PER_PASS = 1
#: Local SGD of the selected slices (the paper's values).
LOCAL_LR = 5e-5
LOCAL_MOMENTUM = 0.9


class GreedyOptions(Protocol):
    """The settings :func:`select_greedy` reads (:class:`~dualsr.compression.prune.PruneOptions`
    has them; see :func:`~dualsr.compression.prune.prune_model` for their meaning)."""

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
    def score(self) -> str: ...
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


# ----------------------------------------------------------------------------------------------
# Forward-pass helpers (shared with the feature criteria of the driver)
# ----------------------------------------------------------------------------------------------
class StopForward(Exception):
    """Raised by a hook to end a forward pass once the needed tensor is captured."""


def consumer_inputs(
    model: nn.Module, conv: nn.Conv2d, batches: Sequence[Pyramid]
) -> Iterator[torch.Tensor]:
    """For each batch, the input of ``conv`` in ``model``'s forward on its LR image.

    Each forward pass (without gradients) stops at ``conv``, so early layers cost little. The
    hook is removed when the iteration ends, normally or not.
    """
    captured: list[torch.Tensor] = []

    def pre_hook(module: nn.Module, inputs: tuple) -> None:
        captured.append(inputs[0].detach())
        raise StopForward

    handle = conv.register_forward_pre_hook(pre_hook)
    try:
        for pyramid in batches:
            captured.clear()
            with torch.no_grad():
                forward_until_stop(model, pyramid[0])
            yield captured[0]
    finally:
        handle.remove()


def forward_until_stop(model: nn.Module, lr: torch.Tensor) -> None:
    """Run ``model`` for the side effects of its hooks; a hook may end the pass early."""
    with contextlib.suppress(StopForward):
        model(lr)


# ----------------------------------------------------------------------------------------------
# Gradients from real passes
# ----------------------------------------------------------------------------------------------
class LayerObjective:
    """The pruning loss of one searched layer of the network being pruned.

    ``loss = mse_weight * MSE(original consumer output, pruned consumer output)
    + gamma * (primal + dual_weight * dual)`` (the dual term only when ``duals`` is given;
    ``mse_weight`` is 1 except for the SR-only passes of the moments greedy and ThiNet's local
    SGD, which set it to 0; with 0, a batch's target may be None). With ``gamma == 0``
    the forward pass stops at the layer. Use as a context manager (it hooks the consumer conv).
    """

    def __init__(
        self,
        model: DRN,
        layer: SearchedLayer,
        duals: DualModels | None,
        gamma: float = 1.0,
        dual_weight: float = 0.1,
        mse_weight: float = 1.0,
    ) -> None:
        self.model = model
        self.layer = layer
        self.duals = duals
        self.gamma = float(gamma)
        self.mse_weight = float(mse_weight)
        self.sr_loss = DualRegressionLoss(dual_weight, use_dual=duals is not None)
        self._output: torch.Tensor | None = None
        self._handle = None

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._output = output
        if self.gamma == 0:
            raise StopForward

    def __enter__(self) -> LayerObjective:
        self._handle = self.layer.consumer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __call__(self, pyramid: Pyramid, target: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        """(total loss, reconstruction MSE) on one batch; ``target`` = original consumer output
        (None with ``mse_weight == 0``: no reconstruction term, the MSE is reported as NaN)."""
        if target is None and self.mse_weight:
            raise ValueError("the reconstruction term needs the original consumer output")
        self._output = None
        try:
            outputs = self.model(pyramid[0])
        except StopForward:
            outputs = None
        assert self._output is not None, "the layer's consumer conv did not run"
        if target is None:
            recon, mse = None, math.nan
        else:
            recon = F.mse_loss(self._output, target)
            mse = float(recon.detach())
        sr = None
        if self.gamma and outputs is not None:
            dual_outputs = self.duals(outputs) if self.duals is not None else None
            sr = self.gamma * self.sr_loss(outputs, list(pyramid), dual_outputs).total
        if recon is None:
            if sr is None:
                raise ValueError("no loss: no reconstruction target and no SR term (gamma 0)")
            return sr, mse
        total = self.mse_weight * recon
        return (total if sr is None else total + sr), mse


def accumulate_gradient(
    objective: LayerObjective, batches: Sequence[Pyramid], targets: Targets
) -> tuple[torch.Tensor, float]:
    """Sum over the batches of d loss / d consumer weight (one gradient pass); mean MSE."""
    weight = objective.layer.consumer.weight
    weight.grad = None
    recon = 0.0
    for pyramid, target in zip(batches, targets, strict=True):
        loss, mse = objective(pyramid, target)
        loss.backward()
        recon += mse
    assert weight.grad is not None
    grad = weight.grad.detach().clone()
    weight.grad = None
    if objective.layer.consumer.bias is not None:
        objective.layer.consumer.bias.grad = None
    return grad, recon / len(batches)


@contextlib.contextmanager
def _trainable_bias(conv: nn.Conv2d, enabled: bool) -> Iterator[torch.Tensor | None]:
    """Yield ``conv``'s bias made trainable (None when ``enabled`` is false or there is none);
    afterwards its former ``requires_grad`` is restored and its gradient cleared."""
    bias = conv.bias if enabled else None
    if bias is None:
        yield None
        return
    before = bias.requires_grad
    bias.requires_grad_(True)
    try:
        yield bias
    finally:
        bias.requires_grad_(before)
        bias.grad = None


def local_sgd(
    objective: LayerObjective,
    batches: Sequence[Pyramid] | LayerFeed,
    targets: Targets | None,
    selected: torch.Tensor,
    epochs: int = 1,
    lr: float = LOCAL_LR,
    bias: bool = True,
) -> float:
    """SGD (Nesterov, momentum 0.9) on the selected slices of the consumer weight and its bias.

    Unselected slices get no update (their gradient is masked), so they stay zero. ``selected``
    is a boolean mask over the consumer's input units, or float per-unit gradient multipliers (0
    freezes a unit; ThiNet's local SGD passes its squared scales). With ``bias``
    (the released code's local SGD) the consumer's bias, if it has one, is updated too, with the
    same learning rate and no mask; ``bias=False`` leaves it at its pretrained value. Each epoch
    reads the batches and targets given, or, when ``batches`` is a
    :class:`~dualsr.compression.pruning_data.LayerFeed` (``targets`` None), the feed's next pass
    (new crops per epoch with fresh data, as the released ``finetune_params``); one optimiser
    (momentum) runs through all epochs. Returns the mean reconstruction MSE of the last epoch.
    """
    feed = as_feed(batches, targets)
    weight = objective.layer.consumer.weight
    mask = selected.to(weight.dtype).view(1, -1, 1, 1)
    recon = math.nan
    with _trainable_bias(objective.layer.consumer, bias) as b:
        params = [weight] if b is None else [weight, b]
        opt = torch.optim.SGD(params, lr=lr, momentum=LOCAL_MOMENTUM, nesterov=True)
        for _ in range(epochs):
            total = 0.0
            batches, targets = feed.next_pass()
            for pyramid, target in zip(batches, targets, strict=True):
                opt.zero_grad(set_to_none=True)
                loss, mse = objective(pyramid, target)
                loss.backward()
                weight.grad.mul_(mask)
                opt.step()
                total += mse
            recon = total / len(batches)
    weight.grad = None
    return recon


def batch_gradients(
    objective: LayerObjective,
    batches: Sequence[Pyramid],
    targets: Targets,
    bias_grads: list[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """d loss / d consumer weight on each batch separately (one gradient pass).

    When ``bias_grads`` is a list (and the consumer has a bias), the same pass appends
    d loss / d consumer bias of each batch to it.
    """
    conv = objective.layer.consumer
    weight = conv.weight
    grads = []
    with _trainable_bias(conv, bias_grads is not None) as bias:
        for pyramid, target in zip(batches, targets, strict=True):
            weight.grad = None
            if bias is not None:
                bias.grad = None
            loss, _ = objective(pyramid, target)
            loss.backward()
            assert weight.grad is not None
            grads.append(weight.grad.detach().clone())
            if bias is not None and bias_grads is not None:
                assert bias.grad is not None
                bias_grads.append(bias.grad.detach().clone())
    weight.grad = None
    return grads


# ----------------------------------------------------------------------------------------------
# Exact reconstruction gradients from moments
# ----------------------------------------------------------------------------------------------
@dataclass
class LayerMoments:
    """Moments of one layer's consumer inputs, for exact re-scoring without data passes.

    With ``P_b`` the consumer's input patches of batch ``b`` (one row per output position, one
    column per weight entry, ``D = C*kh*kw``) and ``R_b`` the original outputs minus the bias
    ``bias`` the consumer had when the moments were collected: ``gram[b] = P_b^T P_b`` (D x D),
    ``cross[b] = R_b^T P_b`` (O x D), ``sq[b] = |R_b|^2``, ``scale[b] = 2 / (output elements)``,
    and the first moments ``patch_sum[b]`` (D, the column sums of ``P_b``), ``target_sum[b]``
    (O, of ``R_b``) and ``count[b]`` (rows). For a consumer weight ``W`` (``O x D``) and a bias
    ``bias + delta``, the gradients of ``MSE(pruned output, original output)`` on batch ``b`` are
    exactly ``scale (W gram - cross + delta patch_sum^T)`` (weight) and
    ``scale (W patch_sum + count delta - target_sum)`` (bias), and the MSE is
    ``scale / 2 (sq - 2 <W, cross> + <W gram, W> + count |delta|^2 + 2 delta.(W patch_sum)
    - 2 delta.target_sum)``, because the layer's input does not depend on its own parameters.
    """

    gram: list[torch.Tensor]
    cross: list[torch.Tensor]
    sq: list[float]
    scale: list[float]
    patch_sum: list[torch.Tensor] = field(default_factory=list)
    target_sum: list[torch.Tensor] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    bias: torch.Tensor | None = None

    def _delta(self, bias: torch.Tensor | None) -> torch.Tensor | None:
        """``bias`` minus the collection-time bias (float64), None when there is no change."""
        if bias is None or self.bias is None:
            return None
        return bias.detach().to(self.gram[0].dtype) - self.bias.to(self.gram[0].dtype)

    def gradient(
        self, weight: torch.Tensor, batch: int | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The exact MSE gradient for ``weight`` (O x D) and ``bias`` (default: the consumer's
        bias at collection time) on one batch, or summed over all."""
        w = weight.detach().flatten(1).to(self.gram[0].dtype)
        delta = self._delta(bias)
        parts = range(len(self.gram)) if batch is None else [batch]
        g = torch.zeros_like(w)
        for b in parts:
            gb = w @ self.gram[b] - self.cross[b]
            if delta is not None:
                gb = gb + torch.outer(delta, self.patch_sum[b])
            g += self.scale[b] * gb
        return g.to(weight.dtype).view_as(weight)

    def bias_gradient(
        self, weight: torch.Tensor, bias: torch.Tensor, batch: int | None = None
    ) -> torch.Tensor:
        """The exact MSE gradient w.r.t. the consumer's bias, on one batch or summed over all."""
        if self.bias is None:
            raise ValueError("these moments were collected for a consumer without a bias")
        w = weight.detach().flatten(1).to(self.gram[0].dtype)
        delta = self._delta(bias)
        assert delta is not None
        parts = range(len(self.gram)) if batch is None else [batch]
        g = torch.zeros_like(delta)
        for b in parts:
            residual = w @ self.patch_sum[b] + self.count[b] * delta - self.target_sum[b]
            g += self.scale[b] * residual
        return g.to(bias.dtype)

    def mse(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> float:
        """The mean (over batches) reconstruction MSE for ``weight`` and ``bias`` (default: the
        collection-time bias)."""
        w = weight.detach().flatten(1).to(self.gram[0].dtype)
        delta = self._delta(bias)
        total = 0.0
        for b in range(len(self.gram)):
            gram, cross, sq, scale = self.gram[b], self.cross[b], self.sq[b], self.scale[b]
            value = sq - 2 * float((w * cross).sum()) + float((w @ gram * w).sum())
            if delta is not None:
                value += self.count[b] * float(delta @ delta)
                value += 2 * float(delta @ (w @ self.patch_sum[b]))
                value -= 2 * float(delta @ self.target_sum[b])
            total += scale / 2 * value
        return total / len(self.gram)


def collect_moments(
    model: DRN,
    layer: SearchedLayer,
    teacher_outputs: Sequence[torch.Tensor],
    batches: Sequence[Pyramid],
) -> LayerMoments:
    """The :class:`LayerMoments` of ``layer`` in ``model`` (one forward pass, truncated there)."""
    conv = layer.consumer
    moments = LayerMoments([], [], [], [])
    if conv.bias is not None:
        moments.bias = conv.bias.detach().double().clone()
    inputs = consumer_inputs(model, conv, batches)
    with torch.no_grad():
        for x, y in zip(inputs, teacher_outputs, strict=True):
            r = y - conv.bias.view(1, -1, 1, 1) if conv.bias is not None else y
            d = conv.weight[0].numel()
            gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
            cross = torch.zeros(r.shape[1], d, dtype=torch.float64, device=x.device)
            patch_sum = torch.zeros(d, dtype=torch.float64, device=x.device)
            count = 0
            for i in range(x.shape[0]):  # one image at a time bounds the unfold's memory
                p = F.unfold(
                    x[i : i + 1], conv.kernel_size, conv.dilation, conv.padding, conv.stride
                )[0]
                gram += (p @ p.T).double()
                cross += (r[i].flatten(1) @ p.T).double()
                patch_sum += p.double().sum(1)
                count += p.shape[1]
            moments.gram.append(gram)
            moments.cross.append(cross)
            moments.sq.append(float(r.double().pow(2).sum()))
            moments.scale.append(2.0 / y.numel())
            moments.patch_sum.append(patch_sum)
            moments.target_sum.append(r.double().sum(dim=(0, 2, 3)))
            moments.count.append(count)
    return moments


def _moments_sgd(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    moments: LayerMoments,
    sr_grads: Sequence[torch.Tensor] | None,
    sr_bias_grads: Sequence[torch.Tensor] | None,
    selected: torch.Tensor,
    epochs: int,
    lr: float,
) -> None:
    """:func:`local_sgd` without data passes: per batch, the moments' exact MSE gradient plus the
    held SR gradient (``sr_grads``, None for none), masked to the selected slices; the same for
    ``bias`` (None: not updated), unmasked, with ``sr_bias_grads``."""
    mask = selected.to(weight.dtype).view(1, -1, 1, 1)
    params = [weight] if bias is None else [weight, bias]
    opt = torch.optim.SGD(params, lr=lr, momentum=LOCAL_MOMENTUM, nesterov=True)
    for _ in range(epochs):
        for b in range(len(moments.gram)):
            g = moments.gradient(weight, b, bias)
            if sr_grads is not None:
                g = g + sr_grads[b]
            if bias is not None:
                gb = moments.bias_gradient(weight, bias, b)
                if sr_bias_grads:
                    gb = gb + sr_bias_grads[b]
                bias.grad = gb
            weight.grad = g * mask
            opt.step()
    weight.grad = None
    if bias is not None:
        bias.grad = None


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
    criterion: Criterion,
    n_keep: int,
    per_step: int,
    score: str = DEFAULT_SCORE,
) -> None:
    """One selection step: score the units by ``grad`` (with the rule ``score``), add the best
    ``per_step`` unselected ones (no more than ``n_keep`` in all) to ``selected`` and warm-start
    their slices of ``weight``."""
    scores = criterion(grad, score=score).to("cpu", torch.float64)
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
    criterion: Criterion,
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
                options.score,
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
    criterion: Criterion,
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
                options.score,
            )
            if options.local_epochs > 0:
                with torch.no_grad():
                    _moments_sgd(
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
    criterion: Criterion,
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
        criterion: a gradient criterion (scores units from a consumer-weight gradient).
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
