"""Building the :class:`~dualsr.training.step.Trainer` from a config, and its checkpoints.

:func:`make_trainer` places and wraps the models (channels-last, ``torch.compile``, DDP) and builds
the optimizers, loss, guard, EMA, AMP and teacher; :func:`training_state` snapshots what a resumed
run needs, :func:`save_checkpoint` writes it (:mod:`dualsr.training.state`: the format), and
:func:`restore_trainer` loads it back into a freshly built trainer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..losses import DualRegressionLoss
from ..models.drn import DRN, DualModels
from . import distributed as dist
from .builders import build_optimizer, load_teacher, lr_at
from .config import TrainConfig
from .ema import EMA
from .state import TrainingState, capture_rng, save_training_checkpoint
from .step import LossGuard, PrimalDual, Trainer


def make_trainer(
    cfg: TrainConfig,
    model: DRN,
    duals: DualModels | None,
    device: torch.device,
    info: dist.DistInfo,
) -> Trainer:
    """Place the models, wrap them (compile, DDP) and build optimizers, EMA, AMP and teacher."""
    if cfg.loss.dual and duals is None:
        duals = DualModels(model.scale, model.arch.n_feats)
    fmt = torch.channels_last if cfg.train.channels_last else torch.preserve_format
    model.train().to(device, memory_format=fmt)
    if duals is not None:
        duals.train().to(device, memory_format=fmt)
    trained_duals = duals if cfg.loss.dual else None
    net: nn.Module = PrimalDual(model, trained_duals)
    if cfg.train.compile:
        net = torch.compile(net)
    if info.distributed:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    optimizers = {"model": build_optimizer(list(model.parameters()), cfg.optim)}
    if trained_duals is not None:
        optimizers["dual"] = build_optimizer(list(trained_duals.parameters()), cfg.optim)
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[resolve_amp(cfg, device)]
    if amp is torch.float16 and device.type != "cuda":
        raise ConfigError("train.amp fp16 needs a CUDA device; use bf16 on CPU")
    distill = cfg.loss.distill
    teacher = load_teacher(distill, model.scale, device) if distill else None
    if teacher is not None and cfg.train.channels_last:
        teacher.to(memory_format=torch.channels_last)
    return Trainer(
        net=net,
        model=model,
        duals=duals,
        optimizers=optimizers,
        loss_fn=DualRegressionLoss(
            cfg.loss.dual_weight, use_dual=cfg.loss.dual, dual_hr=cfg.loss.dual_hr
        ),
        guard=LossGuard(cfg.optim.skip_factor, cfg.optim.skip_warmup),
        device=device,
        ema=EMA(model, cfg.train.ema) if cfg.train.ema else None,
        teacher=teacher,
        distill_weight=distill.weight if distill else 0.0,
        grad_clip=cfg.optim.grad_clip,
        amp_dtype=amp,
        scaler=torch.amp.GradScaler("cuda") if amp is torch.float16 else None,
    )


def resolve_amp(cfg: TrainConfig, device: torch.device) -> str:
    """``train.amp`` with ``auto`` resolved: bf16 where ``device`` computes it natively (a CPU
    with AVX512_BF16 or AMX, a GPU with bf16), no autocast elsewhere."""
    if cfg.train.amp != "auto":
        return cfg.train.amp
    from ..deploy.precision import native_bf16

    return "bf16" if native_bf16(device) else "none"


def training_state(t: Trainer, cfg: TrainConfig) -> TrainingState:
    """Snapshot everything a resumed run needs."""
    return TrainingState(
        step=t.step,
        config=cfg.to_dict(),
        optimizers={name: opt.state_dict() for name, opt in t.optimizers.items()},
        ema=t.ema.state_dict() if t.ema else None,
        scaler=t.scaler.state_dict() if t.scaler else None,
        extra={
            **t.extra,
            "guard": t.guard.state_dict(),
            "schedule": {
                "name": cfg.optim.schedule,
                "lr": lr_at(cfg.optim, t.step, cfg.train.steps),
            },
        },
        rng=capture_rng(),
    )


def restore_trainer(t: Trainer, state: TrainingState) -> None:
    """Load optimizer, EMA, scaler and guard states and the step into a freshly built trainer."""
    for name, opt in t.optimizers.items():
        if name not in state.optimizers:
            raise ConfigError(
                f"the checkpoint has no {name!r} optimizer state (was loss.dual changed?); "
                "start a new run with model.init instead of resuming"
            )
        opt.load_state_dict(state.optimizers[name])
    if t.ema is not None:
        if state.ema is not None:
            t.ema.load_state_dict(state.ema)
        else:
            t.ema.module.load_state_dict(t.model.state_dict())
    if t.scaler is not None and state.scaler:
        t.scaler.load_state_dict(state.scaler)
    t.guard.load_state_dict(state.extra.get("guard", {}))
    t.extra = {k: v for k, v in state.extra.items() if k not in ("guard", "schedule")}
    t.step = state.step


def save_checkpoint(t: Trainer, cfg: TrainConfig, run_dir: Path) -> Path:
    """Write the trainer's checkpoint of step ``t.step`` into ``run_dir`` (``run.keep`` kept)."""
    return save_training_checkpoint(
        run_dir, t.model, t.duals, training_state(t, cfg), keep=cfg.run.keep
    )
