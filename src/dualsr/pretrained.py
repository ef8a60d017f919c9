"""Turning a ``--model`` argument into a model: a checkpoint path, a preset, a released model
(by name, see :mod:`dualsr.hub`), an http(s) URL of a checkpoint, or ``bicubic``.

Weights shipped inside the package live in ``dualsr/weights/<preset>.safetensors``; a preset
without shipped weights is built with random weights and a warning.
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

from . import hub
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
    """Load ``spec``: an existing checkpoint file, a preset name (shipped weights if any), a
    released model's name or alias (downloaded once into the cache, see :func:`dualsr.hub.fetch`),
    or an http(s) URL of a checkpoint."""
    path = Path(spec).expanduser()
    if path.is_file():
        return load_model(path)
    key = spec.lower()
    if key in PRESETS:
        weights = shipped_weights(key)
        if weights is not None:
            return load_model(weights)
        released = hub.releases_for_preset(key)
        hint = f" (released weights: --model {released[0].name})" if released else ""
        warnings.warn(
            f"preset {spec!r} has no trained weights in this package: using RANDOM weights, so "
            f"its output is meaningless. Pass a checkpoint file to --model for real results{hint}.",
            stacklevel=2,
        )
        return create_model(key).eval()
    release = hub.find_release(spec)
    if release is not None or hub.is_url(spec):
        return _load_fetched(spec, release)
    if path.suffix or "/" in spec or "\\" in spec:
        named = hub.find_release(path.stem)
        hint = f"; it is a released model: --model {named.name} downloads it" if named else ""
        raise CheckpointError(f"checkpoint not found: {spec}{hint}")
    raise CheckpointError(
        f"unknown model {spec!r}: give a checkpoint path (.safetensors or official .pt), "
        f"'{BICUBIC}', a preset ({', '.join(PRESETS)}), a released model "
        f"({', '.join(hub.RELEASES)}) or an http(s) URL"
    )


def _load_fetched(spec: str, release: hub.Release | None) -> DRN:
    """Fetch a release or URL into the cache (no network when cached) and load it."""
    path = hub.fetch(spec)
    model = load_model(path)
    if release is not None:  # a file put in the cache by hand is checked as well
        hub.check_architecture(
            model,
            release,
            str(path),
            hint=f"delete it or run `dualsr download {release.name} --force`",
        )
    return model


def resolve_checkpoint_path(spec: str | Path) -> Path:
    """The checkpoint file ``spec`` names: a path, a preset with shipped weights, a released
    model's name or an http(s) URL (fetched into the cache once). For the commands that need
    the file itself (prune, finetune, train's ``model.init``), not just the network."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    text = str(spec)
    key = text.lower()
    if key in PRESETS:
        weights = shipped_weights(key)
        if weights is not None:
            return weights
        released = hub.releases_for_preset(key)
        hint = f"; its released weights: {released[0].name}" if released else ""
        raise CheckpointError(
            f"preset {text!r} has no trained weights in this package{hint}; give a checkpoint file"
        )
    if hub.find_release(text) is not None or hub.is_url(text):
        return hub.fetch(text)
    raise CheckpointError(
        f"checkpoint not found: {text}; give a checkpoint file, a preset with shipped weights "
        f"({', '.join(p for p in PRESETS if shipped_weights(p))}), a released model "
        f"({', '.join(hub.RELEASES)}) or an http(s) URL"
    )


DEFAULT_PRESET = "drn-t50-x4"


def default_model_name() -> str | None:
    """The model ``dualsr upscale`` uses without --model: the lightweight x4 preset, when its
    trained weights ship with the package; otherwise None (then --model is required)."""
    return DEFAULT_PRESET if shipped_weights(DEFAULT_PRESET) is not None else None
