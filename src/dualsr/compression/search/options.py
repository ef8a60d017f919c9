"""Options of a channel number search (``dualsr search``): defaults, a YAML file, overrides.

The bottom of :mod:`dualsr.compression.search`: this module owns the search's defaults (the
candidate ratios, the logits' Adam betas and schedules, the gradient clip, the selections, the
learning-rate floor) and imports no other module of :mod:`dualsr.compression.search`.

:class:`SearchOptions` holds every option of a search run, with the paper's settings as
defaults. Values are converted and checked by :meth:`SearchOptions.from_dict`: the shared
converter :func:`dualsr.options.from_mapping` (each field's parser or check is declared on the
field), then the checks across options. It accepts the forms of the command line and of YAML
files (``budget_params: 3.1M``, ``input_size: 96x96`` or ``[96, 96]``, ``ratios: 0.5,0.6`` or
a list); an unknown key or a bad value raises
:class:`~dualsr.errors.ConfigError` naming the option. Keys are the long options of
``dualsr search`` (``patch_size`` or ``patch-size``), so the messages name them as options
(``--patch-size``).

:func:`load_search_options` overlays the built-in defaults with a YAML file and then with
overrides (``None`` values are ignored, so an ``argparse`` namespace can be passed as is).

    opts = load_search_options("configs/search-drn-s30-x4.yaml",
                               {"model": "DRNS4x.pt", "data": ["DIV2K_train_HR"], "output": "out"})
    opts = apply_overrides(opts, {"order": "first"})
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...errors import ConfigError
from ...options import Style, from_mapping, parse_hw, to_dict
from ..budget import DEFAULT_INPUT_HW, DEFAULT_TOLERANCE, Budget

#: The candidate ratios ``k`` of the paper: a layer's candidates are ``int(C (1 - r) k)``.
PAPER_RATIOS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: The release's Adam betas of the logits (DRN/option.py beta1, beta2).
ALPHA_BETAS = (0.9, 0.999)
#: The logits' learning-rate schedules.
ALPHA_SCHEDULES = ("cosine", "constant")
#: The release's w_grad_clip: max gradient norm of the weight step.
GRAD_CLIP = 5.0
#: The release's eta_min: the floor of the cosine learning rates of the weights and the logits.
LR_MIN = 1e-7
#: How the final configuration is chosen.
SELECTIONS = ("argmax", "budget")
#: What a run needs besides the defaults (checked with ``complete=True``).
REQUIRED = ("model", "data", "rate", "output")
#: Checkpoint interval: every 5 minutes (a step count such as 50 is also accepted).
DEFAULT_SAVE_EVERY = "5m"
#: Options that ``--resume`` may change: they do not change the search's numbers (``device``
#: may change the last bits).
RESUME_MAY_CHANGE = ("output", "cache", "cache_dir", "device", "save_weights", "save_every")
#: What a checkpoint written before these options existed meant by them (its search ran that
#: way): ``--resume`` of such a checkpoint continues with these values, not today's defaults.
LEGACY_VALUES: dict[str, Any] = {
    "alpha_betas": [0.5, 0.999],
    "alpha_schedule": "constant",
    "grad_clip": 0.0,
    "val": None,
}


def check_rate(rate: float) -> float:
    """``rate`` as a float in (0, 1); ConfigError otherwise."""
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise ConfigError(f"the pruning rate must be a number in (0, 1), got {rate!r}") from None
    if not 0.0 < r < 1.0:
        raise ConfigError(
            f"the pruning rate must be in (0, 1) (the fraction of channels to remove, e.g. 0.3 "
            f"for DRN-S30), got {rate}"
        )
    return r


# ----------------------------------------------------------------------------------------------
# Value parsers (command-line strings or YAML values)
# ----------------------------------------------------------------------------------------------
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(s|sec|m|min|h)\s*", re.I)


def parse_count(value: str | float | int, option: str) -> int:
    """``3116637``, ``3,116,637``, ``3.1M``, ``72G`` or ``1e6`` as a positive integer."""
    if isinstance(value, int | float):
        number = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9][0-9_,]*\.?[0-9]*(?:e[0-9]+)?)\s*([kmg]?)\s*", str(value), re.I)
        if not m:
            raise ConfigError(
                f"{option}: expected a count such as 3116637, 3.1M or 72G, got {value!r}"
            )
        number = float(m.group(1).replace(",", "").replace("_", "")) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(number) or number < 1:
        raise ConfigError(f"{option} must be a positive count, got {value!r}")
    return int(round(number))


def parse_save_every(value: str | int | float, option: str = "--save-every") -> int | str:
    """``--save-every``: a number of steps (``50``) or a duration (``30s``, ``5m``, ``1h``).

    Returns the steps as an int, or the duration as a normalised string; 0 saves only at the end,
    on a stop request and after an error. ConfigError for anything else.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{option}: expected steps such as 50 or a duration such as 5m")
    text = str(value).strip()
    if isinstance(value, int) or text.isdigit():
        steps = int(text)
        if steps < 0:
            raise ConfigError(f"{option} must be >= 0 steps, got {value!r}")
        return steps
    m = _DURATION.fullmatch(text)
    if not m or not math.isfinite(float(m.group(1))) or float(m.group(1)) <= 0:
        raise ConfigError(
            f"{option}: expected a number of steps such as 50 or a duration such as 30s, 5m or "
            f"1h, got {value!r}"
        )
    return f"{float(m.group(1)):g}{m.group(2).lower()[0]}"


def parse_betas(value: str | list | tuple, option: str = "--alpha-betas") -> tuple[float, float]:
    """``0.9,0.999`` or ``[0.9, 0.999]`` as Adam's ``(beta1, beta2)``, each in [0, 1)."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    try:
        betas = tuple(float(x) for x in items if str(x).strip())
    except (TypeError, ValueError):
        betas = ()
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ConfigError(
            f"{option}: expected two numbers in [0, 1) such as 0.9,0.999, got {value!r}"
        )
    return betas[0], betas[1]


def parse_grad_clip(value: str | float | None, option: str = "--grad-clip") -> float:
    """A gradient-norm limit: a positive number, or 0 / ``none`` / ``off`` for no clipping (0)."""
    if value is None or str(value).strip().lower() in ("none", "off", "no", "false"):
        return 0.0
    if isinstance(value, bool):
        raise ConfigError(f"{option}: expected a number such as 5 or none, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ConfigError(
            f"{option}: expected a positive number such as 5, or 0/none for no clipping, "
            f"got {value!r}"
        )
    return number


def parse_ratios(value: str | list | tuple, option: str = "--ratios") -> tuple[float, ...]:
    """``0.5,0.6,...`` or a list as a tuple of floats."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    try:
        ratios = tuple(float(x) for x in items if str(x).strip())
    except ValueError:
        raise ConfigError(
            f"{option}: expected numbers such as 0.5,0.6,1.0, got {value!r}"
        ) from None
    if not ratios or any(not 0 < r <= 1 for r in ratios):
        raise ConfigError(f"{option} must be numbers in (0, 1], got {value!r}")
    return ratios


def parse_folders(value: str | Path | list | tuple, option: str = "--data") -> list[str]:
    """A folder, or a list of folders, as a list of strings."""
    if isinstance(value, str | Path):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{option}: expected a folder or a list of folders, got {value!r}")
    return [str(d) for d in value]


def _check_steps(steps: int, option: str) -> None:
    if steps < 1:
        raise ConfigError(
            f"{option} must be at least 1, got {steps} (no step searches nothing: the result "
            "would be the starting point)"
        )


def _flag(key: str) -> str:
    return "-o/--output" if key == "output" else f"--{key.replace('_', '-')}"


def _unknown(unknown: Sequence[str], names: Sequence[str], where: str = "") -> str:
    return f"{where}unknown option(s) {sorted(unknown)}; valid: {', '.join(sorted(names))}"


def _one_of(choices: Sequence[str]) -> str:
    return f"{', '.join(choices[:-1])} or {choices[-1]}"


#: How conversion errors name the options: as the flags of ``dualsr search``.
OPTIONS = Style(
    name=_flag,
    expected="{key}: not {what}: {value!r}",
    choice="{key} must be {choices}, got {value!r}",
    words={int: "a number", float: "a number", bool: "true or false", str: "a string"},
    join=_one_of,
    unknown=_unknown,
)


def _as_list(parser: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """Field metadata: ``list(parser(value, option))`` converts the value."""
    return {"parse": lambda value, option: list(parser(value, option, **kwargs))}


@dataclass
class SearchOptions:
    """Every option of a channel number search; the defaults are the paper's settings.

    Field order is the order of ``search.json``'s ``options`` and of :meth:`equivalent_command`.
    """

    model: str | None = None  # trained checkpoint (.safetensors or official .pt), or a preset
    data: list[str] | None = field(default=None, metadata={"parse": parse_folders})  # HR images
    rate: float | None = field(default=None, metadata={"parse": lambda v, _: check_rate(v)})
    output: str | None = None  # output folder
    budget_params: int | None = field(default=None, metadata={"parse": parse_count})
    budget_macs: int | None = field(default=None, metadata={"parse": parse_count})
    input_size: list[int] = field(  # [H, W]
        default_factory=lambda: list(DEFAULT_INPUT_HW), metadata=_as_list(parse_hw, square=True)
    )
    tolerance: float = DEFAULT_TOLERANCE
    order: Literal["second", "first"] = field(
        default="second", metadata={"choices": "'first' or 'second'"}
    )
    epochs: float = 100.0
    steps: int | None = field(default=None, metadata={"check": _check_steps})  # overrides epochs
    ratios: list[float] = field(
        default_factory=lambda: list(PAPER_RATIOS), metadata=_as_list(parse_ratios)
    )
    multiple: int = 4
    lr_weights: float = 1e-4
    lr_alpha: float = 3e-4
    alpha_betas: list[float] = field(  # Adam of alpha
        default_factory=lambda: list(ALPHA_BETAS), metadata=_as_list(parse_betas)
    )
    alpha_schedule: Literal["cosine", "constant"] = "cosine"  # the logits' lr: like the weights'
    alpha_weight_decay: float = 1e-3
    grad_clip: float = field(  # max gradient norm of the weight step; 0: no clipping
        default=GRAD_CLIP, metadata={"parse": parse_grad_clip}
    )
    select: Literal["argmax", "budget"] = "argmax"  # final configuration: argmax or budget fit
    val: str | None = None  # folder of HR validation images (best epoch by PSNR), e.g. Set5
    dual_weight: float = 0.1
    patch_size: int = 192
    batch_size: int = 16
    seed: int = 0
    cache: Literal["disk", "memory"] = "disk"
    cache_dir: str | None = None  # default: $DUALSR_CACHE_DIR or ~/.cache/dualsr/pyramids
    device: Literal["auto", "cpu", "cuda"] = "auto"
    save_weights: bool = False
    save_every: int | str = field(  # steps (50) or a duration (30s, 5m, 1h)
        default=DEFAULT_SAVE_EVERY, metadata={"parse": parse_save_every}
    )

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML/JSON-serialisable), in field order."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, complete: bool = False) -> SearchOptions:
        """Defaults overlaid with ``data``, converted and checked.

        ``complete=True`` also requires what a run needs (model, data, rate and output).
        ConfigError names an unknown key or a bad value.
        """
        options = from_mapping(cls, _normalise_keys(data), style=OPTIONS)
        options._check(complete)
        return options

    def _check(self, complete: bool) -> None:
        """The checks across options (those of one option are on its field)."""
        if complete:
            missing = [k for k in REQUIRED if getattr(self, k) in (None, [], "")]
            if missing:
                flags = ", ".join(_flag(k) for k in missing)
                raise ConfigError(f"missing {flags} (give them on the command line or in --config)")
        if self.budget_params is not None and self.budget_macs is not None:
            raise ConfigError("give only one of --budget-params and --budget-macs")
        if self.steps is None and self.epochs <= 0:
            raise ConfigError(f"--epochs must be positive, got {self.epochs}")
        has_budget = self.budget_params is not None or self.budget_macs is not None
        if self.select == "budget" and not has_budget:
            raise ConfigError("--select budget needs --budget-params or --budget-macs")
        if self.select == "argmax" and has_budget:
            flag = "--budget-params" if self.budget_params is not None else "--budget-macs"
            raise ConfigError(
                f"{flag} is not used by --select argmax (the default, the paper's final step: "
                f"the most likely width of every layer, whatever its size); add --select budget "
                f"to fit the configuration to {flag}, or drop {flag}"
            )

    @property
    def input_hw(self) -> tuple[int, int]:
        """``input_size`` as ``(H, W)``."""
        return int(self.input_size[0]), int(self.input_size[1])

    def budget(self) -> Budget | None:
        """The parameter or multiply-add budget, or None without one."""
        if self.budget_params is not None:
            return Budget(
                params=self.budget_params, input_hw=self.input_hw, tolerance=self.tolerance
            )
        if self.budget_macs is not None:
            return Budget(macs=self.budget_macs, input_hw=self.input_hw, tolerance=self.tolerance)
        return None

    def total_steps(self, steps_per_epoch: int) -> int:
        """``steps``, or ``epochs`` passes of ``steps_per_epoch`` (rounded up)."""
        if self.steps is not None:
            return self.steps
        return math.ceil(self.epochs * steps_per_epoch)

    def resolve_device(self) -> str:
        """``cpu`` or ``cuda`` (``auto``: cuda when available); ConfigError if CUDA is missing."""
        import torch

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda: CUDA is not available; use --device cpu")
        return device

    def cache_path(self) -> Path | None:
        """The pyramid cache folder (``cache: disk``), or None to keep the pyramids in memory."""
        if self.cache != "disk":
            return None
        from ...data.dataset import default_cache_dir

        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()

    def equivalent_command(self) -> str:
        """A ``dualsr search`` command line that reproduces these options."""
        opts = self.to_dict()
        parts = ["dualsr", "search"]
        for key, value in opts.items():
            if value is None or value is False or (key == "epochs" and opts["steps"] is not None):
                continue
            flag = "-o" if key == "output" else f"--{key.replace('_', '-')}"
            if value is True:
                parts.append(flag)
            elif key == "data":
                parts += [flag, *value]
            elif key == "input_size":
                parts += [flag, f"{value[0]}x{value[1]}"]
            elif key in ("ratios", "alpha_betas"):
                parts += [flag, ",".join(f"{r:g}" for r in value)]
            else:
                parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return shlex.join(parts)


def option_names() -> list[str]:
    """The option keys, in field order."""
    return [f.name for f in dataclasses.fields(SearchOptions)]


# ----------------------------------------------------------------------------------------------
# Loading and overrides
# ----------------------------------------------------------------------------------------------
def load_search_options(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    complete: bool = False,
) -> SearchOptions:
    """Defaults, then the YAML file ``path`` (if any), then ``overrides`` (None values skipped).

    ``complete=True`` requires model, data, rate and output (what a run needs).
    """
    data = read_search_yaml(path) if path is not None else {}
    data.update(_given(overrides))
    return SearchOptions.from_dict(data, complete=complete)


def apply_overrides(
    options: SearchOptions, overrides: Mapping[str, Any], *, complete: bool = False
) -> SearchOptions:
    """A copy of ``options`` with ``overrides`` applied (None values skipped), checked again."""
    return SearchOptions.from_dict({**options.to_dict(), **_given(overrides)}, complete=complete)


def resume_options(
    saved: Mapping[str, Any],
    resume_dir: str | Path,
    config: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SearchOptions:
    """The options of a resumed search: those saved in its checkpoint, checked against any given.

    ``config`` (a YAML file) and ``overrides`` (None values skipped) may repeat the saved values
    and may change only :data:`RESUME_MAY_CHANGE`; any other difference is a ConfigError naming
    the options. ``output`` becomes ``resume_dir`` (unless the saved one is the same folder).
    """
    saved = dict(saved)
    for key, value in LEGACY_VALUES.items():
        saved.setdefault(key, value)
    if "select" not in saved:  # before --select: a budget was always fitted
        given_budget = saved.get("budget_params") is not None or saved.get("budget_macs")
        saved["select"] = "budget" if given_budget else "argmax"
    try:
        base = SearchOptions.from_dict(saved, complete=True)
    except ConfigError as exc:
        raise ConfigError(f"--resume {resume_dir}: the saved options are invalid ({exc})") from None
    given = read_search_yaml(config) if config is not None else {}
    given.update(_given(overrides))
    folder = Path(resume_dir)
    output = given.pop("output", None)
    if output is not None and not _same_path(output, folder):
        raise ConfigError(
            f"-o/--output {output} differs from --resume {folder}: the resumed search writes "
            "into the folder it resumes; drop -o"
        )
    new = apply_overrides(base, given, complete=True)
    changed = [
        key
        for key in option_names()
        if key not in RESUME_MAY_CHANGE
        and not _same_option(key, getattr(new, key), getattr(base, key))
    ]
    if changed:
        details = ", ".join(
            f"{_flag(k)} {_show(getattr(new, k))} (saved: {_show(getattr(base, k))})"
            for k in changed
        )
        raise ConfigError(
            f"--resume continues the search in {folder} with its saved options, but {details} "
            "would change the search; drop "
            + ("it" if len(changed) == 1 else "them")
            + ", or start a new search with another -o"
        )
    # the saved values as saved (a path may be spelled differently), the others as given
    kept = {k: getattr(new, k) for k in RESUME_MAY_CHANGE if k != "output"}
    output = base.output if _same_path(base.output, folder) else str(folder)
    return dataclasses.replace(base, output=output, **kept)


def _same_path(a: str | Path | None, b: str | Path | None) -> bool:
    if a is None or b is None:
        return a is b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _same_option(key: str, a: Any, b: Any) -> bool:
    if key == "model" and a is not None and b is not None:
        return a == b or _same_path(a, b)
    if key == "val" and a is not None and b is not None:
        return _same_path(a, b)
    if key == "data" and a is not None and b is not None:
        return len(a) == len(b) and all(_same_path(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _show(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def read_search_yaml(path: str | Path) -> dict[str, Any]:
    """The options in a YAML file (keys like the long options, ``-`` or ``_``), unconverted.

    ConfigError for a missing or malformed file or an unknown key.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option: value")
    options = _normalise_keys(doc)
    _check_keys(options, f"--config {path}: ")
    return options


def _normalise_keys(data: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _given(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in _normalise_keys(overrides or {}).items() if v is not None}


def _check_keys(options: Mapping[str, Any], where: str) -> None:
    unknown = set(options) - set(option_names())
    if unknown:
        raise ConfigError(_unknown(list(unknown), option_names(), where))
