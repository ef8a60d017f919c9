"""Dual regression training: the loop.

``train(config)`` runs on one CPU, one GPU, or every process that ``torchrun`` starts; it stops
cleanly on SIGINT/SIGTERM (saving a checkpoint first) and ``train(config, resume=True)`` continues
from the run directory's newest usable checkpoint with exactly the batches an uninterrupted run
would have seen.

The step is :func:`dualsr.training.step.train_step`; building the trainer and its checkpoints are
in :mod:`dualsr.training.trainer`, the metrics log and run directory in
:mod:`dualsr.training.report`, validation and ``best.safetensors`` in
:mod:`dualsr.training.validation`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import unwrap_model
from ..data.dataset import batch_to_device
from ..errors import ConfigError
from ..models.drn import DRN, DualModels
from ..runcontrol import StopSignals, save_after_error
from . import distributed as dist
from .builders import build_loader, build_model, lr_at
from .config import TrainConfig, resolve_paths
from .report import MetricsLog, Window, check_writable_run_dir, prepare_run_dir
from .state import BEST, LATEST, load_for_resume, restore_rng, run_has_checkpoints
from .step import Trainer, train_step
from .trainer import make_trainer, restore_trainer, save_checkpoint
from .validation import check_val_folders, validate_and_keep_best

log = logging.getLogger("dualsr.train")


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
        check_writable_run_dir(run_dir)
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
    check_val_folders(cfg.val.folders, model.scale)
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
    metrics_log = prepare_run_dir(cfg, run_dir, info, t.step if loaded else None)
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
        lambda: f"saved {save_checkpoint(t, cfg, run_dir)}",
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
            row = validate_and_keep_best(t, cfg, run_dir)
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
        path = save_checkpoint(t, cfg, run_dir)
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


def _shutdown_workers(batches: Iterator) -> None:
    """Stop the DataLoader's worker processes now. Left to the interpreter's exit after an
    error, the exit handler waits for workers that ignore SIGTERM: the process never ended."""
    shutdown = getattr(batches, "_shutdown_workers", None)
    if shutdown is not None:
        with contextlib.suppress(Exception):
            shutdown()


def _redirect_logging(enabled: bool) -> contextlib.AbstractContextManager:
    """Route log lines through tqdm so they do not break the progress bar."""
    if not enabled:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()
