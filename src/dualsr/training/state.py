"""Training checkpoints: one safetensors format for every stage, resume that loses nothing.

A training checkpoint is an ordinary dualsr checkpoint (official primal keys, ``dual.<i>.*``; see
:mod:`dualsr.checkpoint`), so ``dualsr.load_model`` and ``dualsr upscale --model`` read it
directly, plus training state that inference loaders skip:

* tensors under reserved prefixes: ``ema.<key>`` (EMA weights), ``optim.<name>.<param>.<key>``
  (Adam moments and step counts of the ``model`` and ``dual`` optimizers), ``train.rng.*``
  (torch RNG states), ``train.tensor.<name>`` (other named tensors of a state, e.g. the
  architecture logits of a channel search);
* the header entry ``train_state``: JSON with the step, the resolved config, the optimizers'
  param_groups, the LR schedule, the loss guard, the AMP scaler, the Python/numpy RNG states.

Files in a run directory: ``checkpoints/step-000123.safetensors`` (the last ``keep`` are kept),
``latest.safetensors`` (a copy of the newest), ``best.safetensors`` (best validation PSNR, model
only). Every write is atomic. On resume, an unreadable (e.g. truncated) checkpoint is reported and
the previous one is used. The file-name prefix (``step``) and the ``latest`` copy are parameters,
so other stages (``dualsr search``: ``checkpoints/search-step-*.safetensors``, no ``latest``) keep
their state the same way.
"""

from __future__ import annotations

import json
import logging
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import (
    Checkpoint,
    checkpoint_from_tensors,
    read_safetensors,
    serialize_checkpoint,
)
from ..errors import CheckpointError, DualSRError
from ..fileio import atomic_write_bytes
from ..models.drn import DRN, DualModels

log = logging.getLogger("dualsr.train")

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.safetensors"
BEST = "best.safetensors"
STATE_KEY = "train_state"
STATE_VERSION = 1
STEP_PREFIX = "step"
TENSOR_PREFIX = "train.tensor."


@dataclass
class TrainingState:
    """Everything a resumed run needs beyond the model and dual weights."""

    step: int
    config: dict[str, Any]
    optimizers: dict[str, dict[str, Any]]  # name -> optimizer.state_dict()
    ema: dict[str, torch.Tensor] | None = None
    scaler: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # schedule, guard, best PSNR ...
    rng: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # other named tensors


@dataclass
class LoadedCheckpoint:
    """A training checkpoint read back: the model (and duals) and the training state."""

    path: Path
    checkpoint: Checkpoint
    state: TrainingState


# ----------------------------------------------------------------------------------------------
# RNG states
# ----------------------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) RNG states."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(rng: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (missing entries are left alone)."""
    if "python" in rng:
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in rng:
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available():  # pragma: no cover - needs a GPU
        states = rng["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)


# ----------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------
def encode_state(state: TrainingState) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (under the reserved prefixes) and the header entry of a training state."""
    tensors: dict[str, torch.Tensor] = {}
    groups: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    for name, sd in state.optimizers.items():
        groups[name] = sd["param_groups"]
        for index, entries in sd["state"].items():
            for key, value in entries.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{name}.{index}.{key}"] = value
                else:
                    scalars.setdefault(name, {}).setdefault(str(index), {})[key] = value
    for key, value in (state.ema or {}).items():
        tensors[f"ema.{key}"] = value
    for key, value in state.tensors.items():
        tensors[f"{TENSOR_PREFIX}{key}"] = value
    rng = dict(state.rng)
    if isinstance(rng.get("torch"), torch.Tensor):
        tensors["train.rng.torch"] = rng.pop("torch")
    for i, cuda_state in enumerate(rng.pop("cuda", []) or []):
        tensors[f"train.rng.cuda.{i}"] = cuda_state
    header = {
        "version": STATE_VERSION,
        "step": state.step,
        "config": state.config,
        "param_groups": groups,
        "optim_scalars": scalars,
        "ema": state.ema is not None,
        "scaler": state.scaler,
        "extra": state.extra,
        "rng": rng,
    }
    return tensors, {STATE_KEY: json.dumps(header, default=_json_default)}


def decode_state(
    header: dict[str, str], tensors: dict[str, torch.Tensor], path: Path
) -> TrainingState:
    """Inverse of :func:`encode_state`; CheckpointError for a model-only or damaged file."""
    if STATE_KEY not in header:
        raise CheckpointError(
            f"{path} holds model weights but no training state, so a run cannot resume from it; "
            "start a new run from it with model.init instead"
        )
    try:
        meta = json.loads(header[STATE_KEY])
        optimizers = {
            name: {"state": {}, "param_groups": groups}
            for name, groups in meta["param_groups"].items()
        }
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, name, index, entry = key.split(".", 3)
                optimizers[name]["state"].setdefault(int(index), {})[entry] = value
        for name, per_param in meta.get("optim_scalars", {}).items():
            for index, entries in per_param.items():
                optimizers[name]["state"].setdefault(int(index), {}).update(entries)
        ema = (
            {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")} if meta["ema"] else None
        )
        rng = dict(meta.get("rng", {}))
        if "train.rng.torch" in tensors:
            rng["torch"] = tensors["train.rng.torch"]
        cuda = sorted(k for k in tensors if k.startswith("train.rng.cuda."))
        rng["cuda"] = [tensors[k] for k in sorted(cuda, key=lambda k: int(k.rsplit(".", 1)[1]))]
        return TrainingState(
            step=int(meta["step"]),
            config=meta["config"],
            optimizers=optimizers,
            ema=ema,
            scaler=meta.get("scaler"),
            extra=meta.get("extra", {}),
            rng=rng,
            tensors={
                k[len(TENSOR_PREFIX) :]: v
                for k, v in tensors.items()
                if k.startswith(TENSOR_PREFIX)
            },
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: damaged training state ({exc!r})") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple | set):
        return list(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint header")


# ----------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------
def step_path(run_dir: str | Path, step: int, prefix: str = STEP_PREFIX) -> Path:
    """``RUN_DIR/checkpoints/step-000123.safetensors`` (``prefix`` replaces ``step``)."""
    return Path(run_dir) / CHECKPOINT_DIR / f"{prefix}-{step:06d}.safetensors"


def step_checkpoints(run_dir: str | Path, prefix: str = STEP_PREFIX) -> list[tuple[int, Path]]:
    """The step checkpoints of a run (files ``checkpoints/<prefix>-N.safetensors``), oldest
    first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+)\.safetensors$")
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return sorted(found)


def save_training_checkpoint(
    run_dir: str | Path,
    model: DRN,
    duals: DualModels | None,
    state: TrainingState,
    keep: int = 3,
    metadata: dict[str, Any] | None = None,
    *,
    prefix: str = STEP_PREFIX,
    latest: str | None = LATEST,
) -> Path:
    """Write ``checkpoints/step-N.safetensors`` and ``latest.safetensors``; keep the last ``keep``.

    Both files are written atomically (temp file, fsync, rename); the step file first, so a crash
    never leaves ``latest`` newer than the step files. ``prefix`` replaces ``step`` in the file
    name; ``latest`` None writes no ``latest`` copy. ``metadata`` is merged into the provenance
    (``stage: train`` unless it says otherwise).
    """
    tensors, header = encode_state(state)
    provenance = {"stage": "train", "step": state.step, **(metadata or {})}
    data = serialize_checkpoint(model, duals, provenance, tensors, header)
    path = atomic_write_bytes(step_path(run_dir, state.step, prefix), data)
    if latest is not None:
        atomic_write_bytes(Path(run_dir) / latest, data)
    for _, old in step_checkpoints(run_dir, prefix)[: -max(1, keep)]:
        old.unlink(missing_ok=True)
    return path


def load_training_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Read a training checkpoint; CheckpointError (naming the file) if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    header, tensors = read_safetensors(path)
    checkpoint = checkpoint_from_tensors(header, tensors, path)
    return LoadedCheckpoint(path, checkpoint, decode_state(header, tensors, path))


def resume_candidates(
    run_dir: str | Path, prefix: str = STEP_PREFIX, latest: str | None = LATEST
) -> list[Path]:
    """Checkpoints to try, best first: the newest step file, ``latest``, then older steps."""
    steps = [p for _, p in reversed(step_checkpoints(run_dir, prefix))]
    latest_path = Path(run_dir) / latest if latest is not None else None
    head = [latest_path] if latest_path is not None and latest_path.is_file() else []
    return steps[:1] + head + steps[1:]


def load_for_resume(
    run_dir: str | Path, prefix: str = STEP_PREFIX, latest: str | None = LATEST
) -> LoadedCheckpoint:
    """The newest usable checkpoint of ``run_dir``; a corrupt one is reported and skipped.

    ``prefix`` and ``latest`` are those of :func:`save_training_checkpoint`. Raises DualSRError
    when the directory holds no checkpoint, or none that can be read.
    """
    run_dir = Path(run_dir)
    candidates = resume_candidates(run_dir, prefix, latest)
    if not candidates:
        expected = f"{CHECKPOINT_DIR}/{prefix}-*.safetensors"
        raise DualSRError(
            f"cannot resume: {run_dir} holds no checkpoints (expected "
            f"{f'{latest} or ' if latest else ''}{expected}); start a new run without --resume"
        )
    problems = []
    for i, path in enumerate(candidates):
        try:
            loaded = load_training_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            nxt = candidates[i + 1] if i + 1 < len(candidates) else None
            then = f"falling back to {nxt}" if nxt else "no older checkpoint is left"
            warnings.warn(f"cannot resume from {path}: {exc}; {then}", stacklevel=2)
            continue
        return loaded
    raise DualSRError(
        f"cannot resume: none of the {len(candidates)} checkpoints in {run_dir} is usable: "
        + " | ".join(problems)
    )


def run_has_checkpoints(
    run_dir: str | Path, prefix: str = STEP_PREFIX, latest: str | None = LATEST
) -> bool:
    """True when ``run_dir`` already holds a run's checkpoints."""
    return bool(resume_candidates(run_dir, prefix, latest))
