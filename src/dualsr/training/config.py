"""Training configuration: dataclass defaults, a YAML overlay, ``--set key=value`` overrides.

Every section is a plain dataclass passed explicitly to the code that needs it. Loading walks the
dataclasses' type hints (:func:`dualsr.options.from_mapping`), so an unknown key or a value of the
wrong type is reported with its full dotted name (``optim.lr``), and :func:`validate` checks the
ranges. The resolved configuration is
saved into every run directory (``config.yaml``) and inside every checkpoint.

Paths are written as given; :func:`resolve_paths` makes them absolute against the current
directory when a run starts, so that a run can be resumed from anywhere. A ``data.train`` or
``val.folders`` entry that is no folder there may be a data set name (``T91``, ``Set5``), looked up
in ``$DUALSR_DATA`` (:mod:`dualsr.data.locate`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from ..data.locate import find_dataset
from ..errors import ConfigError
from ..options import from_mapping, to_dict


def _path(default: Any = None, data: bool = False) -> Any:
    """A field holding a filesystem path (made absolute by :func:`resolve_paths`); ``data``: a
    folder of images that may also be a data set name (``T91``, :mod:`dualsr.data.locate`)."""
    if isinstance(default, list):
        return field(default_factory=list, metadata={"path": True, "data": data})
    return field(default=default, metadata={"path": True, "data": data})


@dataclass
class ModelConfig:
    """Which network to train.

    Exactly one of: ``preset`` (e.g. ``drn-s-x4``), ``init`` (a checkpoint to start from: a
    dualsr .safetensors, e.g. from ``dualsr prune``, or an official .pt), or explicit
    ``scale``/``n_feats``/``n_blocks``. With a preset, explicit fields override the preset's.
    ``channel_config`` (a list of widths, or a file with one integer a line) builds a
    width-configured (pruned) model.
    """

    preset: str | None = None
    init: str | None = _path()
    scale: int | None = None
    n_feats: int | None = None
    n_blocks: int | None = None
    channel_config: list[int] | str | None = None


@dataclass
class DataSource:
    """A folder of HR images (or a folder with an ``HR/`` subfolder).

    ``lr`` optionally names a folder with pre-made bicubic LR images in the DIV2K layout
    (``X2/0001x2.png``, ``X4/0001x4.png``, ``X8/0001x8.png``); without it the pyramid is made with
    :func:`dualsr.imresize`. In YAML a plain string is shorthand for ``{hr: ...}``.
    """

    shorthand: ClassVar[str] = "hr"  # YAML: a plain string is {hr: ...}

    hr: str = _path("", data=True)
    lr: str | None = _path()


@dataclass
class DataConfig:
    """Training patches."""

    train: list[DataSource] = field(default_factory=list)
    patch_size: int = 192  # HR patch side; the LR patch is patch_size // scale
    batch_size: int = 16  # per process
    repeat: int = 1  # passes over the images per epoch (small datasets give long epochs)
    augment: bool = True  # random flips and transposes, identical at every level
    workers: int = 2  # DataLoader worker processes (0: load in the main process)
    cache: Literal["disk", "memory"] = "disk"
    cache_dir: str | None = _path()  # default: $DUALSR_CACHE_DIR or ~/.cache/dualsr/pyramids


@dataclass
class DistillConfig:
    """Distillation from a frozen teacher: MSE of the channel-averaged features entering the
    last tail conv (DRC stage 3)."""

    teacher: str = _path("")
    weight: float = 1.0


@dataclass
class LossConfig:
    """The dual regression objective: primal + dual_weight x dual (+ dual_weight x dual HR)
    (+ distillation)."""

    dual: bool = True  # False: primal loss only (the paper's ablation baseline)
    dual_weight: float = 0.1  # lambda
    dual_hr: bool = False  # also the HR-side loop L1(P(D(HR)), HR); needs dual (~2x step cost)
    distill: DistillConfig | None = None


@dataclass
class OptimConfig:
    """Adam for the primal model and, separately, for the duals; a per-step LR schedule."""

    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr: float = 1e-7  # the end of the cosine
    warmup_steps: int = 0  # linear warm-up from 0
    grad_clip: float | None = None  # max global grad norm (None: no clipping)
    skip_factor: float | None = 10.0  # skip a batch whose loss > factor x running loss
    skip_warmup: int = 20  # accepted steps before the guard is armed


@dataclass
class LoopConfig:
    """The loop itself: length, device and numerics."""

    steps: int = 1000
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["none", "auto", "bf16", "fp16"] = "none"  # auto: bf16 where it is native
    channels_last: bool = False
    compile: bool = False
    ema: float | None = None  # EMA decay of the primal weights, e.g. 0.999 (None: off)
    threads: int | None = None  # torch CPU threads per process (None: torch's default)


@dataclass
class ValConfig:
    """Validation on benchmark folders (PSNR/SSIM on Y, border = scale)."""

    folders: list[str] = _path([], data=True)
    every: int = 1000  # steps; 0 validates only at the end
    tile: int | None = None  # LR tile size for big images (None: whole image)


@dataclass
class RunConfig:
    """Where and how often things are written."""

    dir: str = _path("runs/train")
    log_every: int = 10
    save_every: int = 1000
    keep: int = 3  # step checkpoints kept in RUN_DIR/checkpoints
    progress: bool = True
    tensorboard: bool = True  # when the tensorboard package is installed


@dataclass
class TrainConfig:
    """The whole training recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    val: ValConfig = field(default_factory=ValConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (YAML/JSON-serialisable)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build and validate; ConfigError names an unknown key or a bad value."""
        cfg = from_mapping(cls, data)
        validate(cfg)
        return cfg


# ----------------------------------------------------------------------------------------------
# Loading, overrides, saving
# ----------------------------------------------------------------------------------------------
def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Defaults, overlaid with the YAML file ``path`` (or the mapping ``base``), then overrides.

    ``overrides`` are ``"key.sub=value"`` strings; values are parsed as YAML
    (``optim.lr=2e-4``, ``loss.dual=false``, ``val.folders=[a,b]``, ``model.init=null``).
    """
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data = read_yaml(path)
    for item in overrides:
        key, value = parse_override(item)
        set_key(data, key, value)
    return TrainConfig.from_dict(data)


def apply_overrides(config: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """A copy of ``config`` with ``key=value`` overrides applied (validated)."""
    return load_config(None, overrides, base=config.to_dict())


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; ConfigError for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """Split ``"optim.lr=2e-4"`` into the key and its YAML-parsed value."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. optim.lr=2e-4), got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key, value


def set_key(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``dotted == "a.b"``, creating sections as needed."""
    parts = dotted.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"cannot set {dotted}: {where} is not a section")
        else:
            child = node[part] = dict(child)
        node = child
    node[parts[-1]] = value


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    from ..fileio import atomic_write_bytes

    text = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)
    return atomic_write_bytes(path, text.encode())


def resolve_paths(config: TrainConfig, base: str | Path | None = None) -> TrainConfig:
    """A copy of ``config`` whose path fields are absolute (relative ones join ``base``/cwd)."""
    root = Path(base or Path.cwd())

    def fix(value: Any, data: bool = False) -> Any:
        if isinstance(value, str) and value:
            if data and not (root / Path(value).expanduser()).exists():  # a data set name?
                value = str(find_dataset(value) or value)
            return str((root / Path(value).expanduser()).resolve())
        if isinstance(value, list):
            return [fix(v, data) for v in value]
        return value

    def walk(obj: Any) -> Any:
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        if not dataclasses.is_dataclass(obj):
            return obj
        changes = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("path"):
                changes[f.name] = fix(value, f.metadata["data"])
            else:
                changes[f.name] = walk(value)
        return dataclasses.replace(obj, **changes)

    resolved = walk(config)
    channel_config = resolved.model.channel_config
    if isinstance(channel_config, str):
        model = dataclasses.replace(resolved.model, channel_config=fix(channel_config))
        resolved = dataclasses.replace(resolved, model=model)
    return resolved


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
def validate(cfg: TrainConfig) -> None:
    """Range checks; ConfigError names the key and the allowed values."""
    m = cfg.model
    explicit = [k for k in ("scale", "n_feats", "n_blocks") if getattr(m, k) is not None]
    if m.init and (m.preset or explicit or m.channel_config is not None):
        raise ConfigError(
            "model.init takes the architecture from the checkpoint: remove model.preset, "
            "model.scale/n_feats/n_blocks and model.channel_config"
        )
    if not m.init and not m.preset and len(explicit) < 3:
        raise ConfigError(
            "model: give model.preset (e.g. drn-s-x4), model.init (a checkpoint), or all of "
            f"model.scale, model.n_feats and model.n_blocks (found only {explicit or 'none'})"
        )
    if m.preset:
        from ..models.registry import PRESETS

        if m.preset.lower() not in PRESETS:
            raise ConfigError(
                f"model.preset {m.preset!r} is unknown; choose from: {', '.join(PRESETS)}"
            )
    _positive(cfg, "model.scale", "model.n_feats", "data.patch_size", "data.batch_size")
    _positive(cfg, "data.repeat", "train.steps", "run.log_every", "run.save_every", "run.keep")
    _positive(cfg, "optim.lr", "optim.eps")
    _non_negative(cfg, "model.n_blocks", "data.workers", "optim.min_lr", "optim.weight_decay")
    _non_negative(cfg, "optim.warmup_steps", "optim.skip_warmup", "loss.dual_weight", "val.every")
    _positive(cfg, "optim.grad_clip", "optim.skip_factor", "train.threads", "val.tile")
    if len(cfg.optim.betas) != 2 or not all(0 <= b < 1 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {cfg.optim.betas}")
    if cfg.train.ema is not None and not 0 < cfg.train.ema < 1:
        raise ConfigError(f"train.ema (the EMA decay) must be in (0, 1), got {cfg.train.ema}")
    if cfg.loss.dual_hr and not cfg.loss.dual:
        raise ConfigError(
            "loss.dual_hr needs loss.dual: true (the HR loop runs through the dual models); "
            "set loss.dual_hr: false or loss.dual: true"
        )
    if cfg.loss.distill is not None:
        if not cfg.loss.distill.teacher:
            raise ConfigError("loss.distill.teacher: give the teacher checkpoint")
        _non_negative(cfg, "loss.distill.weight")
    for i, src in enumerate(cfg.data.train):
        if not src.hr:
            raise ConfigError(f"data.train[{i}].hr: give a folder of HR images")
    if m.scale is not None and m.scale not in (2, 4, 8, 16):
        raise ConfigError(f"model.scale must be a power of two (2, 4, 8, 16), got {m.scale}")


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if cfg is None:
            return None
        cfg = getattr(cfg, part)
    return cfg


def _positive(cfg: TrainConfig, *keys: str) -> None:
    for key in keys:
        value = _get(cfg, key)
        if value is not None and not value > 0:
            raise ConfigError(f"{key} must be > 0, got {value}")


def _non_negative(cfg: TrainConfig, *keys: str) -> None:
    for key in keys:
        value = _get(cfg, key)
        if value is not None and not value >= 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")


def resume_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """The saved config of a run (``RUN_DIR/config.yaml``) with overrides, pointing at the run."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"cannot resume: {path} not found; is {run_dir} a run directory of `dualsr train`?"
        )
    data = read_yaml(path)
    set_key(data, "run.dir", str(run_dir))
    return load_config(None, overrides, base=data)
