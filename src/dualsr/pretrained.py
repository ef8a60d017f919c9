"""Turning a ``--model`` argument into a model: a checkpoint path, a preset, a released model
(by name, see :mod:`dualsr.hub`), an http(s) URL of a checkpoint, or ``bicubic``.

Weights shipped inside the package live in ``dualsr/weights/<preset>.safetensors``, recorded
with their size and sha256 in ``dualsr/weights/shipped.json``: a shipped file is loaded only if
both match and its architecture is exactly its preset's (:func:`load_shipped`). A preset
without shipped weights is refused (its output would be meaningless; the error names the trained
models of its scale) unless ``random_weights=True`` asks for a random model on purpose.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from . import hub
from .errors import CheckpointError

if TYPE_CHECKING:  # PyTorch is imported by the functions that load models, not by this module
    from .models.drn import DRN

BICUBIC = "bicubic"
SHIPPED_MANIFEST = "shipped.json"


def shipped_weights(name: str) -> Path | None:
    """The path of the weights shipped for preset ``name``, or None."""
    try:
        ref = resources.files("dualsr").joinpath("weights", f"{name.lower()}.safetensors")
    except ModuleNotFoundError:  # pragma: no cover
        return None
    path = Path(str(ref))
    return path if path.is_file() else None


def shipped_manifest() -> dict[str, dict]:
    """The recorded size and sha256 of every shipped weights file, by preset name."""
    ref = resources.files("dualsr").joinpath("weights", SHIPPED_MANIFEST)
    try:
        data = json.loads(ref.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"the list of shipped weights (dualsr/weights/{SHIPPED_MANIFEST}) cannot be read "
            f"({exc}): reinstall dualsr"
        ) from exc
    return dict(data.get("weights", {}))


def file_record(path: str | Path) -> dict[str, object]:
    """A file's size in bytes and sha256 (hex), as :data:`SHIPPED_MANIFEST` records them."""
    data = Path(path).read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


SHIPPED_FIX = "reinstall dualsr (pip install --force-reinstall dualsr)"


def verified_shipped_weights(name: str) -> Path:
    """The path of the weights shipped for preset ``name`` after checking its size and sha256
    against ``shipped.json``; CheckpointError saying what differs (a damaged installation)."""
    key = name.lower()
    path = shipped_weights(key)
    if path is None:
        raise CheckpointError(f"preset {name!r} ships no weights")
    record = shipped_manifest().get(key)
    if record is None:
        raise CheckpointError(
            f"{path} has no size/sha256 record in dualsr/weights/{SHIPPED_MANIFEST}: "
            f"{SHIPPED_FIX}; when packaging weights, write them with "
            "experiments/package_weights.py"
        )
    actual = file_record(path)
    for field in ("bytes", "sha256"):
        if actual[field] != record.get(field):
            raise CheckpointError(
                f"the shipped weights {path} are damaged or replaced ({field} "
                f"{actual[field]}, recorded {record.get(field)}): {SHIPPED_FIX}"
            )
    return path


def check_preset_architecture(model: DRN, preset: str, source: str | Path) -> DRN:
    """``model`` if its architecture is exactly preset ``preset``'s, else CheckpointError."""
    from .models.registry import create_model

    expected = create_model(preset).arch.to_dict()
    if model.arch.to_dict() != expected:
        raise CheckpointError(
            f"{source} is not preset {preset}'s architecture ({model.arch.to_dict()} != "
            f"{expected}): {SHIPPED_FIX}"
        )
    return model


def load_shipped(name: str) -> DRN:
    """Load the weights shipped for preset ``name``, verified: the file's size and sha256 must be
    those recorded in ``shipped.json`` (:func:`verified_shipped_weights`) and its architecture
    exactly the preset's; otherwise CheckpointError saying what differs."""
    from .checkpoint import load_model

    path = verified_shipped_weights(name)
    return check_preset_architecture(load_model(path), name.lower(), path)


def shipped_provenance(name: str) -> dict:
    """The provenance stored with a shipped model's weights (measured scores, speed, recipe), read
    from the safetensors header only; {} when the preset ships no weights or records none."""
    path = shipped_weights(name)
    if path is None:
        return {}
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    try:
        value = json.loads(meta.get("provenance", "{}"))
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def resolve_model(spec: str, *, random_weights: bool = False) -> DRN:
    """Load ``spec``: an existing checkpoint file, a preset name (shipped weights if any), a
    released model's name or alias (downloaded once into the cache, see :func:`dualsr.hub.fetch`),
    or an http(s) URL of a checkpoint.

    A preset without trained weights raises CheckpointError naming the trained models that fit
    (its releases, the shipped models of its scale), unless ``random_weights`` is True: then it is
    built with random weights, with a warning (speed or export tests, not images).
    """
    from .checkpoint import load_model
    from .models.registry import PRESETS, create_model

    path = Path(spec).expanduser()
    if path.is_file():
        return load_model(path)
    key = spec.lower()
    if key in PRESETS:
        if shipped_weights(key) is not None:
            return load_shipped(key)
        released = hub.releases_for_preset(key)
        if not random_weights:
            raise CheckpointError(untrained_preset_message(spec))
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


def trained_models_for(preset: str) -> list[str]:
    """Names that load trained weights of ``preset``'s scale: its released models first, then
    the other releases and the shipped presets of that scale."""
    from .models.registry import PRESETS

    scale = PRESETS[preset.lower()].scale
    own = [r.name for r in hub.releases_for_preset(preset)]
    others = [
        r.name
        for r in hub.RELEASES.values()
        if r.name not in own and r.preset in PRESETS and PRESETS[r.preset].scale == scale
    ]
    shipped = [n for n, p in PRESETS.items() if p.scale == scale and shipped_weights(n)]
    return own + others + shipped


def untrained_preset_message(spec: str) -> str:
    """The one-line refusal of a preset that has no trained weights (see :func:`resolve_model`)."""
    from .models.registry import PRESETS

    scale = PRESETS[spec.lower()].scale
    names = trained_models_for(spec)
    fit = "give a checkpoint file"
    if names:
        more = f" (or {', '.join(names[1:])})" if names[1:] else ""
        fit = f"use a trained x{scale} model: --model {names[0]}{more}"
    return (
        f"preset {spec!r} has no trained weights (its output would be meaningless); {fit}. "
        "Pass --random-weights (random_weights=True in Python) for a deliberately random model"
    )


def _load_fetched(spec: str, release: hub.Release | None) -> DRN:
    """Fetch a release or URL into the cache (no network when cached) and load it."""
    from .checkpoint import load_model

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
    from .models.registry import PRESETS

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


#: The model ``dualsr upscale`` uses without --model, per scale: the best shipped model of that
#: scale (docs/RESULTS.md). drn-t-x4 runs a 1280x720 output in about 0.4 s on 2 cores (bf16);
#: the lighter drn-t50-x4 stays available by name.
DEFAULT_PRESETS: dict[int, str] = {4: "drn-t-x4", 8: "drn-t-x8"}
DEFAULT_SCALE = 4
DEFAULT_PRESET = DEFAULT_PRESETS[DEFAULT_SCALE]


def default_model_name(scale: int = DEFAULT_SCALE) -> str | None:
    """The model ``dualsr upscale`` uses without --model at ``scale``: the default preset of that
    scale when its trained weights ship with the package; otherwise None."""
    name = DEFAULT_PRESETS.get(int(scale))
    return name if name is not None and shipped_weights(name) is not None else None


def require_default_model(scale: int = DEFAULT_SCALE) -> str:
    """:func:`default_model_name`, or a CheckpointError that says what to pass instead."""
    name = default_model_name(scale)
    if name is not None:
        return name
    from .models.registry import PRESETS  # the error only: `dualsr upscale` may run without torch

    shipped = sorted(
        f"x{s} ({n})" for s, n in DEFAULT_PRESETS.items() if shipped_weights(n) is not None
    )
    released = [
        r.name
        for r in hub.RELEASES.values()
        if r.preset in PRESETS and PRESETS[r.preset].scale == scale
    ]
    hint = f", a released x{scale} model ({', '.join(released)})" if released else ""
    raise CheckpointError(
        f"no trained x{scale} model ships with this package (shipped defaults: "
        f"{', '.join(shipped) or 'none'}); pass --model with an x{scale} checkpoint file"
        f"{hint} or an http(s) URL"
    )
