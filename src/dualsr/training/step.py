"""One dual regression training step: :func:`train_step` and what it reads (:class:`Trainer`).

The objective is the paper's: primal L1 at every pyramid level + lambda x dual L1
(:class:`dualsr.DualRegressionLoss`), optionally plus a distillation term from a frozen teacher.
The primal model and the duals live in one module (:class:`PrimalDual`: one DDP wrap) and have
their own Adam optimizers. A step whose loss is non-finite, or far above the running loss (the
paper's guard against exploding batches), or whose gradients are non-finite, changes nothing.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import DualRegressionLoss, hr_loop
from ..models.drn import DRN, DualModels
from . import distributed as dist
from .ema import EMA


class PrimalDual(nn.Module):
    """The primal DRN and its duals as one module: one forward, one DDP wrap.

    ``forward(lr, hr=None)`` returns ``(outputs, dual_outputs, features, hr_cycle)``: the output
    pyramid, the duals' outputs (None without duals), the features entering the last tail conv,
    and, when ``hr`` is given (``loss.dual_hr``), ``P(D(hr))`` at full scale
    (:func:`dualsr.losses.hr_loop`: a second primal pass; None otherwise). The HR loop runs in
    this same forward so that DDP sees one forward per backward.
    """

    def __init__(self, model: DRN, duals: DualModels | None) -> None:
        super().__init__()
        self.model = model
        self.duals = duals

    def forward(
        self, lr: torch.Tensor, hr: torch.Tensor | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, torch.Tensor, torch.Tensor | None]:
        outputs, features = self.model.forward_with_features(lr)
        dual_outputs = self.duals(outputs) if self.duals is not None else None
        hr_cycle = None
        if hr is not None:
            if self.duals is None:
                raise ValueError("the HR loop (loss.dual_hr) needs the dual models")
            hr_cycle = hr_loop(self.model, self.duals, hr)
        return outputs, dual_outputs, features, hr_cycle


class LossGuard:
    """Skip a batch whose loss is non-finite or more than ``factor`` x the running loss.

    The running loss is an exponential average (``beta``) of accepted losses; the ratio test is
    armed after ``warmup`` accepted steps. ``factor`` None disables the ratio test.
    """

    def __init__(self, factor: float | None, warmup: int = 20, beta: float = 0.98) -> None:
        self.factor = factor
        self.warmup = warmup
        self.beta = beta
        self.running: float | None = None
        self.accepted = 0

    def check(self, loss: float) -> str | None:
        """Why the batch must be skipped, or None to use it."""
        if not math.isfinite(loss):
            return f"non-finite loss ({loss})"
        armed = self.factor is not None and self.running is not None
        if armed and self.accepted >= self.warmup and loss > self.factor * self.running:
            return f"loss {loss:.4g} > {self.factor:g} x running loss {self.running:.4g}"
        return None

    def accept(self, loss: float) -> None:
        """Fold an accepted batch's loss into the running loss."""
        self.running = (
            loss if self.running is None else self.beta * self.running + (1 - self.beta) * loss
        )
        self.accepted += 1

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint stores."""
        return {"running": self.running, "accepted": self.accepted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.running = state.get("running")
        self.accepted = int(state.get("accepted", 0))


@dataclass
class Trainer:
    """What a step reads and updates (the loop owns it; the step function is stateless)."""

    net: nn.Module  # PrimalDual, possibly compiled and/or DDP-wrapped
    model: DRN
    duals: DualModels | None  # kept and saved even when the dual loss is off
    optimizers: dict[str, torch.optim.Optimizer]
    loss_fn: DualRegressionLoss
    guard: LossGuard
    device: torch.device
    ema: EMA | None = None
    teacher: DRN | None = None
    distill_weight: float = 0.0
    grad_clip: float | None = None
    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # best PSNR and the like
    saved_step: int | None = None  # the step of the newest checkpoint (not saved itself)

    def parameters(self) -> list[torch.nn.Parameter]:
        """Every trained parameter (primal and duals)."""
        return [
            p for opt in self.optimizers.values() for g in opt.param_groups for p in g["params"]
        ]


@dataclass
class StepResult:
    """What one step did: its metrics, and why it was skipped (None when applied)."""

    metrics: dict[str, float]
    skipped: str | None = None


def distill_loss(features: torch.Tensor, teacher: DRN, lr: torch.Tensor) -> torch.Tensor:
    """MSE between the channel-averaged features entering the last tail conv of the student
    (``features``) and of the frozen ``teacher``."""
    with torch.no_grad():
        _, teacher_features = teacher.forward_with_features(lr)
    return F.mse_loss(features.float().mean(dim=1), teacher_features.float().mean(dim=1))


def train_step(t: Trainer, batch: list[torch.Tensor]) -> StepResult:
    """One optimisation step on a batch (the float pyramid, level 0 = LR input, last = HR)."""
    for opt in t.optimizers.values():
        opt.zero_grad(set_to_none=True)
    hr = batch[-1] if t.loss_fn.dual_hr else None
    with _autocast(t.device, t.amp_dtype):
        outputs, dual_outputs, features, hr_cycle = t.net(batch[0], hr)
        distill = distill_loss(features, t.teacher, batch[0]) if t.teacher else None
    outputs = [o.float() for o in outputs]
    dual_outputs = [d.float() for d in dual_outputs] if dual_outputs is not None else None
    hr_cycle = hr_cycle.float() if hr_cycle is not None else None
    terms = t.loss_fn(outputs, batch, dual_outputs, hr_cycle)
    loss = terms.total if distill is None else terms.total + t.distill_weight * distill
    metrics = {
        "primal": float(terms.primal.detach()),
        "dual": float(terms.dual.detach()),
        "dual_hr": float(terms.dual_hr.detach()) if terms.dual_hr is not None else 0.0,
        "distill": float(distill.detach()) if distill is not None else 0.0,
    }
    # every process takes the same decision (a skipped backward would hang DDP's all-reduce)
    metrics["loss"] = float(dist.all_reduce_mean(loss.detach().reshape(1)))
    reason = t.guard.check(metrics["loss"])
    if reason:
        return StepResult(metrics, reason)
    grad_norm = _backward_and_step(t, loss)
    metrics["grad_norm"] = grad_norm
    if not math.isfinite(grad_norm):
        return StepResult(metrics, f"non-finite gradients (norm {grad_norm})")
    t.guard.accept(metrics["loss"])
    if t.ema is not None:
        t.ema.update(t.model)
    return StepResult(metrics)


def _backward_and_step(t: Trainer, loss: torch.Tensor) -> float:
    """Backward, clip, and step the optimizers unless the gradients are non-finite."""
    params = t.parameters()
    max_norm = t.grad_clip if t.grad_clip else float("inf")
    if t.scaler is not None:  # fp16: the scaler skips steps with inf/NaN gradients itself
        t.scaler.scale(loss).backward()
        for opt in t.optimizers.values():
            t.scaler.unscale_(opt)
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        for opt in t.optimizers.values():
            t.scaler.step(opt)
        t.scaler.update()
        return norm
    loss.backward()
    norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    if math.isfinite(norm):
        for opt in t.optimizers.values():
            opt.step()
    return norm


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
