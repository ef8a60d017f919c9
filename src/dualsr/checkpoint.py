"""Loading and saving DRN weights.

Two formats are understood:

* dualsr's own: a safetensors file whose header metadata holds the architecture and provenance
  as JSON (written by :func:`save_model`). Primal keys are exactly the official names; dual
  weights are stored as ``dual.<i>.<official dual key>``.
* the official releases: a PyTorch ``.pt`` state_dict (optionally under ``state_dict`` and/or with
  a ``module.`` prefix), loaded with ``torch.load(weights_only=True)``. The architecture (scale,
  n_feats, RCABs per stage and every inner width) is inferred from the tensor shapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .fileio import atomic_write_bytes
from .models.drn import DRN, DRNArch, DualModels, full_widths

FORMAT_NAME = "dualsr"
FORMAT_VERSION = 1
DUAL_PREFIX = "dual."
# Keys under these prefixes hold training state (EMA weights, optimizer moments, ...), not the
# model: inference loaders skip them, training resume reads them.
TRAINING_PREFIXES = ("ema.", "optim.", "train.")
_EXPECTED = "'head.weight', 'down.0.dual_module.0.0.weight', 'up_blocks.0.0.body.0.weight'"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the primal model, the duals when present, and metadata."""

    model: DRN
    duals: DualModels | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT_NAME  # "dualsr" or "official"


# ----------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------
def model_tensors(model: DRN, duals: DualModels | None = None) -> dict[str, torch.Tensor]:
    """Flat tensor dict in dualsr's layout (official primal keys, ``dual.<i>.`` for duals)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if duals is not None:
        for i, dual in enumerate(duals):
            for k, v in dual.state_dict().items():
                tensors[f"{DUAL_PREFIX}{i}.{k}"] = v.detach().cpu().contiguous()
    return tensors


def save_model(
    path: str | Path,
    model: DRN,
    duals: DualModels | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``model`` (and optionally its duals) as safetensors with JSON metadata, atomically.

    ``metadata`` (JSON-serialisable) is stored as provenance: recipe, data, steps, measured PSNR.
    """
    return atomic_write_bytes(path, serialize_checkpoint(model, duals, metadata))


def serialize_checkpoint(
    model: DRN,
    duals: DualModels | None = None,
    metadata: Mapping[str, Any] | None = None,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    extra_header: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes of a dualsr safetensors checkpoint.

    ``extra_tensors`` (keys under :data:`TRAINING_PREFIXES`) and ``extra_header`` (string
    entries beside "format"/"arch"/"provenance") carry training state; inference loaders skip
    both.
    """
    from safetensors.torch import save

    model = unwrap_model(model)
    tensors = model_tensors(model, duals)
    for key, value in (extra_tensors or {}).items():
        if not key.startswith(TRAINING_PREFIXES):
            raise ValueError(f"extra tensor {key!r} must start with one of {TRAINING_PREFIXES}")
        tensors[key] = value.detach().cpu().contiguous()
    header = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "arch": json.dumps(model.arch.to_dict()),
        "provenance": json.dumps(dict(metadata or {}), sort_keys=True),
    }
    for key, value in (extra_header or {}).items():
        if key in header:
            raise ValueError(f"extra header entry {key!r} would overwrite a reserved entry")
        header[key] = value
    return save(tensors, metadata=header)


def unwrap_model(model: torch.nn.Module) -> Any:
    """Strip DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < size < 100_000_000


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a dualsr safetensors checkpoint or an official ``.pt`` state_dict.

    Raises CheckpointError (saying what was expected and what was found) for a missing,
    truncated or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); expected a DRN checkpoint")
    ckpt = _load_dualsr(path) if _is_safetensors(path) else _load_official(path)
    ckpt.model.to(map_location)
    if ckpt.duals is not None:
        ckpt.duals.to(map_location)
    return ckpt


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> DRN:
    """Load the primal DRN of a checkpoint (dualsr or official format), in eval mode."""
    model = load_checkpoint(path, map_location).model
    return model.eval()


def _load_dualsr(path: Path) -> Checkpoint:
    header, tensors = read_safetensors(path)
    return checkpoint_from_tensors(header, tensors, path)


def read_safetensors(path: str | Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The header metadata and every tensor of a safetensors file; CheckpointError if unreadable."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} could not be read as safetensors ({exc}); the file may be truncated or "
            "corrupt: re-download or re-create it"
        ) from exc
    return header, tensors


def checkpoint_from_tensors(
    header: Mapping[str, str], tensors: Mapping[str, torch.Tensor], path: str | Path
) -> Checkpoint:
    """Build the model (and duals) of a dualsr checkpoint; training-state tensors are skipped."""
    path = Path(path)
    if header.get("format") != FORMAT_NAME or "arch" not in header:
        raise CheckpointError(
            f"{path} is a safetensors file but not a dualsr checkpoint: expected header metadata "
            f"'format': 'dualsr' with an 'arch' entry, found keys {sorted(header)}"
        )
    try:
        arch = DRNArch.from_dict(json.loads(header["arch"]))
        provenance = json.loads(header.get("provenance", "{}"))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: invalid architecture metadata ({exc})") from exc
    tensors = {k: v for k, v in tensors.items() if not k.startswith(TRAINING_PREFIXES)}
    primal = {k: v for k, v in tensors.items() if not k.startswith(DUAL_PREFIX)}
    dual_sds = _split_duals({k: v for k, v in tensors.items() if k.startswith(DUAL_PREFIX)})
    model = _build_and_load(arch, primal, path)
    duals = _load_duals(arch, dual_sds, path) if dual_sds else None
    return Checkpoint(model, duals, provenance, FORMAT_NAME)


def _split_duals(tensors: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    groups: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, _, rest = key[len(DUAL_PREFIX) :].partition(".")
        groups.setdefault(int(index), {})[rest] = value
    return [groups[i] for i in sorted(groups)]


def _load_official(path: Path) -> Checkpoint:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, pickle errors, EOFError ...
        # weights_only refused a class or function the file refers to: a pickled object, not
        # a corrupt file (those fail with other unpickler or zip errors, handled below)
        refused = re.search(
            r"(?:global: GLOBAL|unsupported GLOBAL|Unsupported class) ([\w.]+)", str(exc)
        )
        if "Weights only load failed" in str(exc) and refused:
            raise CheckpointError(
                f"{path} is a pickled Python object (e.g. a whole nn.Module; it needs "
                f"{refused.group(1)}), not a state_dict; dualsr never unpickles code. Convert it "
                "once where you trust the file: see docs/models.md"
            ) from None
        raise CheckpointError(
            f"{path} could not be loaded as a PyTorch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); the file may be truncated, corrupt "
            "or not a checkpoint. Expected a DRN state_dict (.pt) or a dualsr .safetensors file"
        ) from exc
    dual_sds: list[Mapping[str, torch.Tensor]] = []
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        dual_sds = list(obj.get("dual_state_dicts") or [])
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, not a state_dict of tensors; expected a DRN "
            f"state_dict with keys such as {_EXPECTED}"
        )
    state = strip_prefix(obj)
    if set(state) <= {"dual_module.0.0.weight", "dual_module.1.weight"} and state:
        raise CheckpointError(
            f"{path} is a DRN dual-model checkpoint, not a primal model; pass the primal "
            "checkpoint (the duals are only needed for training and compression)"
        )
    arch = infer_arch(state, source=str(path))
    model = _build_and_load(arch, state, path)
    duals = _load_duals(arch, [strip_prefix(sd) for sd in dual_sds], path) if dual_sds else None
    return Checkpoint(model, duals, {"source": str(path)}, "official")


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict:
    """Remove a DataParallel/DDP ``module.`` prefix from every key that has it."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def infer_arch(state: Mapping[str, torch.Tensor], source: str = "state_dict") -> DRNArch:
    """Infer scale, n_feats, RCABs per stage and every inner width from a DRN state_dict."""
    missing = [
        k
        for k in ("head.weight", "sub_mean.bias", "down.0.dual_module.0.0.weight")
        if k not in state
    ]
    if missing:
        found = ", ".join(list(state)[:4]) or "no keys"
        raise CheckpointError(
            f"{source} is not a DRN checkpoint: expected keys such as {_EXPECTED}; missing "
            f"{missing}; found {len(state)} keys such as {found}"
        )
    n_feats = int(state["head.weight"].shape[0])
    phases = len({m.group(1) for k in state if (m := re.match(r"down\.(\d+)\.", k))})
    n_blocks = len(
        {m.group(1) for k in state if (m := re.match(r"up_blocks\.0\.(\d+)\.body\.0\.weight$", k))}
    )
    scale = 2**phases
    try:
        widths = [int(state[f"down.{p}.dual_module.0.0.weight"].shape[0]) for p in range(phases)]
        for stage in range(phases):
            widths += [
                int(state[f"up_blocks.{stage}.{b}.body.0.weight"].shape[0]) for b in range(n_blocks)
            ]
            widths.append(int(state[f"up_blocks.{stage}.{n_blocks}.0.weight"].shape[0]) // 4)
    except KeyError as exc:
        raise CheckpointError(f"{source}: incomplete DRN state_dict, missing {exc}") from None
    full = full_widths(scale, n_feats, n_blocks)
    rgb_range = 1.0 if float(state["sub_mean.bias"].abs().max()) < 2.0 else 255.0
    return DRNArch(scale, n_feats, n_blocks, None if widths == full else tuple(widths), rgb_range)


def _build_and_load(arch: DRNArch, state: Mapping[str, torch.Tensor], path: Path) -> DRN:
    model = DRN(arch.scale, arch.n_feats, arch.n_blocks, arch.channel_config, arch.rgb_range)
    expected, given = model.state_dict(), dict(state)
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [
        f"{k} {tuple(given[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    ]
    problems = [
        f"{what} {_few(keys)}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"{path}: the weights do not fit a DRN (x{arch.scale}, n_feats {arch.n_feats}, "
            f"{arch.n_blocks} RCABs a stage): {'; '.join(problems)}. The file is incomplete or "
            "from another model"
        )
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        text = " ".join(str(exc).split())
        raise CheckpointError(f"{path}: the weights do not fit a DRN {arch}: {text}") from exc
    return model


def _few(keys: list[str], limit: int = 3) -> str:
    """Up to ``limit`` keys, then how many more: the names matter, not a wall of them."""
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _load_duals(arch: DRNArch, dual_sds: list, path: Path) -> DualModels:
    duals = DualModels(arch.scale, arch.n_feats)
    if len(dual_sds) != len(duals):
        raise CheckpointError(
            f"{path}: found {len(dual_sds)} dual models, a x{arch.scale} DRN has {len(duals)}"
        )
    try:
        for dual, sd in zip(duals, dual_sds, strict=True):
            dual.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: dual weights do not fit: {str(exc).splitlines()[0]}"
        ) from exc
    return duals


def load_official_duals(paths: list[str | Path], scale: int, n_feats: int) -> DualModels:
    """Load released dual checkpoints (a ``.pt`` state_dict per dual, or a file with a list)."""
    sds: list = []
    for p in paths:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{p} could not be loaded as a dual checkpoint: {exc}") from exc
        sds.extend(obj if isinstance(obj, list) else [obj])
    arch = DRNArch(scale, n_feats, 0)
    return _load_duals(arch, [strip_prefix(sd) for sd in sds], Path(str(paths[0])))
