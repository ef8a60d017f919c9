"""``dualsr prune``: prune a trained DRN to a channel configuration (DRC stage 2) or a baseline."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from ..checkpoint import load_checkpoint, load_official_duals, save_model
from ..compression.criteria import (
    CP_DESIGNS,
    CRITERIA,
    DEFAULT_CP_DESIGN,
    DEFAULT_THINET_ERROR,
    DEFAULT_THINET_TARGETS,
    THINET_ERRORS,
    THINET_TARGETS,
    check_choice,
)
from ..compression.prune import (
    DEFAULT_CHANNELS_PER_PASS,
    DEFAULT_FEATURE_SAMPLES,
    DEFAULT_GREEDY,
    LOCAL_LR,
    LayerReport,
    PruneOptions,
    prune_model,
)
from ..compression.pruning.scores import DEFAULT_SCORE, GRADIENT_SCORES
from ..compression.pruning.widths import DEFAULT_RATE_ROUNDING, RATE_ROUNDINGS, rate_config
from ..compression.pruning_data import CROPS, DEFAULT_CROPS, CropSource
from ..data.locate import add_data_root_option, resolve_data_dirs
from ..errors import ConfigError
from ..models.drn import count_parameters
from ..models.registry import read_channel_config
from ..pretrained import resolve_checkpoint_path
from ..profiling import count_macs
from .common import check_output_file, save_or_rescue

MAC_INPUT = (96, 96)  # the LR input size of the papers' FLOP figures


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    methods = "\n".join(f"  {c.name:<8} {c.description}" for c in CRITERIA.values())
    p = sub.add_parser(
        name,
        help="prune a trained model to a channel configuration (DRC stage 2, or a baseline)",
        description="Prune a trained DRN layer by layer to a channel configuration (one width "
        "per searched layer, e.g. from `dualsr search`) and save the physically smaller model. "
        f"Methods:\n{methods}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        "-m",
        required=True,
        help="trained checkpoint (.safetensors / .pt), a preset with shipped weights, or a "
        "released model's name",
    )
    p.add_argument(
        "--duals",
        nargs="+",
        metavar="PT",
        help="official dual-model checkpoints, when --model is an official .pt without them",
    )
    p.add_argument("--output", "-o", required=True, type=Path, help="pruned .safetensors to write")
    g = p.add_argument_group("configuration (one of)")
    which = g.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", type=Path, help="channel configuration file (one width a line)")
    which.add_argument(
        "--rate",
        type=float,
        help="fraction of channels removed in every searched layer (the uniform configuration: "
        "a layer of width C keeps C - floor(C * RATE), as the released code; see --rate-rounding)",
    )
    g.add_argument(
        "--rate-rounding",
        default=DEFAULT_RATE_ROUNDING,
        choices=list(RATE_ROUNDINGS),
        help="with --rate: 'floor' keeps C - floor(C * RATE) (released code); 'multiple4' keeps "
        f"C * (1 - RATE) rounded to a multiple of 4 in [4, C] (default: {DEFAULT_RATE_ROUNDING})",
    )
    g = p.add_argument_group("method")
    g.add_argument(
        "--method", default="drc", metavar="NAME", help=f"{', '.join(CRITERIA)} (default: drc)"
    )
    g.add_argument(
        "--gamma", type=float, default=1.0, help="weight of the SR loss vs the MSE (default 1)"
    )
    g.add_argument(
        "--dual-weight", type=float, default=0.1, help="lambda of the dual term (default 0.1)"
    )
    g.add_argument(
        "--greedy",
        default=DEFAULT_GREEDY,
        choices=["moments", "passes"],
        help="drc/dcp: 'moments' computes the reconstruction gradient exactly from per-layer "
        "statistics (about 2 full passes per layer); 'passes' is the paper's loop, two full "
        f"passes per selection step (default: {DEFAULT_GREEDY})",
    )
    g.add_argument(
        "--score",
        default=DEFAULT_SCORE,
        choices=list(GRADIENT_SCORES),
        help="drc/dcp: a channel's score from its gradient slice g (O x k x k): 'official' = "
        "sum over output channels of ||g[o]|| (released code), 'dcp-paper' = ||g|| (Frobenius, "
        f"the DCP paper) (default: {DEFAULT_SCORE})",
    )
    g.add_argument(
        "--local-bias",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="drc/dcp/thinet: the local SGD also updates the consumer conv's bias, as the "
        "released code (default: on; --no-local-bias keeps the pretrained bias)",
    )
    g.add_argument(
        "--channels-per-pass",
        type=int,
        default=DEFAULT_CHANNELS_PER_PASS,
        metavar="K",
        help="channels selected per step; --greedy passes --channels-per-pass 1 is the paper's "
        f"loop (default {DEFAULT_CHANNELS_PER_PASS})",
    )
    g.add_argument(
        "--local-epochs",
        type=int,
        default=1,
        help="local SGD epochs per selection step (drc/dcp), or after the selection on the SR "
        "loss alone (thinet, as the released code; 0: none) (default 1)",
    )
    g.add_argument(
        "--refresh",
        type=int,
        default=None,
        metavar="N",
        help="--greedy moments: steps between real SR-gradient passes (default: once per layer)",
    )
    g.add_argument(
        "--final-epochs",
        type=int,
        default=1,
        help="--greedy moments: real local SGD epochs at the end of each layer (default 1)",
    )
    g.add_argument("--local-lr", type=float, default=LOCAL_LR, help=f"(default {LOCAL_LR:g})")
    g.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_FEATURE_SAMPLES,
        help=f"positions sampled per layer by thinet and cp (default {DEFAULT_FEATURE_SAMPLES})",
    )
    g.add_argument(
        "--thinet-error",
        default=DEFAULT_THINET_ERROR,
        metavar="|".join(THINET_ERRORS),
        help="thinet: the greedy removes the channel minimising the summed change of the "
        "sampled outputs in absolute value ('abs', released code) or squared ('squared') "
        f"(default: {DEFAULT_THINET_ERROR})",
    )
    g.add_argument(
        "--thinet-targets",
        default=DEFAULT_THINET_TARGETS,
        metavar="|".join(THINET_TARGETS),
        help="thinet: reconstruct the layer's output in the network being 'pruned' (released "
        f"code) or in the 'original' model (default: {DEFAULT_THINET_TARGETS})",
    )
    g.add_argument(
        "--cp-design",
        default=DEFAULT_CP_DESIGN,
        metavar="|".join(CP_DESIGNS),
        help="cp: the LASSO regresses 'all' output channels at each sampled position (released "
        f"code) or one 'sampled' output channel (default: {DEFAULT_CP_DESIGN})",
    )
    g = p.add_argument_group("pruning data (not needed by l1 and uniform)")
    g.add_argument("--data", nargs="+", metavar="DIR", help="folders of HR images, or set names")
    add_data_root_option(g)
    g.add_argument(
        "--images",
        type=int,
        default=160,
        help="HR patches, one random crop per image (images reused when there are fewer) "
        "(default 160)",
    )
    g.add_argument("--patch-size", type=int, default=192, help="HR patch side (default 192)")
    g.add_argument("--batch-size", type=int, default=16, help="(default 16)")
    g.add_argument(
        "--crops",
        default=DEFAULT_CROPS,
        metavar="|".join(CROPS),
        help="'fresh': new random crops (of the same images) for every pass over the data, the "
        "original model's outputs computed for them, as the released code's DataLoader (the "
        "moments greedy, thinet and cp: new crops per layer); 'fixed': the same crops for every "
        f"pass (default: {DEFAULT_CROPS})",
    )
    g.add_argument("--seed", type=int, default=0, help="crops and sampling (default 0)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="(default: cpu)")
    return p


def pruning_batches(
    folders: list[str], scale: int, images: int, patch_size: int, batch_size: int, seed: int
) -> list[list[torch.Tensor]]:
    """``images`` aligned random HR patches (and their pyramids) in batches of ``batch_size``.

    Up to ``images`` images are drawn from the folders (seeded); each contributes one crop per
    round, rounds repeating until there are ``images`` patches. Float32 in [0, 255]. These are
    the batches of every pass with ``--crops fixed`` (and the first pass's with ``fresh``).
    """
    source = pruning_source(folders, scale, images, patch_size, batch_size, seed, fresh=False)
    return source.batches_for_pass(0)


def pruning_source(
    folders: list[str],
    scale: int,
    images: int,
    patch_size: int,
    batch_size: int,
    seed: int,
    fresh: bool = True,
) -> CropSource:
    """The pruning data of :func:`pruning_batches` as a
    :class:`~dualsr.compression.pruning_data.CropSource`: the same images (decoded once), new
    crops of them for every pass when ``fresh``."""
    from ..data.dataset import PatchDataset, build_store, find_images

    if images < 1 or batch_size < 1:
        raise ConfigError("--images and --batch-size must be >= 1")
    if patch_size % scale or patch_size < scale:
        raise ConfigError(f"--patch-size {patch_size} must be a multiple of the scale ({scale})")
    for folder in folders:
        if not Path(folder).is_dir():
            raise ConfigError(f"--data: folder not found: {folder}")
    records = [r for folder in folders for r in find_images(folder, None, scale)]
    if not records:
        raise ConfigError(f"no images (png, jpg, bmp, webp, tif) in {', '.join(folders)}")
    rng = np.random.default_rng(seed)
    chosen = [records[i] for i in sorted(rng.permutation(len(records))[:images])]
    try:
        store = build_store(chosen, scale, patch_size=patch_size, cache_dir=None)
    except ConfigError:
        raise ConfigError(
            f"no usable pruning images in {', '.join(folders)}: every image is unreadable or "
            f"smaller than --patch-size {patch_size}"
        ) from None
    dataset = PatchDataset(store, scale, patch_size, augment=False)
    return CropSource(dataset, images, batch_size, seed, fresh=fresh)


def run(args: argparse.Namespace) -> int:
    """Prune and save."""
    options = PruneOptions.from_args(args)  # checked; errors name the flags
    criterion = options.criterion()
    check_choice("--crops", args.crops, CROPS)
    check_output_file(args.output)  # now, not after the pruning
    args.data = resolve_data_dirs(args.data, args.data_root)  # names -> folders (data/locate.py)
    ckpt = load_checkpoint(resolve_checkpoint_path(args.model), map_location=args.device)
    model, duals = ckpt.model.eval(), ckpt.duals
    if args.duals:
        duals = load_official_duals(args.duals, model.scale, model.arch.n_feats).to(args.device)
    widths = model.channel_widths()
    if criterion.configure is not None and args.rate is None:
        raise ConfigError(
            f"--method {criterion.name} makes its own configuration: give --rate instead of "
            "--config (or use --method l1 with --config)"
        )
    if args.rate is not None:
        config = rate_config(widths, args.rate, args.rate_rounding)
        source = f"uniform, rate {args.rate:g}"
    else:
        if not args.config.is_file():
            raise ConfigError(f"channel configuration not found: {args.config}")
        try:
            config = read_channel_config(args.config)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        source = str(args.config)
    if criterion.dual and duals is None and options.gamma > 0:
        raise ConfigError(
            f"--method {criterion.name} needs the dual models and {args.model} has none: pass "
            "--duals (the official dual checkpoints), or use --method dcp"
        )
    batches: CropSource | None = None
    if criterion.needs_data:
        if not args.data:
            raise ConfigError(f"--method {criterion.name} needs pruning images: give --data DIR")
        batches = pruning_source(
            args.data,
            model.scale,
            args.images,
            args.patch_size,
            args.batch_size,
            args.seed,
            fresh=args.crops == "fresh",
        )
        crops = "new crops every pass" if batches.fresh else "the same crops every pass"
        print(
            f"pruning data: {args.images} patches of {args.patch_size}px in "
            f"{batches.num_batches} batches from {', '.join(args.data)}, {crops}"
        )

    print(f"pruning {args.model} with {criterion.name} to {source} ({len(config)} layers)")
    with LayerProgress(len(config)) as progress:
        result = prune_model(model, duals, config, batches, options, progress=progress)
    stats = result.stats
    before, after = count_parameters(model), count_parameters(result.model)
    metadata = {
        "stage": "prune",
        # the pruning options, as given (PruneOptions; --samples is feature_samples)
        **options.to_dict(),
        "method": criterion.name,
        "parent": str(args.model),
        "config_source": source,
        # how --rate became widths ("floor": C - floor(C * rate)); None with --config
        "rate_rounding": args.rate_rounding if args.rate is not None else None,
        "channel_config": result.channel_config,
        # which input units of each searched layer were kept (indices into the parent's units)
        "kept_units": result.keep,
        "data": list(args.data or []),
        "images": args.images if batches is not None else 0,
        "patch_size": args.patch_size,
        "batch_size": args.batch_size,
        # "fresh": new random crops for every pass (released code), "fixed": the same ones
        "crops": args.crops,
        # sets of pruning batches the passes read (1 with fixed crops)
        "data_draws": stats.data_draws,
        "passes": stats.passes,
        "gradient_passes": stats.gradient_passes,
        "local_passes": stats.local_passes,
        "truncated_passes": stats.teacher_passes + stats.feature_passes,
        "seconds": round(stats.seconds, 2),
        "params": after,
        "parent_params": before,
    }
    save_or_rescue(lambda path: save_model(path, result.model, duals, metadata), args.output)
    macs = (count_macs(model, MAC_INPUT), count_macs(result.model, MAC_INPUT))
    print(
        f"params {before:,} -> {after:,} ({1 - after / before:.1%} removed); MACs for a "
        f"{MAC_INPUT[1]}x{MAC_INPUT[0]} LR input {macs[0] / 1e9:.2f} G -> {macs[1] / 1e9:.2f} G"
    )
    print(
        f"{stats.passes} full passes and {stats.teacher_passes + stats.feature_passes} truncated "
        f"passes over the pruning data, {stats.seconds:.1f} s"
    )
    print(f"saved {args.output}")
    return 0


class LayerProgress:
    """The progress of ``dualsr prune``: one bar over the searched layers, with an ETA.

    Each finished layer's line (:meth:`LayerReport.line`) is printed on stdout. On a terminal
    the bar is drawn on ``file`` (stderr) below those lines; when ``file`` is not a terminal (a
    log file, a pipe, a batch job) no bar and no escape codes are written, and each layer's line
    ends with ``[done/total, eta ...]`` instead. Use as a context manager; the instance is the
    ``progress`` callback of :func:`dualsr.compression.prune.prune_model`.
    """

    def __init__(self, total: int, file: TextIO | None = None) -> None:
        from tqdm import tqdm

        self.total = total
        self.done = 0
        self.start = time.perf_counter()
        # disable=None: drawn only when the file is a terminal
        self.bar = tqdm(
            total=total,
            desc="prune",
            unit="layer",
            file=file if file is not None else sys.stderr,
            disable=None,
            dynamic_ncols=True,
        )

    def __enter__(self) -> LayerProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def __call__(self, report: LayerReport) -> None:
        """Print the layer's line and advance the bar."""
        from tqdm import tqdm

        self.done += 1
        line = report.line()
        if self.bar.disable:  # no terminal: the count and the ETA go into the line itself
            line += f"  [{self.done}/{self.total}, eta {tqdm.format_interval(self.eta())}]"
        tqdm.write(line, file=sys.stdout)  # above the bar
        sys.stdout.flush()
        self.bar.update(1)

    def eta(self) -> float:
        """Seconds left, from the mean time of the layers done so far."""
        if not self.done:
            return 0.0
        return (time.perf_counter() - self.start) / self.done * (self.total - self.done)
