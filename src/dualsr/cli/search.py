"""``dualsr search``: DRC stage 1, the channel number search, from a trained checkpoint.

Options come from built-in defaults (the paper's settings), then an optional YAML file
(``--config``, keys named like the options: ``rate: 0.3``, ``patch_size: 192``), then the command
line (:func:`dualsr.compression.search.options.load_search_options`). The resolved options are
saved in ``search.json`` with an equivalent command line (:meth:`SearchResult.save`).

The search saves checkpoints in ``OUT/checkpoints/``
(:mod:`dualsr.compression.search.checkpoints`): every ``--save-every``, on SIGINT/SIGTERM (then it
exits with 130/143) and after an error; ``--resume OUT`` continues with the saved options and ends
with the same result files as an uninterrupted run. The checkpoints are deleted once the result
files are written. A new search refuses an ``OUT`` that already holds a finished one
(``search.json``, ``channel_config.txt``), as ``dualsr train`` refuses a run folder that holds a
run: nothing is overwritten.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.locate import add_data_root_option, resolve_data_dir, resolve_data_dirs

if TYPE_CHECKING:
    from ..compression.search.result import SearchResult

Progress = Callable[[dict], None]


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="search the channel numbers of a DRN (DRC stage 1)",
        description="Differentiable channel number search (DRC stage 1): soft width masks over "
        "L1-ranked channels, architecture logits trained by the DARTS bilevel scheme on the dual "
        "regression loss (weights on one half of the images, logits on the other). Writes "
        "OUT/channel_config.txt (one integer a line, the official format: the most likely width "
        "of every layer), OUT/search.json, and after every epoch the argmax configuration in "
        "OUT/epochs/. With --select budget and --budget-params/--budget-macs the configuration "
        "meets that budget within --tolerance instead. With --val DIR (e.g. Set5) every epoch "
        "is validated and OUT/best_channel_config.txt keeps the best epoch's configuration. "
        "Defaults are those of the paper and its released code; --config FILE.yaml overrides "
        "them and the "
        "command line overrides the file. Ctrl-C or SIGTERM saves a checkpoint and stops; "
        "--resume OUT_DIR continues. An OUT_DIR that holds a finished search is refused.",
    )
    p.add_argument("--config", type=Path, default=None, metavar="YAML", help="options file")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="OUT_DIR",
        help="continue the search in OUT_DIR from its newest usable checkpoint, with its saved "
        "options (other flags may only repeat them, or change --device, --cache, --cache-dir, "
        "--save-weights, --save-every)",
    )
    g = p.add_argument_group("model and data")
    g.add_argument("--model", "-m", help="trained checkpoint (.safetensors or official .pt)")
    g.add_argument(
        "--data",
        nargs="+",
        metavar="DIR",
        help="folders of HR training images, split alternately into a weight half and an "
        "architecture half (data set names such as T91 are looked up in --data-root)",
    )
    add_data_root_option(g)
    g.add_argument("-o", "--output", metavar="OUT_DIR", help="where the results are written")
    g.add_argument(
        "--val",
        metavar="DIR",
        help="HR validation images (the release uses Set5): after every epoch the search network "
        "is scored on them (PSNR as the release measures it during the search: RGB, border "
        "scale+6) and OUT/best_channel_config.txt keeps the argmax configuration of the best "
        "epoch (default: none)",
    )
    g.add_argument(
        "--save-weights",
        action="store_true",
        default=None,
        help="also write OUT/searched.safetensors: the full-width weights trained during the "
        "search, with their duals",
    )
    g.add_argument(
        "--save-every",
        metavar="N|TIME",
        help="save a checkpoint into OUT/checkpoints every N steps, or every TIME such as 30s, "
        "5m, 1h (default: 5m; 0: only at the end, on Ctrl-C/SIGTERM and after an error)",
    )
    g = p.add_argument_group("target")
    g.add_argument(
        "--select",
        choices=["argmax", "budget"],
        help="the final configuration: argmax, the most likely width of every layer (default, "
        "the paper's), or budget, the expected widths fitted to --budget-params/--budget-macs "
        "(which need --select budget)",
    )
    g.add_argument(
        "--rate",
        help="pruning rate r in (0, 1) that sets the candidate widths "
        "int(C * (1 - r) * k), e.g. 0.3 for DRN-S30",
    )
    b = g.add_mutually_exclusive_group()
    b.add_argument(
        "--budget-params",
        metavar="N",
        help="with --select budget: make the final configuration have N parameters (within "
        "--tolerance); suffixes K, M, G allowed, e.g. 3.1M",
    )
    b.add_argument(
        "--budget-macs",
        metavar="N",
        help="with --select budget: make the final configuration cost N multiply-adds at "
        "--input-size, e.g. 72G",
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
    g.add_argument(
        "--alpha-schedule",
        choices=["cosine", "constant"],
        help="the logits' lr: cosine-annealed like the weights' to 1e-7 (default, the release) "
        "or constant",
    )
    g.add_argument(
        "--alpha-betas",
        metavar="B1,B2",
        help="Adam betas of the logits (default: 0.9,0.999, the release; DARTS: 0.5,0.999)",
    )
    g.add_argument("--alpha-weight-decay", type=float, help="logit weight decay (1e-3)")
    g.add_argument(
        "--grad-clip",
        metavar="NORM",
        help="clip the gradient norm of the weight step at NORM (default: 5, the release; "
        "0 or none: no clipping)",
    )
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


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the search and write the channel configuration and the report."""
    import torch

    from ..compression.budget import check_budget
    from ..compression.search.channels import ChannelSearch
    from ..compression.search.checkpoints import (
        SearchCheckpoints,
        has_search_checkpoints,
        load_search_checkpoint,
    )
    from ..compression.search.data import (
        load_search_model,
        load_validation_pairs,
        make_search_data,
    )
    from ..compression.search.options import load_search_options, option_names, resume_options
    from ..errors import ConfigError, DualSRError
    from .common import ensure_writable_folder

    given = {key: getattr(args, key, None) for key in option_names()}
    given["data"] = resolve_data_dirs(args.data, args.data_root)  # names -> folders (locate.py)
    given["val"] = args.val and str(resolve_data_dir(args.val, args.data_root, "--val"))
    loaded = None
    if args.resume is not None:
        loaded = load_search_checkpoint(args.resume)
        opts = resume_options(loaded.state.options, args.resume, args.config, given)
    else:
        opts = load_search_options(args.config, given, complete=True)
    hw = opts.input_hw
    budget = opts.budget()
    device = opts.resolve_device()
    out = Path(opts.output)  # type: ignore[arg-type]
    if out.exists() and not out.is_dir():
        raise DualSRError(f"-o {out} is an existing file; the search writes a folder: give one")
    if loaded is None and has_search_checkpoints(out):
        raise ConfigError(
            f"-o {out} already holds the checkpoints of an unfinished search; continue it with "
            f"`dualsr search --resume {out}`, or choose another -o"
        )
    if loaded is None:
        _refuse_a_finished_search(out)
    ensure_writable_folder(out, "-o")
    if loaded is not None:
        model, duals = loaded.model, loaded.duals
        source = str(loaded.state.info.get("source", opts.model))
    else:
        model, duals, source = load_search_model(opts.model)  # type: ignore[arg-type]
    narrowest = min(model.channel_widths())
    if opts.multiple > narrowest:
        raise DualSRError(
            f"--multiple {opts.multiple} is wider than the narrowest searched layer ({narrowest} "
            "channels), so no width could change; use a divisor of the layer widths such as 4, "
            "8 or 16"
        )
    if budget is not None:  # fail now, not after loading the data
        check_budget(model.arch, budget, opts.multiple, hw)
    if opts.val is not None:  # likewise: a missing or unusable validation folder
        load_validation_pairs(opts.val, model.scale)
    if duals is None:
        print("note: the checkpoint has no dual models; fresh duals are trained during the search")
    start_step = loaded.state.step if loaded is not None else 0
    data = make_search_data(
        opts.data,  # type: ignore[arg-type]
        model.scale,
        opts.patch_size,
        opts.batch_size,
        opts.seed,
        opts.cache_path(),
        start_step=start_step,
    )
    files_digest = _files_digest(data.train_files, data.val_files)
    if loaded is not None and loaded.state.info.get("files", files_digest) != files_digest:
        raise ConfigError(
            f"--resume {args.resume}: the images in --data are not those the search started "
            "with (files added, removed or renamed); restore them, or start a new search"
        )
    torch.manual_seed(opts.seed)
    model.to(device)
    if duals is not None:
        duals.to(device)
    steps = opts.total_steps(data.steps_per_epoch)
    command = opts.equivalent_command()
    verb = f"resuming {out} at step {start_step}:" if loaded is not None else "searching"
    print(
        f"{verb} {source} (x{model.scale}): {len(data.train_files)} weight images, "
        f"{len(data.val_files)} architecture images, {steps} steps ({opts.order} order) "
        f"on {device}"
    )
    if loaded is not None:
        print(f"from {loaded.path}")
    checkpoints = SearchCheckpoints(
        out,
        opts.save_every,
        options=opts.to_dict(),
        info={"source": source, "files": files_digest},
        metadata={"source": source, "command": command},
    )
    result = _search(
        lambda progress: ChannelSearch.from_options(
            model, duals, data, opts, resume=loaded.state if loaded is not None else None
        ).run(progress, checkpoints),
        steps,
        start_step,
    )
    if result.stop_reason in ("SIGINT", "SIGTERM"):
        return 128 + signal.Signals[result.stop_reason].value

    report = {
        "command": command,
        "options": opts.to_dict(),
        "model": {"source": source, "arch": model.arch.to_dict()},
        "data": {
            "folders": opts.data,
            "weight_images": len(data.train_files),
            "architecture_images": len(data.val_files),
            "steps_per_epoch": data.steps_per_epoch,
        },
    }
    files = result.save(
        out, report, weights=opts.save_weights, metadata={"source": source, "command": command}
    )
    checkpoints.clear()  # the result files hold everything now
    print(
        f"channel configuration ({len(result.channel_config)} layers): {files.channel_config}\n"
        f"params: {result.params:,} ({1 - result.params / result.full_params:.1%} fewer than "
        f"{result.full_params:,}); MACs at {hw[0]}x{hw[1]}: {result.macs / 1e9:.2f} G "
        f"({1 - result.macs / result.full_macs:.1%} fewer)"
    )
    if result.budget_fit is not None:
        print(
            f"budget: {result.budget_fit.target:,} {result.budget_fit.kind}, met within "
            f"{result.budget_fit.relative_error:+.2%}"
        )
    if result.best is not None:
        print(
            f"best epoch by validation PSNR: {result.best['epoch']} "
            f"({result.best['val_psnr']:.3f} dB): {out / 'best_channel_config.txt'}"
        )
    print(f"report: {out / 'search.json'} ({result.seconds:.0f} s)")
    return 0


#: The files a finished search leaves in its folder (SearchResult.save): a new search refuses to
#: overwrite them, as `dualsr train` refuses a folder that already holds a run.
RESULT_FILES = ("search.json", "channel_config.txt")


def _refuse_a_finished_search(out: Path) -> None:
    """ConfigError when ``out`` already holds the results of a search (nothing is overwritten)."""
    from ..errors import ConfigError

    found = [name for name in RESULT_FILES if (out / name).is_file()]
    if found:
        raise ConfigError(
            f"-o {out} already holds a finished search ({', '.join(found)}); choose another -o, "
            f"or delete {' and '.join(str(out / name) for name in found)} to search into it again"
        )


def _search(
    search: Callable[[Progress], SearchResult], steps: int, start_step: int
) -> SearchResult:
    """Call ``search(progress)`` under a progress bar (log lines printed above it)."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar = tqdm(total=steps, initial=start_step, unit="step", desc="search")

    def progress(rec: dict) -> None:
        bar.update(1)
        bar.set_postfix(train=f"{rec['train_loss']:.3f}", val=f"{rec['val_loss']:.3f}")

    try:
        with logging_redirect_tqdm():
            return search(progress)
    finally:
        bar.close()


def _files_digest(*halves: list[Path]) -> str:
    """A digest of the image names of both halves (a resumed search must see the same
    images)."""
    import hashlib

    text = "\n--\n".join("\n".join(p.name for p in half) for half in halves)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
