"""Validation during training: PSNR/SSIM on the ``val.folders`` through the evaluation code,
``best.safetensors`` kept at the best mean PSNR, and the start-up check of the folders."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import save_model
from ..data.dataset import hr_folder
from ..data.image_io import list_images, load_rgb_uint8
from ..errors import ConfigError, DualSRError
from ..models.drn import DRN
from .config import TrainConfig
from .state import BEST
from .step import Trainer

log = logging.getLogger("dualsr.train")


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


def validate_and_keep_best(t: Trainer, cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Validate the trainer's model (its EMA when there is one) and save it as
    ``run_dir/best.safetensors`` when its mean PSNR is the best yet; the metrics row to log."""
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


def check_val_folders(folders: Sequence[str], scale: int) -> None:
    """Fail at start-up, not hours later: a validation folder without images, or an image that
    cannot be read or is too small for the protocol (``3 * scale`` pixels a side: the crop to a
    multiple of the scale, then ``scale`` border pixels shaved on each side)."""
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
