"""What a training run writes besides checkpoints: the run directory, its resolved
``config.yaml``, and the metrics (``metrics.jsonl``, TensorBoard scalars when installed), averaged
over the steps between two log lines (:class:`Window`)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fileio import atomic_write_bytes
from . import distributed as dist
from .config import TrainConfig, save_config
from .step import StepResult

log = logging.getLogger("dualsr.train")


def check_writable_run_dir(run_dir: Path) -> None:
    """Fail before any work when checkpoints could not be written."""
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


def prepare_run_dir(
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
