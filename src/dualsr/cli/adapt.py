"""``dualsr adapt``: fit a model to your own LR photos with the dual (closed-loop) loss."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from ..data.locate import add_data_root_option, resolve_data_dirs
from .common import positive_int


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="adapt a model to your own LR images (no HR needed; DRN-Adapt)",
        description="Adapt a trained model to LR images that have no HR counterpart (photos with "
        "blur, JPEG, noise): the unpaired images contribute the dual (closed-loop) loss, paired "
        "synthetic data (--paired, or the images themselves) the primal loss, as in the DRN "
        "paper's adaptation. INPUT may be files, folders or globs. The result is an ordinary "
        "checkpoint (`dualsr upscale --model OUT`). Ctrl-C saves a state file beside OUT; "
        "--resume continues it. See docs/adaptation.md.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="LR image files, folders or globs")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="the adapted checkpoint"
    )
    p.add_argument(
        "-m", "--model", default="drn-t-x4", help="the model to adapt (default: drn-t-x4)"
    )
    p.add_argument(
        "--paired",
        nargs="+",
        default=[],
        metavar="DIR",
        help="folders of HR images for the paired samples, or data set names such as T91 "
        "BSD200 (see --data-root); default: pairs made from the LR images themselves",
    )
    add_data_root_option(p)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=positive_int, help="steps (default 300, at most 18 min)")
    budget.add_argument(
        "--minutes", type=float, help="a wall-clock budget instead of a number of steps"
    )
    p.add_argument(
        "--scheme",
        choices=["paper", "estimate"],
        default=None,
        help="'paper': the paired LR are MATLAB bicubic (DRN-Adapt as published); 'estimate': "
        "the paired LR are degraded like your images (estimated, or --degradation)",
    )
    p.add_argument(
        "--degradation",
        default=None,
        help="with --scheme estimate: the degradation of your images, e.g. blur=1.6,jpeg=75 "
        "(default: auto, estimated from the images)",
    )
    p.add_argument("--unpaired-ratio", type=float, help="share of unpaired samples (0.3)")
    p.add_argument("--lr", type=float, help="learning rate of the primal model")
    p.add_argument("--seed", type=int, help="random crops and batches (default 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=positive_int, help="CPU threads")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="auto: bf16 where native")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted adaptation whose state file lies beside OUT",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Adapt, print where the result is."""
    import torch

    from ..adaptation import AdaptOptions, adapt

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {
        "scheme": args.scheme,
        "degradation": args.degradation,
        "unpaired_ratio": args.unpaired_ratio,
        "lr": args.lr,
        "seed": args.seed,
        "precision": args.precision,
    }
    fields = {k: v for k, v in overrides.items() if v is not None}
    if args.steps:
        fields.update(steps=args.steps, minutes=None)
    elif args.minutes:
        fields.update(steps=10**9, minutes=args.minutes)
    if args.degradation and fields.get("scheme", "paper") == "paper":
        fields["scheme"] = "estimate"  # a given degradation only means something there
    options = AdaptOptions(**fields)
    result = adapt(
        args.inputs,
        args.output,
        model=args.model,
        paired=resolve_data_dirs(args.paired, args.data_root, option="--paired"),
        options=options,
        resume=args.resume,
        device=args.device,
    )
    if not result.finished:
        print(f"stopped at step {result.step}; continue with the same command and --resume")
        return 128 + signal.Signals[result.stop_reason].value if result.stop_reason else 1
    print(
        f"adapted {args.model} in {result.step} steps (paired LR: {result.degradation.spec()}) "
        f"-> {result.output}"
    )
    return 0
