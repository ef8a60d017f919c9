"""Dual regression training: one ``train_step`` and one loop.

The objective is the paper's: primal L1 at every pyramid level + lambda x dual L1
(:class:`dualsr.DualRegressionLoss`), optionally plus a distillation term from a frozen teacher.
The primal model and the duals live in one module (:class:`PrimalDual`: one DDP wrap) and have
their own Adam optimizers. A step whose loss is non-finite, or far above the running loss (the
paper's guard against exploding batches), or whose gradients are non-finite, changes nothing.

``train(config)`` runs on one CPU, one GPU, or every process that ``torchrun`` starts; it stops
cleanly on SIGINT/SIGTERM (saving a checkpoint first) and ``train(config, resume=True)`` continues
from the run directory's newest usable checkpoint with exactly the batches an uninterrupted run
would have seen.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import save_model, unwrap_model
from ..data.dataset import batch_to_device
from ..errors import ConfigError
from ..fileio import atomic_write_bytes
from ..losses import DualRegressionLoss, hr_loop
from ..models.drn import DRN, DualModels
from ..runcontrol import StopSignals, save_after_error
from . import distributed as dist
from .builders import build_loader, build_model, build_optimizer, load_teacher, lr_at
from .config import TrainConfig, resolve_paths, save_config
from .ema import EMA
from .state import (
    BEST,
    LATEST,
    TrainingState,
    capture_rng,
    load_for_resume,
    restore_rng,
    run_has_checkpoints,
    save_training_checkpoint,
)

log = logging.getLogger("dualsr.train")


# ----------------------------------------------------------------------------------------------
# The pieces of a step
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Results, callbacks, signals, logs
# ----------------------------------------------------------------------------------------------
@dataclass
class StepInfo:
    """Passed to callbacks after every step."""

    step: int  # steps completed
    metrics: dict[str, float]
    skipped: str | None
    trainer: Trainer


Callback = Callable[[StepInfo], bool | None]  # return True to stop (a checkpoint is saved)


@dataclass
class TrainResult:
    """The outcome of :func:`train`."""

    run_dir: Path
    step: int
    finished: bool  # reached train.steps
    stop_reason: str | None  # "SIGINT", "SIGTERM", "callback" when stopped early
    latest: Path | None
    best: Path | None
    best_psnr: float | None
    metrics: dict[str, float]  # the last logged training metrics
    model: DRN
    duals: DualModels | None
    ema_model: DRN | None = None
    rank: int = 0  # this process's rank (0 when not distributed)

    def __fspath__(self) -> str:
        return str(self.run_dir)


class MetricsLog:
    """Appends JSON rows to ``metrics.jsonl`` (and TensorBoard scalars when installed)."""

    def __init__(self, run_dir: Path, tensorboard: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.writer = _tensorboard_writer(run_dir) if tensorboard else None

    def truncate_after(self, step: int) -> None:
        """Drop rows after ``step`` (the ones a resumed run will write again), atomically."""
        if not self.path.is_file():
            return
        keep = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        atomic_write_bytes(self.path, "".join(f"{line}\n" for line in keep).encode())

    def write(self, row: dict[str, Any]) -> None:
        """Append one row and flush it to disk."""
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in _flatten(row).items():
                if key != "step":
                    self.writer.add_scalar(key, value, row["step"])
            self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()


def _tensorboard_writer(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


class Window:
    """Sums of step metrics between two log lines."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = self.skipped = self.patches = 0
        self.start = time.perf_counter()

    def add(self, result: StepResult, patches: int) -> None:
        """Count one step (skipped steps add to ``skipped`` only)."""
        self.steps += 1
        self.patches += patches
        if result.skipped:
            self.skipped += 1
            return
        for key, value in result.metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    def summary(self) -> dict[str, float]:
        """Means over the applied steps, skipped count and patches per second."""
        applied = max(1, self.steps - self.skipped)
        out = {k: v / applied for k, v in self.sums.items()}
        seconds = max(1e-9, time.perf_counter() - self.start)
        out.update(skipped=float(self.skipped), patches_per_s=self.patches / seconds)
        return out


# ----------------------------------------------------------------------------------------------
# Setting up
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Validation and saving
# ----------------------------------------------------------------------------------------------
def validate(
    model: DRN, folders: Sequence[str], device: torch.device, tile: int | None = None
) -> dict[str, dict[str, float]]:
    """PSNR/SSIM (Y, border = scale) of ``model`` on each folder, through the evaluation code."""
    from ..evaluation import evaluate_folder
    from ..inference import TorchUpscaler

    was_training = model.training
    results = {}
    try:
        # fp32: the scores are results, comparable across runs and machines
        upscaler = TorchUpscaler(model, device=device, tile=tile, precision="fp32")
        for folder in folders:
            res = evaluate_folder(upscaler, folder)
            results[res.dataset] = {"psnr": res.psnr, "ssim": res.ssim}
    finally:
        model.train(was_training)
    return results


def _save(t: Trainer, cfg: TrainConfig, run_dir: Path) -> Path:
    return save_training_checkpoint(
        run_dir, t.model, t.duals, training_state(t, cfg), keep=cfg.run.keep
    )


def _validate_and_keep_best(t: Trainer, cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    eval_model = t.ema.module if t.ema else t.model
    scores = validate(eval_model, cfg.val.folders, t.device, cfg.val.tile)
    mean_psnr = sum(s["psnr"] for s in scores.values()) / len(scores)
    row: dict[str, Any] = {"step": t.step, "val": scores, "val_psnr": mean_psnr}
    best = t.extra.get("best_psnr")
    if best is None or mean_psnr > best:
        t.extra.update(best_psnr=mean_psnr, best_step=t.step)
        meta = {"stage": "train", "step": t.step, "val": scores, "ema": t.ema is not None}
        save_model(run_dir / BEST, eval_model, t.duals, metadata=meta)
        row["best"] = True
    text = ", ".join(f"{k} {v['psnr']:.2f} dB / {v['ssim']:.4f}" for k, v in scores.items())
    log.info("step %d: validation %s%s", t.step, text, " (best)" if row.get("best") else "")
    return row


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------
def train(
    config: TrainConfig, *, resume: bool = False, callbacks: Sequence[Callback] = ()
) -> TrainResult:
    """Train with ``config``; ``resume=True`` continues the run in ``config.run.dir``.

    Under ``torchrun`` every process calls this; rank 0 logs and writes files. Callbacks run after
    every step and may return True to stop early (a checkpoint is saved, as on SIGINT/SIGTERM).
    """
    cfg = resolve_paths(config)
    info = dist.env_info()
    device = dist.resolve_device(cfg.train.device, info)
    joined = info.distributed and not torch.distributed.is_initialized()
    dist.setup(device, info)
    try:
        return _train(cfg, info, device, resume, callbacks)
    finally:
        if joined:
            dist.teardown()


def _train(
    cfg: TrainConfig,
    info: dist.DistInfo,
    device: torch.device,
    resume: bool,
    callbacks: Sequence[Callback],
) -> TrainResult:
    run_dir = Path(cfg.run.dir)
    if info.is_main:
        _check_writable_run_dir(run_dir)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if device.type == "cpu":
        from ..deploy.allocator import tune_allocator

        tune_allocator()  # freed activations are reused, not re-faulted (docs/training.md)
    loaded = load_for_resume(run_dir) if resume else None
    if not resume and run_has_checkpoints(run_dir):
        raise ConfigError(
            f"{run_dir} already holds a run; continue it with `dualsr train --resume {run_dir}` "
            "or set run.dir to a new folder"
        )
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every process
    if loaded is not None:
        model, duals = loaded.checkpoint.model, loaded.checkpoint.duals
    else:
        model, duals = build_model(cfg.model)
    t = make_trainer(cfg, model, duals, device, info)
    if loaded is not None:
        restore_trainer(t, loaded.state)
        t.saved_step = t.step
        if info.is_main:
            log.info("resuming %s from %s (step %d)", run_dir, loaded.path, t.step)
    _check_val_folders(cfg.val.folders, model.scale)
    if t.step >= cfg.train.steps:
        log.info("%s already reached train.steps=%d; nothing to do", run_dir, cfg.train.steps)
        return _result(t, cfg, run_dir, None, {}, info)
    loader = build_loader(
        cfg.data,
        model.scale,
        seed=cfg.train.seed,
        start_step=t.step,
        rank=info.rank,
        world_size=info.world_size,
        pin_memory=device.type == "cuda",
        barrier=dist.barrier,
    )
    metrics_log = _prepare_run_dir(cfg, run_dir, info, t.step if loaded else None)
    torch.manual_seed(cfg.train.seed + info.rank)  # per-process RNG (not used by the batches)
    if loaded is not None and info.is_main:
        restore_rng(loaded.state.rng)
    batches = iter(loader)
    try:
        with StopSignals() as signals, _redirect_logging(info.is_main and cfg.run.progress):
            return _loop(cfg, t, batches, run_dir, info, metrics_log, signals, callbacks)
    finally:
        _shutdown_workers(batches)
        if metrics_log is not None:
            metrics_log.close()


def _check_writable_run_dir(run_dir: Path) -> None:
    """Fail before any work when checkpoints could not be written."""
    import os

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"run.dir {run_dir} cannot be created ({exc.strerror or exc}); choose another "
            "folder (--run-dir, or -o for finetune)"
        ) from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise ConfigError(
            f"run.dir {run_dir} is not writable; choose another folder (--run-dir, or -o for "
            "finetune)"
        )


def _shutdown_workers(batches: Iterator) -> None:
    """Stop the DataLoader's worker processes now. Left to the interpreter's exit after an
    error, the exit handler waits for workers that ignore SIGTERM: the process never ended."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown()


def _check_val_folders(folders: Sequence[str], scale: int) -> None:
    """Fail at start-up, not hours later: a validation folder without images, or an image that
    cannot be read or is too small for the protocol (``3 * scale`` pixels a side: the crop to a
    multiple of the scale, then ``scale`` border pixels shaved on each side)."""
    from ..data.dataset import hr_folder
    from ..data.image_io import list_images, load_rgb_uint8
    from ..errors import DualSRError

    for i, folder in enumerate(folders):
        try:
            found = list_images(hr_folder(Path(folder)))
        except ConfigError:
            raise ConfigError(f"val.folders[{i}]: folder not found: {folder}") from None
        if not found:
            raise ConfigError(f"val.folders[{i}]: no images (png, jpg, bmp, webp, tif) in {folder}")
        for path in found:
            try:
                h, w = load_rgb_uint8(path).shape[:2]
            except DualSRError as exc:
                raise ConfigError(
                    f"val.folders[{i}]: {exc}; fix or remove the file, or drop the folder"
                ) from None
            if min(h, w) < 3 * scale:
                raise ConfigError(
                    f"val.folders[{i}]: {path} is {w}x{h}, too small to validate at x{scale} "
                    f"(needs at least {3 * scale} pixels a side); remove it from the folder"
                )


def _redirect_logging(enabled: bool) -> contextlib.AbstractContextManager:
    """Route log lines through tqdm so they do not break the progress bar."""
    if not enabled:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _prepare_run_dir(
    cfg: TrainConfig, run_dir: Path, info: dist.DistInfo, resumed_step: int | None
) -> MetricsLog | None:
    """Rank 0: create the run directory, save the resolved config, open the metrics log."""
    if not info.is_main:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    metrics_log = MetricsLog(run_dir, cfg.run.tensorboard)
    if resumed_step is not None:
        metrics_log.truncate_after(resumed_step)
    elif metrics_log.path.is_file():  # left by a run that failed before its first checkpoint
        old = metrics_log.path.with_name("metrics.previous.jsonl")
        metrics_log.path.replace(old)
        log.info("a new run in %s: the old metrics.jsonl was moved to %s", run_dir, old.name)
    return metrics_log


def _loop(
    cfg: TrainConfig,
    t: Trainer,
    batches: Iterator[list[torch.Tensor]],
    run_dir: Path,
    info: dist.DistInfo,
    metrics_log: MetricsLog | None,
    signals: StopSignals,
    callbacks: Sequence[Callback],
) -> TrainResult:
    from tqdm import tqdm

    total = cfg.train.steps
    bar = tqdm(
        total=total,
        initial=t.step,
        disable=not (info.is_main and cfg.run.progress),
        dynamic_ncols=True,
        desc="train",
    )
    try:
        _saved_at, stop_reason, last_metrics = _steps(
            cfg, t, batches, run_dir, info, metrics_log, signals, callbacks, bar
        )
    except BaseException as exc:
        _save_after_error(t, cfg, run_dir, info, exc)
        raise
    bar.close()
    dist.barrier()
    return _result(t, cfg, run_dir, stop_reason, last_metrics, info)


def _save_after_error(
    t: Trainer, cfg: TrainConfig, run_dir: Path, info: dist.DistInfo, exc: BaseException
) -> None:
    """After an error mid-run, keep the steps done since the last save (a checkpoint of the
    last completed step: an error inside a step leaves the weights of the step before)."""
    if not info.is_main or t.step == 0 or t.saved_step == t.step:
        return
    save_after_error(
        exc,
        t.step,
        lambda: f"saved {_save(t, cfg, run_dir)}",
        f"dualsr train --resume {run_dir}",
        log,
    )


def _steps(
    cfg: TrainConfig,
    t: Trainer,
    batches: Iterator[list[torch.Tensor]],
    run_dir: Path,
    info: dist.DistInfo,
    metrics_log: MetricsLog | None,
    signals: StopSignals,
    callbacks: Sequence[Callback],
    bar: Any,
) -> tuple[int | None, str | None, dict]:
    """The steps from ``t.step`` to the end (or a stop request): (saved at, stop reason,
    the last logged metrics)."""
    total = cfg.train.steps
    window, last_metrics, saved_at, stop_reason = Window(), {}, None, None
    while t.step < total:
        batch = batch_to_device(next(batches), t.device, cfg.train.channels_last)
        lr = lr_at(cfg.optim, t.step, total)
        for opt in t.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
        result = train_step(t, batch)
        t.step += 1
        window.add(result, batch[0].shape[0] * info.world_size)
        if result.skipped and info.is_main:
            log.warning("step %d: batch skipped: %s", t.step, result.skipped)
        bar.update(1)
        if t.step % cfg.run.log_every == 0 or t.step == total:
            summary = dist.reduce_metrics(window.summary(), t.device)
            last_metrics = {**summary, "lr": lr}
            bar.set_postfix(loss=f"{summary.get('loss', float('nan')):.4f}", lr=f"{lr:.2e}")
            if metrics_log is not None:
                metrics_log.write({"step": t.step, "time": time.time(), **last_metrics})
            window = Window()
        if cfg.val.folders and info.is_main and _due(t.step, cfg.val.every, total):
            row = _validate_and_keep_best(t, cfg, run_dir)
            metrics_log.write(row)  # type: ignore[union-attr]
        if _due(t.step, cfg.run.save_every, total):
            saved_at = _save_on_main(t, cfg, run_dir, info)
        info_ = StepInfo(t.step, result.metrics, result.skipped, t)
        wants_stop = any(bool(cb(info_)) for cb in callbacks)
        stop_reason = signals.received or ("callback" if wants_stop else None)
        if dist.any_rank(stop_reason is not None, t.device):
            stop_reason = stop_reason or "another process"
            if saved_at != t.step:
                saved_at = _save_on_main(t, cfg, run_dir, info)
            break
    return saved_at, stop_reason, last_metrics


def _due(step: int, every: int, total: int) -> bool:
    return step == total or (every > 0 and step % every == 0)


def _save_on_main(t: Trainer, cfg: TrainConfig, run_dir: Path, info: dist.DistInfo) -> int:
    if info.is_main:
        path = _save(t, cfg, run_dir)
        log.debug("saved %s", path)
    t.saved_step = t.step
    return t.step


def _result(
    t: Trainer,
    cfg: TrainConfig,
    run_dir: Path,
    stop_reason: str | None,
    metrics: dict,
    info: dist.DistInfo,
) -> TrainResult:
    finished = t.step >= cfg.train.steps
    if stop_reason and not finished and info.is_main:
        log.warning(
            "stopped at step %d (%s); continue with: dualsr train --resume %s",
            t.step,
            stop_reason,
            run_dir,
        )
    best = run_dir / BEST
    latest = run_dir / LATEST
    return TrainResult(
        run_dir=run_dir,
        step=t.step,
        finished=finished,
        stop_reason=None if finished else stop_reason,
        latest=latest if latest.is_file() else None,
        best=best if best.is_file() else None,
        best_psnr=t.extra.get("best_psnr"),
        metrics=metrics,
        model=unwrap_model(t.model),
        duals=t.duals,
        ema_model=t.ema.module if t.ema else None,
        rank=info.rank,
    )
