"""Stage 3 of dual regression compression: fine-tuning a pruned model.

Fine-tuning is training (:func:`dualsr.training.train`) started from the pruned checkpoint
(``model.init``), with the dual regression loss and, optionally, distillation from a teacher
such as DRN-L (``loss.distill``: MSE of the channel-averaged features entering the last tail conv,
weight 1 by default). This module only builds that training configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..training import TrainConfig, TrainResult


def finetune_config(
    pruned: str | Path,
    run_dir: str | Path,
    data: Sequence[str | Path] = (),
    *,
    teacher: str | Path | None = None,
    distill_weight: float = 1.0,
    steps: int | None = None,
    recipe: str | Path | None = None,
    overrides: Sequence[str] = (),
) -> TrainConfig:
    """The training configuration that fine-tunes ``pruned``.

    Args:
        pruned: the pruned checkpoint (from ``dualsr prune``); its duals are used when present.
        run_dir: where the run is written.
        data: folders of HR training images (replace the recipe's ``data.train``).
        teacher: a checkpoint to distil from (e.g. DRN-L); None trains without distillation.
        distill_weight: the weight of the distillation term.
        steps: training steps (default: the recipe's, else the training default).
        recipe: an optional training YAML for everything else (optimizer, data, validation);
            its ``model`` section is replaced by ``model.init = pruned``.
        overrides: ``key=value`` strings applied last, as ``dualsr train --set``.
    """
    from ..training.config import load_config, read_yaml, set_key

    if not Path(pruned).is_file():
        raise ConfigError(f"pruned checkpoint not found: {pruned}")
    if teacher is not None and not Path(teacher).is_file():
        raise ConfigError(f"teacher checkpoint not found: {teacher}")
    base: dict[str, Any] = read_yaml(recipe) if recipe is not None else {}
    base["model"] = {"init": str(pruned)}
    if data:
        set_key(base, "data.train", [{"hr": str(d)} for d in data])
    elif not (base.get("data") or {}).get("train"):
        raise ConfigError("no training images: give --data DIR (or data.train in the recipe)")
    if teacher is not None:
        set_key(base, "loss.distill", {"teacher": str(teacher), "weight": float(distill_weight)})
    if steps is not None:
        set_key(base, "train.steps", int(steps))
    set_key(base, "run.dir", str(run_dir))
    return load_config(None, overrides, base=base)


def finetune(config: TrainConfig) -> TrainResult:
    """Run the fine-tuning described by ``config`` (see :func:`finetune_config`)."""
    from ..training import train

    return train(config)
