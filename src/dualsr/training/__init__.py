"""Dual regression training: configuration, the step, the loop, checkpoints and resume, DDP.

The API::

    from dualsr.training import TrainConfig, load_config, train

    cfg = load_config("configs/cpu-drn-x4.yaml", overrides=["optim.lr=2e-4"])
    result = train(cfg)                      # result.run_dir, result.best, result.model ...
    result = train(cfg, resume=True)         # continue cfg.run.dir after an interruption
"""

from .config import (
    DataConfig,
    DataSource,
    DistillConfig,
    LoopConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    ValConfig,
    apply_overrides,
    load_config,
    resume_config,
    save_config,
)
from .loop import Callback, StepInfo, TrainResult, train
from .state import load_for_resume, load_training_checkpoint, save_training_checkpoint
from .step import LossGuard, PrimalDual, StepResult, Trainer, distill_loss, train_step
from .trainer import make_trainer
from .validation import validate

__all__ = [
    "Callback",
    "DataConfig",
    "DataSource",
    "DistillConfig",
    "LoopConfig",
    "LossConfig",
    "LossGuard",
    "ModelConfig",
    "OptimConfig",
    "PrimalDual",
    "RunConfig",
    "StepInfo",
    "StepResult",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "ValConfig",
    "apply_overrides",
    "distill_loss",
    "load_config",
    "load_for_resume",
    "load_training_checkpoint",
    "make_trainer",
    "resume_config",
    "save_config",
    "save_training_checkpoint",
    "train",
    "train_step",
    "validate",
]
