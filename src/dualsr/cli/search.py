"""``dualsr search``: DRC stage 1, the channel number search, from a trained checkpoint.

Options come from built-in defaults (the paper's settings), then an optional YAML file
(``--config``, keys named like the options: ``rate: 0.3``, ``patch_size: 192``), then the command
line (:func:`dualsr.compression.search_config.load_search_options`). The resolved options are
saved in ``search.json`` with an equivalent command line (:meth:`SearchResult.save`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


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


def run(args: argparse.Namespace) -> int:
    """Run the search and write the channel configuration and the report."""
    import torch
    from tqdm import tqdm

    from ..compression.budget import check_budget
    from ..compression.search import load_search_model, make_search_data, search_channels
    from ..compression.search_config import load_search_options, option_names
    from ..errors import DualSRError
    from ..losses import DualRegressionLoss
    from .common import ensure_writable_folder

    given = {key: getattr(args, key, None) for key in option_names()}
    opts = load_search_options(args.config, given, complete=True)
    hw = opts.input_hw
    budget = opts.budget()
    device = opts.resolve_device()
    out = Path(opts.output)  # type: ignore[arg-type]
    if out.exists() and not out.is_dir():
        raise DualSRError(f"-o {out} is an existing file; the search writes a folder: give one")
    ensure_writable_folder(out, "-o")
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
    if duals is None:
        print("note: the checkpoint has no dual models; fresh duals are trained during the search")
    data = make_search_data(
        opts.data,  # type: ignore[arg-type]
        model.scale,
        opts.patch_size,
        opts.batch_size,
        opts.seed,
        opts.cache_path(),
    )
    torch.manual_seed(opts.seed)
    model.to(device)
    if duals is not None:
        duals.to(device)
    steps = opts.total_steps(data.steps_per_epoch)
    print(
        f"searching {source} (x{model.scale}): {len(data.train_files)} weight images, "
        f"{len(data.val_files)} architecture images, {steps} steps ({opts.order} order) "
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
            target_rate=opts.rate,  # type: ignore[arg-type]
            ratios=tuple(opts.ratios),
            multiple=opts.multiple,
            order=opts.order,
            steps=steps,
            weight_lr=opts.lr_weights,
            alpha_lr=opts.lr_alpha,
            alpha_weight_decay=opts.alpha_weight_decay,
            budget=budget,
            input_hw=hw,
            loss=DualRegressionLoss(opts.dual_weight),
            seed=opts.seed,
            progress=progress,
        )
    finally:
        bar.close()

    command = opts.equivalent_command()
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
    print(f"report: {out / 'search.json'} ({result.seconds:.0f} s)")
    return 0
