"""The data of ``dualsr search``: the training images split into the weights' and the
architecture's halves and batched as pyramids (:func:`make_search_data`), the model to search
(:func:`load_search_model`), and the validation images scored after every epoch
(:func:`load_validation_pairs`, :func:`validation_psnr`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError, ConfigError, DualSRError
from ...models.drn import DRN, DualModels
from .bilevel import Batch, SearchObjective


def split_files(files: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Split deterministically into two halves: even positions train the weights, odd positions
    the architecture (interleaving keeps both halves mixed across folders)."""
    if len(files) < 2:
        raise DualSRError(
            f"the search needs at least 2 training images (one per half), found {len(files)}"
        )
    return list(files[0::2]), list(files[1::2])


@dataclass
class SearchData:
    """The two halves of the training images as endless iterables of pyramid batches."""

    train: Iterable[Batch]
    val: Iterable[Batch]
    train_files: list[Path]
    val_files: list[Path]
    steps_per_epoch: int


def make_search_data(
    folders: Sequence[str | Path],
    scale: int,
    patch_size: int,
    batch_size: int,
    seed: int = 0,
    cache_dir: Path | None = None,
    start_step: int = 0,
) -> SearchData:
    """Split the images of ``folders`` into weight/architecture halves and batch them.

    Uses the training data pipeline (:mod:`dualsr.data.dataset`): pyramids made once per image
    (kept in memory, or in ``cache_dir``), aligned random patches with flips and transpose.
    An epoch is one pass over the weight half. The batches depend only on ``(seed, step)``;
    ``start_step`` begins at that step (to resume a search).
    """
    from ...data.dataset import (
        PatchDataset,
        StepBatchSampler,
        build_store,
        find_images,
        make_loader,
    )

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if patch_size < 1 or patch_size % scale:
        raise ConfigError(
            f"--patch-size ({patch_size}) must be a positive multiple of the scale ({scale})"
        )
    records = []
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            raise DualSRError(f"--data {path}: no such folder; give folders of HR training images")
        found = find_images(path, None, scale)
        if not found:
            raise DualSRError(
                f"--data {path}: the folder holds no images (png, jpg, bmp, webp, tif), directly "
                "or in an HR/ subfolder; give folders of HR training images"
            )
        records += found
    halves = split_files(records)
    loaders, files, per_epoch = [], [], 0
    for i, half in enumerate(halves):
        try:
            store = build_store(half, scale, patch_size=patch_size, cache_dir=cache_dir)
        except ConfigError as exc:
            raise ConfigError(
                f"--data: none of the {len(half)} images of the {('weight', 'architecture')[i]} "
                f"half is readable and at least {patch_size}x{patch_size} pixels (see the "
                "warnings above); use a smaller --patch-size or larger images"
            ) from exc
        dataset = PatchDataset(store, scale, patch_size)
        sampler = StepBatchSampler(len(store), batch_size, seed=seed + i, start_step=start_step)
        loaders.append(make_loader(dataset, sampler))
        files.append([Path(n) for n in store.names])
        per_epoch = per_epoch or sampler.steps_per_epoch
    return SearchData(loaders[0], loaders[1], files[0], files[1], per_epoch)


def load_search_model(spec: str) -> tuple[DRN, DualModels | None, str]:
    """``(model, duals, source)`` from a checkpoint path or a preset name.

    A preset without shipped weights gives a randomly initialised model, with a warning.
    """
    from ...checkpoint import load_checkpoint
    from ...models.registry import PRESETS, create_model
    from ...pretrained import check_preset_architecture, shipped_weights, verified_shipped_weights

    path = Path(spec).expanduser()
    if path.is_file():
        ckpt = load_checkpoint(path)
        return ckpt.model, ckpt.duals, str(path)
    key = spec.lower()
    if key in PRESETS:
        if shipped_weights(key) is not None:
            weights = verified_shipped_weights(key)
            ckpt = load_checkpoint(weights)
            check_preset_architecture(ckpt.model, key, weights)
            return ckpt.model, ckpt.duals, str(weights)
        warnings.warn(
            f"preset {spec!r} has no trained weights in this package: searching a RANDOMLY "
            "initialised model, so the result is meaningless. Pass a trained checkpoint.",
            stacklevel=2,
        )
        return create_model(key), None, f"preset {key} (random weights)"
    raise CheckpointError(
        f"checkpoint not found: {spec}; --model needs a trained DRN checkpoint "
        "(.safetensors or official .pt)"
    )


def load_validation_pairs(folder: str | Path, scale: int) -> list[tuple[Any, Any]]:
    """``(HR, LR)`` uint8 pairs of the images in ``folder`` (the evaluation protocol: HR cropped
    to a multiple of the scale, MATLAB-style bicubic LR). DualSRError for a missing folder, an
    unreadable image or one too small for the release's border of ``scale + 6`` pixels."""
    from ...data.image_io import load_rgb_uint8
    from ...evaluation import benchmark_images, make_pair

    try:
        _, files = benchmark_images(folder)
    except DualSRError as exc:
        raise DualSRError(f"--val {folder}: {exc}") from None
    pairs = []
    border = scale + 6
    for path in files:
        try:
            hr, lr = make_pair(load_rgb_uint8(path), scale)
        except DualSRError as exc:
            raise DualSRError(f"--val: {path}: {exc}") from None
        if min(hr.shape[:2]) <= 2 * border:
            raise DualSRError(
                f"--val: {path} is {hr.shape[1]}x{hr.shape[0]}, too small for the validation "
                f"border of {border} pixels (scale + 6)"
            )
        pairs.append((hr, lr))
    return pairs


@torch.no_grad()
def validation_psnr(
    objective: SearchObjective,
    alphas: Sequence[torch.Tensor],
    pairs: Sequence[tuple[Any, Any]],
) -> float:
    """Mean PSNR of the soft-masked network (the search's network, current weights and logits)
    on ``pairs`` (:func:`load_validation_pairs`), measured as the release's search measures it
    (``DRN/channel_search/__init__.py`` ``validate``, ``utility.calc_psnr`` without
    ``benchmark``): outputs rounded to 8 bits, RGB, ``scale + 6`` border pixels shaved. This is
    not the benchmark PSNR (Y, border ``scale``).
    """
    from ...metrics import psnr

    model = objective.net.model
    param = next(model.parameters())
    objective.rank()  # the current weights' ranking (the next step ranks again)
    objective.masks.masks = objective.soft_masks([a.detach() for a in alphas])
    scores = []
    for hr, lr in pairs:
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].to(device=param.device, dtype=param.dtype)
        sr = model(x)[-1][0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        scores.append(psnr(sr, hr, crop_border=model.scale + 6, y_channel=False))
    return float(sum(scores) / len(scores))
