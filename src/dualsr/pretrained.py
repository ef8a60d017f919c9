"""Turning a ``--model`` argument into a model: a checkpoint path, a preset, or ``bicubic``.

Weights shipped inside the package live in ``dualsr/weights/<preset>.safetensors``; a preset
without shipped weights is built with random weights and a warning.
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

from .checkpoint import load_model
from .errors import CheckpointError
from .models.drn import DRN
from .models.registry import PRESETS, create_model

BICUBIC = "bicubic"


def shipped_weights(name: str) -> Path | None:
    """The path of the weights shipped for preset ``name``, or None."""
    try:
        ref = resources.files("dualsr").joinpath("weights", f"{name.lower()}.safetensors")
    except ModuleNotFoundError:  # pragma: no cover
        return None
    path = Path(str(ref))
    return path if path.is_file() else None


def resolve_model(spec: str) -> DRN:
    """Load ``spec``: an existing checkpoint file, or a preset name (shipped weights if any)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return load_model(path)
    key = spec.lower()
    if key in PRESETS:
        weights = shipped_weights(key)
        if weights is not None:
            return load_model(weights)
        warnings.warn(
            f"preset {spec!r} has no trained weights in this package: using RANDOM weights, so "
            "its output is meaningless. Pass a checkpoint file to --model for real results.",
            stacklevel=2,
        )
        return create_model(key).eval()
    if path.suffix or "/" in spec or "\\" in spec:
        raise CheckpointError(f"checkpoint not found: {spec}")
    raise CheckpointError(
        f"unknown model {spec!r}: give a checkpoint path (.safetensors or official .pt), "
        f"'{BICUBIC}', or a preset ({', '.join(PRESETS)})"
    )


DEFAULT_PRESET = "drn-t50-x4"


def default_model_name() -> str | None:
    """The model ``dualsr upscale`` uses without --model: the lightweight x4 preset, when its
    trained weights ship with the package; otherwise None (then --model is required)."""
    return DEFAULT_PRESET if shipped_weights(DEFAULT_PRESET) is not None else None
