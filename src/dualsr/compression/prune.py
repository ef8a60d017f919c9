"""Stage 2 of dual regression compression: channel pruning to a searched configuration.

:func:`prune_model` takes a trained DRN, its dual models, a channel configuration (one width per
searched layer, official order) and a few batches of pruning data, and returns a width-configured
DRN whose state_dict has the official layout of a pruned model (DRN-S30 etc.).

The network being pruned is a copy of the full model. Layers are processed one at a time in the
official order; earlier layers are already pruned (their removed units' consumer weight slices are
zero, which computes exactly what masking or removing them computes), later ones are still full.
Finally :func:`dualsr.compression.layers.slim` removes the zeroed units physically.

For the gradient methods (``drc``, ``dcp``), per layer, as in DCP (Zhuang et al. 2018) and the DRC
paper (PAPER_FACTS.md, "Stage 2"), with ``W`` the weight of the layer's consumer conv:

1. start with no unit selected: ``W = 0``;
2. accumulate, over the pruning data, the gradient w.r.t. ``W`` of
   ``MSE(original consumer output, pruned consumer output) + gamma * (primal + lambda * dual)``;
3. score every unselected unit ``j`` by the Frobenius norm of ``grad[:, j]``; select the best
   (``channels_per_pass`` of them) and warm-start their slices from the pretrained weights;
4. one epoch of SGD on the selected slices (Nesterov, momentum 0.9, lr 5e-5);
5. repeat until the layer holds its configured number of units.

``greedy="passes"`` runs this literally: each step costs a gradient pass and a local-SGD epoch
over the data (with ``channels_per_pass=1``, the paper's loop: two passes per kept channel).

``greedy="moments"`` (the default) gives the same steps without most passes. The layer's input
does not depend on ``W``, so the reconstruction term is a quadratic in ``W`` whose gradient is
exactly ``scale * (W G - C)`` with ``G`` the second moment of the input patches and ``C`` their
cross moment with the original outputs (:class:`LayerMoments`, one truncated pass per layer).
Scoring and every local-SGD step then use that exact gradient plus the SR term's per-batch
gradient from a real pass (made once per layer, or every ``refresh`` steps); a real local-SGD
epoch on the whole loss (``final_epochs``) ends the layer. With ``gamma = 0`` this reproduces the
paper's loop exactly; benchmarks/bench_greedy.py measures both (docs/compression-prune.md).

The original model's consumer outputs are computed once per layer (a forward pass truncated at
that layer) and kept in memory for the layer's passes.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, DualSRError
from ..losses import DualRegressionLoss
from ..models.drn import DRN, DualModels
from .criteria import Criterion, FeatureStats, get_criterion, top_units
from .layers import SearchedLayer, searched_layers, slim

Pyramid = Sequence[torch.Tensor]

#: The greedy's defaults (docs/compression-prune.md has the measurements behind them).
DEFAULT_GREEDY: Literal["moments", "passes"] = "moments"
DEFAULT_CHANNELS_PER_PASS = 1
#: Local SGD of the selected slices (the paper's values).
LOCAL_LR = 5e-5
LOCAL_MOMENTUM = 0.9
#: Positions sampled per layer for the feature criteria (ThiNet, CP).
DEFAULT_FEATURE_SAMPLES = 4096


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class LayerReport:
    """What pruning did to one searched layer."""

    index: int
    name: str
    width: int
    kept: int
    gradient_passes: int = 0
    local_passes: int = 0
    seconds: float = 0.0
    loss: float | None = None  # reconstruction MSE at the end (data methods)

    def line(self) -> str:
        """One human-readable progress line."""
        text = f"layer {self.index:3d} {self.name:<24} {self.width:4d} -> {self.kept:4d}"
        if self.gradient_passes or self.local_passes:
            text += f"  passes {self.gradient_passes + self.local_passes:4d}"
        if self.loss is not None:
            text += f"  mse {self.loss:.4g}"
        return text + f"  {self.seconds:.1f}s"


@dataclass
class PruneStats:
    """Cost of a pruning run.

    A *pass* is one forward/backward of the network being pruned over all pruning batches:
    ``gradient_passes`` accumulate gradients for scoring, ``local_passes`` are local SGD epochs.
    ``teacher_passes`` are forward passes of the original model (truncated at the layer) and
    ``feature_passes`` the truncated passes that collect statistics for ThiNet and CP.
    """

    method: str
    gradient_passes: int = 0
    local_passes: int = 0
    teacher_passes: int = 0
    feature_passes: int = 0
    seconds: float = 0.0
    layers: list[LayerReport] = field(default_factory=list)

    @property
    def passes(self) -> int:
        """Full passes of the network being pruned (gradient + local)."""
        return self.gradient_passes + self.local_passes

    def to_dict(self) -> dict:
        """JSON-friendly summary (per-layer reports included)."""
        d = asdict(self)
        d["passes"] = self.passes
        return d


@dataclass
class PruneResult:
    """A pruned model, the kept units of every searched layer, and the cost.

    ``model`` is the slimmed DRN (for :func:`prune_model`) or, for :func:`prune_masked`, the
    full-width model whose removed units have zero consumer slices.
    """

    model: DRN
    keep: list[list[int]]
    stats: PruneStats

    @property
    def channel_config(self) -> list[int]:
        """The widths of the pruned model, official order."""
        return [len(k) for k in self.keep]


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------
def check_channel_config(model: DRN, config: Sequence[int]) -> list[int]:
    """Validate ``config`` against ``model``'s searched layers; ConfigError names the line."""
    layers = searched_layers(model)
    config = [int(c) for c in config]
    if len(config) != len(layers):
        arch = model.arch
        raise ConfigError(
            f"channel configuration has {len(config)} entries, but this x{arch.scale} DRN with "
            f"{arch.n_blocks} RCABs per stage has {len(layers)} searched layers (one line each)"
        )
    for i, (c, layer) in enumerate(zip(config, layers, strict=True)):
        if not 1 <= c <= layer.width:
            raise ConfigError(
                f"channel configuration line {i + 1} ({layer.name}) asks for {c} channels; the "
                f"model has {layer.width} there, so it must be in 1..{layer.width}"
            )
    return config


def check_batches(model: DRN, batches: Sequence[Pyramid]) -> None:
    """Each batch must be a pyramid ``[LR, 2x, ..., HR]`` matching the model's outputs."""
    if not batches:
        raise DualSRError("no pruning data: this method needs at least one batch of images")
    levels = model.phases + 1
    for b, pyramid in enumerate(batches):
        if len(pyramid) != levels:
            raise DualSRError(
                f"pruning batch {b} has {len(pyramid)} pyramid levels; a x{model.scale} model "
                f"needs {levels} (LR, ..., HR)"
            )
        h, w = pyramid[0].shape[-2:]
        for lvl, t in enumerate(pyramid):
            if t.dim() != 4 or t.shape[1] != 3 or tuple(t.shape[-2:]) != (h * 2**lvl, w * 2**lvl):
                raise DualSRError(
                    f"pruning batch {b}, level {lvl}: expected N x 3 x {h * 2**lvl} x "
                    f"{w * 2**lvl}, got {tuple(t.shape)}"
                )


# ----------------------------------------------------------------------------------------------
# Forward-pass helpers
# ----------------------------------------------------------------------------------------------
class _Stop(Exception):
    """Raised by a hook to end a forward pass once the needed tensor is captured."""


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _forward_until_stop(model: nn.Module, lr: torch.Tensor) -> None:
    """Run ``model`` for the side effects of its hooks; a hook may end the pass early."""
    with contextlib.suppress(_Stop):
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
        raise _Stop

    handle = layer.consumer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for pyramid in batches:
                _forward_until_stop(teacher, pyramid[0])
    finally:
        handle.remove()
    return captured


class LayerObjective:
    """The pruning loss of one searched layer of the network being pruned.

    ``loss = mse_weight * MSE(original consumer output, pruned consumer output)
    + gamma * (primal + dual_weight * dual)`` (the dual term only when ``duals`` is given;
    ``mse_weight`` is 1 except for the SR-only passes of the moments greedy). With ``gamma == 0``
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
            raise _Stop

    def __enter__(self) -> LayerObjective:
        self._handle = self.layer.consumer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __call__(self, pyramid: Pyramid, target: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(total loss, reconstruction MSE) on one batch; ``target`` = original consumer output."""
        self._output = None
        try:
            outputs = self.model(pyramid[0])
        except _Stop:
            outputs = None
        assert self._output is not None, "the layer's consumer conv did not run"
        recon = F.mse_loss(self._output, target)
        total = self.mse_weight * recon
        if self.gamma and outputs is not None:
            dual_outputs = self.duals(outputs) if self.duals is not None else None
            total = total + self.gamma * self.sr_loss(outputs, list(pyramid), dual_outputs).total
        return total, float(recon.detach())


def accumulate_gradient(
    objective: LayerObjective, batches: Sequence[Pyramid], targets: Sequence[torch.Tensor]
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
    return grad, recon / len(batches)


def local_sgd(
    objective: LayerObjective,
    batches: Sequence[Pyramid],
    targets: Sequence[torch.Tensor],
    selected: torch.Tensor,
    epochs: int = 1,
    lr: float = LOCAL_LR,
) -> float:
    """SGD (Nesterov, momentum 0.9) on the selected slices of the consumer weight.

    Unselected slices get no update (their gradient is masked), so they stay zero. Returns the
    mean reconstruction MSE of the last epoch.
    """
    weight = objective.layer.consumer.weight
    mask = selected.to(weight.dtype).view(1, -1, 1, 1)
    opt = torch.optim.SGD([weight], lr=lr, momentum=LOCAL_MOMENTUM, nesterov=True)
    recon = math.nan
    for _ in range(epochs):
        total = 0.0
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
    objective: LayerObjective, batches: Sequence[Pyramid], targets: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """d loss / d consumer weight on each batch separately (one gradient pass)."""
    weight = objective.layer.consumer.weight
    grads = []
    for pyramid, target in zip(batches, targets, strict=True):
        weight.grad = None
        loss, _ = objective(pyramid, target)
        loss.backward()
        assert weight.grad is not None
        grads.append(weight.grad.detach().clone())
    weight.grad = None
    return grads


@dataclass
class LayerMoments:
    """Second moments of one layer's consumer inputs, for exact re-scoring without data passes.

    With ``P_b`` the consumer's input patches of batch ``b`` (one row per output position, one
    column per weight entry, ``D = C*kh*kw``) and ``R_b`` the original outputs minus the bias:
    ``gram[b] = P_b^T P_b`` (D x D), ``cross[b] = R_b^T P_b`` (O x D), ``sq[b] = |R_b|^2`` and
    ``scale[b] = 2 / (output elements)``. For a consumer weight ``W`` (``O x D``), the gradient
    of ``MSE(pruned output, original output)`` on batch ``b`` is exactly
    ``scale[b] (W gram[b] - cross[b])``, and the MSE is
    ``scale[b] / 2 (sq - 2 <W, cross> + <W gram, W>)``, because the layer's input does not depend
    on its own weight.
    """

    gram: list[torch.Tensor]
    cross: list[torch.Tensor]
    sq: list[float]
    scale: list[float]

    def gradient(self, weight: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """The exact MSE gradient for ``weight`` (O x D) on one batch, or summed over all."""
        w = weight.detach().flatten(1).to(self.gram[0].dtype)
        parts = range(len(self.gram)) if batch is None else [batch]
        g = sum(self.scale[b] * (w @ self.gram[b] - self.cross[b]) for b in parts)
        return g.to(weight.dtype).view_as(weight)  # type: ignore[union-attr]

    def mse(self, weight: torch.Tensor) -> float:
        """The mean (over batches) reconstruction MSE for ``weight``."""
        w = weight.detach().flatten(1).to(self.gram[0].dtype)
        total = 0.0
        for gram, cross, sq, scale in zip(self.gram, self.cross, self.sq, self.scale, strict=True):
            total += scale / 2 * (sq - 2 * float((w * cross).sum()) + float((w @ gram * w).sum()))
        return total / len(self.gram)


def collect_moments(
    model: DRN,
    layer: SearchedLayer,
    teacher_outputs: Sequence[torch.Tensor],
    batches: Sequence[Pyramid],
) -> LayerMoments:
    """The :class:`LayerMoments` of ``layer`` in ``model`` (one forward pass, truncated there)."""
    conv = layer.consumer
    captured: list[torch.Tensor] = []

    def pre_hook(module: nn.Module, inputs: tuple) -> None:
        captured.append(inputs[0].detach())
        raise _Stop

    grams, crosses, sqs, scales = [], [], [], []
    handle = conv.register_forward_pre_hook(pre_hook)
    try:
        with torch.no_grad():
            for pyramid, y in zip(batches, teacher_outputs, strict=True):
                captured.clear()
                _forward_until_stop(model, pyramid[0])
                x = captured[0]
                r = y - conv.bias.view(1, -1, 1, 1) if conv.bias is not None else y
                d = conv.weight[0].numel()
                gram = torch.zeros(d, d, dtype=torch.float64, device=x.device)
                cross = torch.zeros(r.shape[1], d, dtype=torch.float64, device=x.device)
                for i in range(x.shape[0]):  # one image at a time bounds the unfold's memory
                    p = F.unfold(
                        x[i : i + 1], conv.kernel_size, conv.dilation, conv.padding, conv.stride
                    )[0]
                    gram += (p @ p.T).double()
                    cross += (r[i].flatten(1) @ p.T).double()
                grams.append(gram)
                crosses.append(cross)
                sqs.append(float(r.double().pow(2).sum()))
                scales.append(2.0 / y.numel())
    finally:
        handle.remove()
    return LayerMoments(grams, crosses, sqs, scales)


def _moments_layer(
    moments: LayerMoments,
    sr_objective: LayerObjective | None,
    full_objective: LayerObjective,
    pretrained: torch.Tensor,
    n_keep: int,
    batches: Sequence[Pyramid],
    targets: Sequence[torch.Tensor],
    criterion: Criterion,
    options: PruneOptions,
    report: LayerReport,
) -> list[int]:
    """The greedy loop with the MSE part of every gradient computed exactly from moments.

    Scoring and the local SGD use ``moments`` for the reconstruction term and, for the SR term
    (``sr_objective``), per-batch gradients from a real pass, refreshed every ``options.refresh``
    selection steps (once per layer by default). ``options.final_epochs`` real epochs of local
    SGD on the whole loss end the layer.
    """
    weight = full_objective.layer.consumer.weight
    selected = torch.zeros(weight.shape[1], dtype=torch.bool, device=weight.device)
    with torch.no_grad():
        weight.zero_()
    weight.requires_grad_(True)
    sr_grads: list[torch.Tensor] | None = None
    since_refresh = 0
    try:
        while int(selected.sum()) < n_keep:
            stale = options.refresh is not None and since_refresh >= options.refresh
            if sr_objective is not None and (sr_grads is None or stale):
                sr_grads = batch_gradients(sr_objective, batches, targets)
                report.gradient_passes += 1
                since_refresh = 0
            grad = moments.gradient(weight)
            if sr_grads is not None:
                grad = grad + sum(sr_grads)
            scores = criterion(grad).to("cpu", torch.float64)
            scores[selected.cpu()] = -math.inf
            step = min(options.channels_per_pass, n_keep - int(selected.sum()))
            new = top_units(scores, step)
            selected[new] = True
            with torch.no_grad():
                weight[:, new] = pretrained[:, new]  # warm start
            mask = selected.to(weight.dtype).view(1, -1, 1, 1)
            if options.local_epochs > 0:
                opt = torch.optim.SGD(
                    [weight], lr=options.local_lr, momentum=LOCAL_MOMENTUM, nesterov=True
                )
                for _ in range(options.local_epochs):
                    for b in range(len(batches)):
                        g = moments.gradient(weight, b)
                        if sr_grads is not None:
                            g = g + sr_grads[b]
                        weight.grad = g * mask
                        opt.step()
                weight.grad = None
            since_refresh += 1
        report.loss = moments.mse(weight)
        if options.final_epochs > 0:
            report.loss = local_sgd(
                full_objective, batches, targets, selected, options.final_epochs, options.local_lr
            )
            report.local_passes += options.final_epochs
    finally:
        weight.requires_grad_(False)
        weight.grad = None
    return [int(j) for j in torch.nonzero(selected).flatten()]


def collect_feature_stats(
    model: DRN,
    layer: SearchedLayer,
    teacher_layer: SearchedLayer,
    teacher_outputs: Sequence[torch.Tensor],
    batches: Sequence[Pyramid],
    samples: int,
    generator: torch.Generator,
) -> FeatureStats:
    """Sample consumer input patches (in ``model``) and original outputs (``teacher_outputs``).

    About ``samples`` positions in all, spread evenly over the batches; returned on the CPU.
    """
    conv = layer.consumer
    kh, kw = conv.kernel_size
    ph, pw = conv.padding  # type: ignore[misc]
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or (ph, pw) != (kh // 2, kw // 2):
        raise ValueError(f"{layer.name}: feature statistics need a stride-1 'same' consumer conv")
    bias = teacher_layer.consumer.bias
    captured: list[torch.Tensor] = []

    def pre_hook(module: nn.Module, inputs: tuple) -> None:
        captured.append(inputs[0].detach())
        raise _Stop

    per_batch = max(1, math.ceil(samples / len(batches)))
    patches, targets = [], []
    handle = conv.register_forward_pre_hook(pre_hook)
    try:
        with torch.no_grad():
            for pyramid, y in zip(batches, teacher_outputs, strict=True):
                captured.clear()
                _forward_until_stop(model, pyramid[0])
                x = captured[0]
                n, _, h, w = x.shape
                ni = torch.randint(n, (per_batch,), generator=generator).to(x.device)
                yi = torch.randint(h, (per_batch,), generator=generator).to(x.device)
                xi = torch.randint(w, (per_batch,), generator=generator).to(x.device)
                xp = F.pad(x, (pw, pw, ph, ph))
                taps = [xp[ni, :, yi + dy, xi + dx] for dy in range(kh) for dx in range(kw)]
                patches.append(torch.stack(taps, -1))
                t = y[ni, :, yi, xi]
                targets.append(t - bias.detach() if bias is not None else t)
    finally:
        handle.remove()
    targets_t = torch.cat(targets).cpu()
    out_channel = torch.randint(targets_t.shape[1], (targets_t.shape[0],), generator=generator)
    return FeatureStats(
        patches=torch.cat(patches).cpu(),
        targets=targets_t,
        out_channel=out_channel,
        weight=teacher_layer.consumer.weight.detach().cpu().clone(),
    )


# ----------------------------------------------------------------------------------------------
# The pruning loop
# ----------------------------------------------------------------------------------------------
def _zero_unkept(conv: nn.Conv2d, keep: Sequence[int]) -> None:
    mask = torch.zeros(conv.in_channels, dtype=torch.bool, device=conv.weight.device)
    mask[list(keep)] = True
    with torch.no_grad():
        conv.weight[:, ~mask] = 0


def _greedy_layer(
    objective: LayerObjective,
    pretrained: torch.Tensor,
    n_keep: int,
    batches: Sequence[Pyramid],
    targets: Sequence[torch.Tensor],
    criterion: Criterion,
    options: PruneOptions,
    report: LayerReport,
) -> list[int]:
    """The paper's greedy loop: a real gradient pass and a real local-SGD epoch per step."""
    weight = objective.layer.consumer.weight
    selected = torch.zeros(weight.shape[1], dtype=torch.bool, device=weight.device)
    with torch.no_grad():
        weight.zero_()  # no unit selected yet
    weight.requires_grad_(True)
    try:
        while int(selected.sum()) < n_keep:
            grad, report.loss = accumulate_gradient(objective, batches, targets)
            report.gradient_passes += 1
            scores = criterion(grad).to("cpu", torch.float64)
            scores[selected.cpu()] = -math.inf
            step = min(options.channels_per_pass, n_keep - int(selected.sum()))
            new = top_units(scores, step)
            selected[new] = True
            with torch.no_grad():
                weight[:, new] = pretrained[:, new]  # warm start
            if options.local_epochs > 0:
                report.loss = local_sgd(
                    objective, batches, targets, selected, options.local_epochs, options.local_lr
                )
                report.local_passes += options.local_epochs
    finally:
        weight.requires_grad_(False)
        weight.grad = None
    return [int(j) for j in torch.nonzero(selected).flatten()]


@dataclass(frozen=True)
class PruneOptions:
    """Everything :func:`prune_model` can be told besides the model, configuration and data.

    See :func:`prune_model` for the meaning of each field.
    """

    method: str = "drc"
    gamma: float = 1.0
    dual_weight: float = 0.1
    greedy: Literal["moments", "passes"] = DEFAULT_GREEDY
    channels_per_pass: int = DEFAULT_CHANNELS_PER_PASS
    local_epochs: int = 1
    local_lr: float = LOCAL_LR
    refresh: int | None = None
    final_epochs: int = 1
    feature_samples: int = DEFAULT_FEATURE_SAMPLES
    seed: int = 0

    def check(self) -> None:
        """ConfigError for an out-of-range value."""
        if self.greedy not in ("moments", "passes"):
            raise ConfigError(f"greedy must be 'moments' or 'passes', got {self.greedy!r}")
        if self.channels_per_pass < 1:
            raise ConfigError(f"channels per pass must be >= 1, got {self.channels_per_pass}")
        if self.refresh is not None and self.refresh < 1:
            raise ConfigError(f"refresh must be >= 1 selection steps, got {self.refresh}")
        if min(self.local_epochs, self.final_epochs) < 0:
            raise ConfigError("local and final epochs must be >= 0")
        if self.gamma < 0 or self.dual_weight < 0 or self.local_lr < 0:
            raise ConfigError("gamma, the dual weight and the local lr must be >= 0")
        if self.feature_samples < 1:
            raise ConfigError(f"feature samples must be >= 1, got {self.feature_samples}")


def prune_masked(
    model: DRN,
    duals: DualModels | None,
    channel_config: Sequence[int],
    batches: Sequence[Pyramid] | None,
    options: PruneOptions | None = None,
    progress: Callable[[LayerReport], None] | None = None,
) -> PruneResult:
    """Like :func:`prune_model`, but return the full-width model with removed units zeroed.

    ``result.model`` computes exactly what the slimmed model computes; :func:`prune_model`
    slims it.
    """
    opts = options or PruneOptions()
    opts.check()
    criterion = get_criterion(opts.method)
    config = check_channel_config(model, channel_config)
    if criterion.dual and duals is None and opts.gamma > 0:
        raise DualSRError(
            f"method {criterion.name!r} needs the dual models for its dual regression term, and "
            "none were given: use a checkpoint that includes them, or method 'dcp'"
        )
    device = _device(model)
    data: list[list[torch.Tensor]] = []
    if criterion.needs != "weights":
        check_batches(model, batches or [])
        data = [[t.to(device, torch.float32) for t in pyramid] for pyramid in batches or []]

    start = time.perf_counter()
    stats = PruneStats(criterion.name)
    work = copy.deepcopy(model).eval().requires_grad_(False)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    dual_copy = None
    if criterion.dual and duals is not None:
        dual_copy = copy.deepcopy(duals).to(device).eval().requires_grad_(False)
    work_layers, teacher_layers = searched_layers(work), searched_layers(teacher)
    generator = torch.Generator().manual_seed(opts.seed)
    keep: list[list[int]] = []

    with torch.enable_grad():
        for layer, tlayer, n_keep in zip(work_layers, teacher_layers, config, strict=True):
            t0 = time.perf_counter()
            report = LayerReport(layer.index, layer.name, layer.width, n_keep)
            if n_keep == layer.width:
                kept = list(range(layer.width))
            elif criterion.needs == "weights":
                kept = top_units(criterion(layer), n_keep)
            else:
                targets = teacher_features(teacher, tlayer, data)
                stats.teacher_passes += 1
                if criterion.needs == "gradients":
                    kept = _prune_layer_greedy(
                        work,
                        layer,
                        tlayer,
                        dual_copy,
                        n_keep,
                        data,
                        targets,
                        criterion,
                        opts,
                        report,
                        stats,
                    )
                else:
                    feats = collect_feature_stats(
                        work, layer, tlayer, targets, data, opts.feature_samples, generator
                    )
                    stats.feature_passes += 1
                    selection = criterion(feats, n_keep)
                    kept = selection.keep
                    if selection.weight is not None:
                        with torch.no_grad():
                            layer.consumer.weight[:, kept] = selection.weight.to(device)
                    report.loss = _feature_mse(feats, layer.consumer.weight.detach().cpu(), kept)
                del targets
            _zero_unkept(layer.consumer, kept)
            keep.append(kept)
            stats.gradient_passes += report.gradient_passes
            stats.local_passes += report.local_passes
            report.seconds = time.perf_counter() - t0
            stats.layers.append(report)
            if progress is not None:
                progress(report)
    stats.seconds = time.perf_counter() - start
    return PruneResult(work, keep, stats)


def _prune_layer_greedy(
    work: DRN,
    layer: SearchedLayer,
    tlayer: SearchedLayer,
    duals: DualModels | None,
    n_keep: int,
    data: Sequence[Pyramid],
    targets: Sequence[torch.Tensor],
    criterion: Criterion,
    opts: PruneOptions,
    report: LayerReport,
    stats: PruneStats,
) -> list[int]:
    """Run the configured greedy loop (``opts.greedy``) on one layer of ``work``."""
    pretrained = tlayer.consumer.weight.detach()
    duals = duals if criterion.dual else None
    args = (pretrained, n_keep, data, targets, criterion, opts, report)
    with LayerObjective(work, layer, duals, opts.gamma, opts.dual_weight) as objective:
        if opts.greedy == "passes":
            return _greedy_layer(objective, *args)
        moments = collect_moments(work, layer, targets, data)
        stats.feature_passes += 1
        if opts.gamma == 0:  # no SR term: every gradient comes from the moments
            return _moments_layer(moments, None, objective, *args)
        sr_only = LayerObjective(work, layer, duals, opts.gamma, opts.dual_weight, mse_weight=0)
        with sr_only:
            return _moments_layer(moments, sr_only, objective, *args)


def _feature_mse(stats: FeatureStats, weight: torch.Tensor, keep: list[int]) -> float:
    """Reconstruction MSE on the sampled positions with the kept slices of ``weight``."""
    pred = stats.patches[:, keep].flatten(1) @ weight[:, keep].flatten(1).T
    return float(F.mse_loss(pred, stats.targets))


def prune_model(
    model: DRN,
    duals: DualModels | None,
    channel_config: Sequence[int],
    batches: Sequence[Pyramid] | None,
    *,
    method: str = "drc",
    gamma: float = 1.0,
    dual_weight: float = 0.1,
    greedy: Literal["moments", "passes"] = DEFAULT_GREEDY,
    channels_per_pass: int = DEFAULT_CHANNELS_PER_PASS,
    local_epochs: int = 1,
    local_lr: float = LOCAL_LR,
    refresh: int | None = None,
    final_epochs: int = 1,
    feature_samples: int = DEFAULT_FEATURE_SAMPLES,
    seed: int = 0,
    progress: Callable[[LayerReport], None] | None = None,
) -> PruneResult:
    """Prune ``model`` to ``channel_config`` and return the slimmed, width-configured DRN.

    Args:
        model: the trained DRN (left unchanged).
        duals: its dual models (needed by ``drc`` when ``gamma > 0``; ignored by other methods).
        channel_config: the width of every searched layer, official order (e.g. a searched
            configuration file read with :func:`dualsr.read_channel_config`).
        batches: pruning data, re-read once per pass: a sequence of pyramids, each a list of
            ``log2(scale) + 1`` float tensors ``N x 3 x h x w`` in [0, 255] (level 0 = LR input,
            last = HR). Not needed by ``l1`` and ``uniform``.
        method: a name in :data:`dualsr.compression.criteria.CRITERIA`.
        gamma: weight of the SR loss against the layer reconstruction MSE (gradient methods).
        dual_weight: lambda, the weight of the dual term inside the SR loss (``drc``).
        greedy: how ``drc``/``dcp`` compute gradients. ``"passes"``: the paper's loop, a real
            gradient pass and a real local-SGD epoch per selection step. ``"moments"``: the
            reconstruction term's gradient exactly from per-layer input moments (one pass per
            layer), the SR term's from a real pass every ``refresh`` steps.
        channels_per_pass: units selected per step (``greedy="passes"`` and 1: the paper's loop).
        local_epochs: epochs of local SGD after each selection step (0 disables it).
        local_lr: its learning rate (Nesterov, momentum 0.9).
        refresh: ``"moments"`` only: selection steps between real SR-gradient passes (None: one
            pass at the start of each layer).
        final_epochs: ``"moments"`` only: real local-SGD epochs on the whole loss at the end of
            each layer.
        feature_samples: positions sampled per layer by ``thinet`` and ``cp``.
        seed: seed of the position sampling.
        progress: called with a :class:`LayerReport` after each layer.

    Returns:
        PruneResult with the slimmed model (same device and mode as ``model``), the kept units of
        every layer and the cost (passes, seconds).
    """
    options = PruneOptions(
        method=method,
        gamma=gamma,
        dual_weight=dual_weight,
        greedy=greedy,
        channels_per_pass=channels_per_pass,
        local_epochs=local_epochs,
        local_lr=local_lr,
        refresh=refresh,
        final_epochs=final_epochs,
        feature_samples=feature_samples,
        seed=seed,
    )
    result = prune_masked(model, duals, channel_config, batches, options, progress)
    pruned = slim(result.model, result.keep).requires_grad_(True).train(model.training)
    return PruneResult(pruned, result.keep, result.stats)
