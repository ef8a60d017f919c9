"""``dualsr search``: DRC stage 1, the channel number search, from a trained checkpoint.

Options come from built-in defaults (the paper's settings), then an optional YAML file
(``--config``, keys named like the options: ``rate: 0.3``, ``patch_size: 192``), then the command
line. The resolved options are saved in ``search.json`` with an equivalent command line.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import warnings
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError

DEFAULTS: dict[str, Any] = {
    "model": None,
    "data": None,
    "rate": None,
    "output": None,
    "budget_params": None,
    "budget_macs": None,
    "input_size": "96x96",
    "tolerance": 0.02,
    "order": "second",
    "epochs": 100.0,
    "steps": None,
    "ratios": "0.5,0.6,0.7,0.8,0.9,1.0",
    "multiple": 4,
    "lr_weights": 1e-4,
    "lr_alpha": 3e-4,
    "alpha_weight_decay": 1e-3,
    "dual_weight": 0.1,
    "patch_size": 192,
    "batch_size": 16,
    "seed": 0,
    "cache": "disk",
    "cache_dir": None,
    "device": "auto",
    "save_weights": False,
}
REQUIRED = ("model", "data", "rate", "output")


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="search the channel numbers of a DRN (DRC stage 1)",
        description="Differentiable channel number search (DRC stage 1): soft width masks over "
        "L1-ranked channels, architecture logits trained by the DARTS bilevel scheme on the dual "
        "regression loss (weights on one half of the images, logits on the other). Writes "
        "OUT/channel_config.txt (one integer a line, the official format) and OUT/search.json. "
        "With --budget-params/--budget-macs the configuration meets that budget within "
        "--tolerance. Defaults are the paper's; --config FILE.yaml overrides them and the "
        "command line overrides the file.",
    )
    p.add_argument("--config", type=Path, default=None, metavar="YAML", help="options file")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", "-m", help="trained checkpoint (.safetensors or official .pt)")
    g.add_argument(
        "--data",
        nargs="+",
        metavar="DIR",
        help="folders of HR training images, split alternately into a weight half and an "
        "architecture half",
    )
    g.add_argument("-o", "--output", metavar="OUT_DIR", help="where the results are written")
    g.add_argument(
        "--save-weights",
        action="store_true",
        default=None,
        help="also write OUT/searched.safetensors: the full-width weights trained during the "
        "search, with their duals",
    )
    g = p.add_argument_group("target")
    g.add_argument(
        "--rate",
        help="pruning rate r in (0, 1) that sets the candidate widths "
        "int(C * (1 - r) * k), e.g. 0.3 for DRN-S30",
    )
    b = g.add_mutually_exclusive_group()
    b.add_argument(
        "--budget-params",
        metavar="N",
        help="make the final configuration have N parameters (within --tolerance); "
        "suffixes K, M, G allowed, e.g. 3.1M",
    )
    b.add_argument(
        "--budget-macs",
        metavar="N",
        help="make the final configuration cost N multiply-adds at --input-size, e.g. 72G",
    )
    g.add_argument(
        "--input-size",
        metavar="HxW",
        help="LR input size for MACs (default: 96x96, the size of the published figures)",
    )
    g.add_argument("--tolerance", type=float, help="relative budget tolerance (default: 0.02)")
    g = p.add_argument_group("search")
    g.add_argument(
        "--order",
        choices=["second", "first"],
        help="DARTS second-order (unrolled) or first-order logit gradient (default: second)",
    )
    g.add_argument("--epochs", type=float, help="passes over the weight half (default: 100)")
    g.add_argument("--steps", type=int, help="number of search steps (overrides --epochs)")
    g.add_argument("--ratios", help="candidate ratios k (default: 0.5,0.6,0.7,0.8,0.9,1.0)")
    g.add_argument("--multiple", type=int, help="widths are multiples of this (default: 4)")
    g.add_argument("--lr-weights", type=float, help="Adam lr of the weights, cosine (1e-4)")
    g.add_argument("--lr-alpha", type=float, help="Adam lr of the logits (default: 3e-4)")
    g.add_argument("--alpha-weight-decay", type=float, help="logit weight decay (1e-3)")
    g.add_argument("--dual-weight", type=float, help="lambda of the dual loss (default: 0.1)")
    g.add_argument("--patch-size", type=int, help="HR patch size (default: 192)")
    g.add_argument("--batch-size", type=int, help="batch size (default: 16)")
    g.add_argument("--seed", type=int, help="random seed (default: 0)")
    g.add_argument(
        "--cache",
        choices=["disk", "memory"],
        help="keep the image pyramids in a disk cache shared with training (default) or in memory",
    )
    g.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="the disk cache (default: $DUALSR_CACHE_DIR or ~/.cache/dualsr/pyramids)",
    )
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: cuda when available")
    return p


# ----------------------------------------------------------------------------------------------
# Option parsing
# ----------------------------------------------------------------------------------------------
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


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


def parse_hw(value: str | list | tuple, option: str = "--input-size") -> tuple[int, int]:
    """``96x96`` (H x W), ``96`` or ``[96, 96]`` as ``(H, W)``."""
    if isinstance(value, list | tuple) and len(value) == 2:
        h, w = value
    else:
        m = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+))?\s*", str(value), re.I)
        if not m:
            raise ConfigError(f"{option}: expected HxW such as 96x96, got {value!r}")
        h, w = m.group(1), m.group(2) or m.group(1)
    hw = (int(h), int(w))
    if min(hw) < 1:
        raise ConfigError(f"{option}: sizes must be positive, got {value!r}")
    return hw


def parse_ratios(value: str | list | tuple) -> tuple[float, ...]:
    """``0.5,0.6,...`` or a list as a tuple of floats."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    try:
        ratios = tuple(float(x) for x in items if str(x).strip())
    except ValueError:
        raise ConfigError(
            f"--ratios: expected numbers such as 0.5,0.6,1.0, got {value!r}"
        ) from None
    if not ratios or any(not 0 < r <= 1 for r in ratios):
        raise ConfigError(f"--ratios must be numbers in (0, 1], got {value!r}")
    return ratios


def load_yaml_options(path: Path) -> dict[str, Any]:
    """The options in a YAML file (keys like the long options, ``-`` or ``_``)."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option: value")
    options = {str(k).replace("-", "_"): v for k, v in doc.items()}
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"--config {path}: unknown option(s) {unknown}; valid: {', '.join(sorted(DEFAULTS))}"
        )
    return options


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults, then the YAML file, then the command line; values converted and checked."""
    from ..compression.search import check_rate

    file_opts = load_yaml_options(args.config) if args.config else {}
    opts = {}
    for key, default in DEFAULTS.items():
        cli = getattr(args, key, None)
        opts[key] = cli if cli is not None else file_opts.get(key, default)
    missing = [k for k in REQUIRED if opts[k] in (None, [], "")]
    if missing:
        flags = ", ".join("-o/--output" if k == "output" else f"--{k}" for k in missing)
        raise ConfigError(f"missing {flags} (give them on the command line or in --config)")
    if opts["budget_params"] is not None and opts["budget_macs"] is not None:
        raise ConfigError("give only one of --budget-params and --budget-macs")
    if isinstance(opts["data"], str | Path):
        opts["data"] = [opts["data"]]
    opts["data"] = [str(d) for d in opts["data"]]
    opts["rate"] = check_rate(opts["rate"])
    opts["input_size"] = list(parse_hw(opts["input_size"]))
    opts["ratios"] = list(parse_ratios(opts["ratios"]))
    for key in ("budget_params", "budget_macs"):
        if opts[key] is not None:
            opts[key] = parse_count(opts[key], f"--{key.replace('_', '-')}")
    for key, kind in (
        ("tolerance", float),
        ("epochs", float),
        ("multiple", int),
        ("lr_weights", float),
        ("lr_alpha", float),
        ("alpha_weight_decay", float),
        ("dual_weight", float),
        ("patch_size", int),
        ("batch_size", int),
        ("seed", int),
    ):
        try:
            opts[key] = kind(opts[key])
        except (TypeError, ValueError):
            raise ConfigError(f"--{key.replace('_', '-')}: not a number: {opts[key]!r}") from None
    if opts["steps"] is not None:
        opts["steps"] = int(opts["steps"])
        if opts["steps"] < 0:
            raise ConfigError(f"--steps must be >= 0, got {opts['steps']}")
    elif opts["epochs"] <= 0:
        raise ConfigError(f"--epochs must be positive, got {opts['epochs']}")
    if opts["order"] not in ("first", "second"):
        raise ConfigError(f"--order must be 'first' or 'second', got {opts['order']!r}")
    if opts["cache"] not in ("disk", "memory"):
        raise ConfigError(f"--cache must be disk or memory, got {opts['cache']!r}")
    if opts["device"] not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {opts['device']!r}")
    opts["output"] = str(opts["output"])
    opts["model"] = str(opts["model"])
    opts["save_weights"] = bool(opts["save_weights"])
    return opts


def equivalent_command(opts: dict[str, Any]) -> str:
    """A ``dualsr search`` command line that reproduces ``opts``."""
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
        elif key == "ratios":
            parts += [flag, ",".join(f"{r:g}" for r in value)]
        else:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(parts)


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
def load_search_model(spec: str):  # noqa: ANN201
    """``(model, duals, source)`` from a checkpoint path or a preset name."""
    from ..checkpoint import load_checkpoint
    from ..models.registry import PRESETS, create_model
    from ..pretrained import shipped_weights

    path = Path(spec).expanduser()
    if path.is_file():
        ckpt = load_checkpoint(path)
        return ckpt.model, ckpt.duals, str(path)
    key = spec.lower()
    if key in PRESETS:
        weights = shipped_weights(key)
        if weights is not None:
            ckpt = load_checkpoint(weights)
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


def run(args: argparse.Namespace) -> int:
    """Run the search and write the channel configuration and the report."""
    import torch
    from tqdm import tqdm

    from ..checkpoint import save_model
    from ..compression.budget import Budget, check_budget
    from ..compression.search import format_channel_config, make_search_data, search_channels
    from ..data.dataset import default_cache_dir
    from ..fileio import atomic_write_bytes
    from ..losses import DualRegressionLoss

    opts = resolve_options(args)
    hw = tuple(opts["input_size"])
    budget = None
    if opts["budget_params"] is not None:
        budget = Budget(params=opts["budget_params"], input_hw=hw, tolerance=opts["tolerance"])
    elif opts["budget_macs"] is not None:
        budget = Budget(macs=opts["budget_macs"], input_hw=hw, tolerance=opts["tolerance"])

    device = opts["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available; use --device cpu")
    model, duals, source = load_search_model(opts["model"])
    if budget is not None:  # fail now, not after loading the data
        check_budget(model.arch, budget, opts["multiple"], hw)  # type: ignore[arg-type]
    if duals is None:
        print("note: the checkpoint has no dual models; fresh duals are trained during the search")
    cache_dir = None
    if opts["cache"] == "disk":
        cache_dir = Path(opts["cache_dir"]) if opts["cache_dir"] else default_cache_dir()
    data = make_search_data(
        opts["data"], model.scale, opts["patch_size"], opts["batch_size"], opts["seed"], cache_dir
    )
    torch.manual_seed(opts["seed"])
    model.to(device)
    if duals is not None:
        duals.to(device)
    steps = opts["steps"]
    if steps is None:
        steps = math.ceil(opts["epochs"] * data.steps_per_epoch)
    print(
        f"searching {source} (x{model.scale}): {len(data.train_files)} weight images, "
        f"{len(data.val_files)} architecture images, {steps} steps ({opts['order']} order) "
        f"on {device}"
    )
    bar = tqdm(total=steps, unit="step", desc="search")

    def progress(rec: dict) -> None:
        bar.update(1)
        bar.set_postfix(train=f"{rec['train_loss']:.3f}", val=f"{rec['val_loss']:.3f}")

    try:
        result = search_channels(
            model,
            duals,
            data.train,
            data.val,
            target_rate=opts["rate"],
            ratios=tuple(opts["ratios"]),
            multiple=opts["multiple"],
            order=opts["order"],
            steps=steps,
            weight_lr=opts["lr_weights"],
            alpha_lr=opts["lr_alpha"],
            alpha_weight_decay=opts["alpha_weight_decay"],
            budget=budget,
            input_hw=hw,  # type: ignore[arg-type]
            loss=DualRegressionLoss(opts["dual_weight"]),
            seed=opts["seed"],
            progress=progress,
        )
    finally:
        bar.close()

    out = Path(opts["output"])
    config_path = atomic_write_bytes(
        out / "channel_config.txt", format_channel_config(result.channel_config).encode()
    )
    weights_path = None
    if opts["save_weights"] and result.model is not None:
        weights_path = save_model(
            out / "searched.safetensors",
            result.model,
            result.duals,
            metadata={"stage": "search", "source": source, "command": equivalent_command(opts)},
        )
    report = {
        "command": equivalent_command(opts),
        "options": opts,
        "model": {"source": source, "arch": model.arch.to_dict()},
        "data": {
            "folders": opts["data"],
            "weight_images": len(data.train_files),
            "architecture_images": len(data.val_files),
            "steps_per_epoch": data.steps_per_epoch,
        },
        **result.to_dict(),
        "files": {
            "channel_config": str(config_path),
            "searched_weights": str(weights_path) if weights_path else None,
        },
    }
    atomic_write_bytes(out / "search.json", json.dumps(report, indent=2).encode())
    print(
        f"channel configuration ({len(result.channel_config)} layers): {config_path}\n"
        f"params: {result.params:,} ({1 - result.params / result.full_params:.1%} fewer than "
        f"{result.full_params:,}); MACs at {hw[0]}x{hw[1]}: {result.macs / 1e9:.2f} G "
        f"({1 - result.macs / result.full_macs:.1%} fewer)"
    )
    if result.budget_fit is not None:
        print(
            f"budget: {result.budget_fit.target:,} {result.budget_fit.kind}, met within "
            f"{result.budget_fit.relative_error:+.2%}"
        )
    print(f"report: {out / 'search.json'} ({result.seconds:.0f} s)")
    return 0
