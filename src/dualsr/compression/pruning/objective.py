"""The pruning loss of one searched layer, and the passes that read it.

:class:`LayerObjective` is the loss the gradient criteria (``drc``, ``dcp``) and ThiNet's local
SGD minimise for one layer: ``mse_weight * MSE(original consumer output, pruned consumer output)
+ gamma * (primal + dual_weight * dual)``. :func:`accumulate_gradient` (one gradient pass),
:func:`batch_gradients` (per-batch gradients) and :func:`local_sgd` (epochs of SGD of the
selected slices) run passes of it over the pruning data. The truncated forward passes that only
need one conv's input or output (:func:`consumer_inputs`, :func:`teacher_features`) stop the
network there (:class:`StopForward`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...losses import DualRegressionLoss
from ...models.drn import DRN, DualModels
from ..layers import SearchedLayer
from ..pruning_data import LayerFeed, Pyramid, Targets, as_feed

#: Local SGD of the selected slices (the paper's values).
LOCAL_LR = 5e-5
LOCAL_MOMENTUM = 0.9


# ----------------------------------------------------------------------------------------------
# Truncated forward passes (the greedy, the feature statistics, the targets)
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


def teacher_features(
    teacher: DRN, layer: SearchedLayer, batches: Sequence[Pyramid]
) -> list[torch.Tensor]:
    """The consumer output of ``layer`` (a layer of ``teacher``) for every batch.

    Each forward pass stops right after that conv, so early layers cost little.
    """
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        captured.append(output.detach())
        raise StopForward

    handle = layer.consumer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for pyramid in batches:
                forward_until_stop(teacher, pyramid[0])
    finally:
        handle.remove()
    return captured


def zero_unkept(conv: nn.Conv2d, keep: Sequence[int]) -> None:
    """Zero the consumer weight slices of the units not in ``keep`` (they are removed)."""
    mask = torch.zeros(conv.in_channels, dtype=torch.bool, device=conv.weight.device)
    mask[list(keep)] = True
    with torch.no_grad():
        conv.weight[:, ~mask] = 0


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
