"""Turning config sections into objects: the model, the teacher, optimizers, the LR schedule,
the data loader. Each function takes the section it needs and nothing else."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..data.dataset import (
    PatchDataset,
    StepBatchSampler,
    build_store,
    default_cache_dir,
    find_images,
    make_loader,
)
from ..errors import CheckpointError, ConfigError
from ..models.drn import DRN, DualModels
from ..models.registry import get_preset, preset_channel_config, read_channel_config
from .config import DataConfig, DistillConfig, ModelConfig, OptimConfig


def build_model(cfg: ModelConfig) -> tuple[DRN, DualModels | None]:
    """The primal model, and duals when they come with an ``init`` checkpoint (else None)."""
    if cfg.init:
        if not Path(cfg.init).is_file():
            raise ConfigError(f"model.init: checkpoint not found: {cfg.init}")
        ckpt = load_checkpoint(cfg.init)
        return ckpt.model.train(), ckpt.duals
    scale, n_feats, n_blocks, channels = cfg.scale, cfg.n_feats, cfg.n_blocks, None
    if cfg.preset:
        preset = get_preset(cfg.preset)
        scale = scale or preset.scale
        n_feats = n_feats or preset.n_feats
        n_blocks = preset.n_blocks if n_blocks is None else n_blocks
        channels = preset_channel_config(cfg.preset)
    if isinstance(cfg.channel_config, str):
        if not Path(cfg.channel_config).is_file():
            raise ConfigError(f"model.channel_config: file not found: {cfg.channel_config}")
        channels = read_channel_config(cfg.channel_config)
    elif cfg.channel_config is not None:
        channels = list(cfg.channel_config)
    try:
        return DRN(int(scale), int(n_feats), int(n_blocks), channel_config=channels), None
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None


def load_teacher(cfg: DistillConfig, scale: int, device: torch.device) -> DRN:
    """The frozen distillation teacher, in eval mode on ``device``."""
    if not Path(cfg.teacher).is_file():
        raise ConfigError(f"loss.distill.teacher: checkpoint not found: {cfg.teacher}")
    try:
        teacher = load_checkpoint(cfg.teacher).model
    except CheckpointError as exc:
        raise ConfigError(f"loss.distill.teacher: {exc}") from None
    if teacher.scale != scale:
        raise ConfigError(
            f"loss.distill.teacher upscales x{teacher.scale} but the model x{scale}; use a "
            f"x{scale} teacher"
        )
    return teacher.eval().requires_grad_(False).to(device)


def build_optimizer(params: list[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Adam:
    """Adam with the configured betas, eps and weight decay (the LR is set every step)."""
    return torch.optim.Adam(
        params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
    )


def lr_at(cfg: OptimConfig, step: int, total_steps: int) -> float:
    """The learning rate of step ``step`` (0-based): linear warm-up, then cosine or constant.

    The cosine goes from ``lr`` at the end of the warm-up to ``min_lr`` at ``total_steps``.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    t = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_loader(
    cfg: DataConfig,
    scale: int,
    *,
    seed: int,
    start_step: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    barrier: Callable[[], None] | None = None,
) -> torch.utils.data.DataLoader:
    """Find, decode and cache the training images; a loader of one batch per step from
    ``start_step`` (uint8 pyramids; see :func:`dualsr.data.dataset.batch_to_device`)."""
    if not cfg.train:
        raise ConfigError("data.train: give at least one folder of HR training images")
    if cfg.patch_size % scale:
        raise ConfigError(
            f"data.patch_size ({cfg.patch_size}) must be a multiple of the scale ({scale})"
        )
    records = []
    for i, src in enumerate(cfg.train):
        try:
            records += find_images(src.hr, src.lr, scale)
        except ConfigError as exc:
            raise ConfigError(f"data.train[{i}]: {exc}") from None
    if not records:
        folders = ", ".join(s.hr for s in cfg.train)
        raise ConfigError(f"data.train: no images (png, jpg, bmp, webp, tif) in {folders}")
    cache_dir = None
    if cfg.cache == "disk":
        cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    store = build_store(
        records,
        scale,
        patch_size=cfg.patch_size,
        cache_dir=cache_dir,
        threads=max(1, cfg.workers),
        share=(rank, world_size),
        barrier=barrier,
    )
    dataset = PatchDataset(store, scale, cfg.patch_size, cfg.augment)
    sampler = StepBatchSampler(
        len(dataset),
        cfg.batch_size,
        seed=seed,
        repeat=cfg.repeat,
        start_step=start_step,
        rank=rank,
        world_size=world_size,
    )
    return make_loader(dataset, sampler, workers=cfg.workers, pin_memory=pin_memory)
