"""``dualsr finetune``: fine-tune a pruned model (DRC stage 3), a thin layer over training."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..data.locate import add_data_root_option, resolve_data_dirs
from .common import add_set_option


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="fine-tune a pruned model with the dual regression loss (+ distillation)",
        description="Fine-tune a pruned checkpoint (from `dualsr prune`) with the dual regression "
        "loss and, with --teacher, distillation (MSE of the channel-averaged features entering "
        "the last tail conv). This is `dualsr train` with model.init = the pruned checkpoint: "
        "--config takes a training recipe for everything else, --set overrides any key, and an "
        "interrupted run continues with `dualsr train --resume RUN_DIR`.",
    )
    p.add_argument(
        "--model", "-m", required=True, help="the pruned checkpoint (or a preset with weights)"
    )
    p.add_argument(
        "--output", "-o", required=True, type=Path, metavar="RUN_DIR", help="the run directory"
    )
    p.add_argument("--data", nargs="+", metavar="DIR", help="folders of HR images, or set names")
    add_data_root_option(p)
    p.add_argument(
        "--teacher", help="checkpoint, preset or released model to distil from (e.g. DRN-L)"
    )
    p.add_argument(
        "--distill-weight", type=float, default=1.0, help="distillation weight (default 1)"
    )
    p.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    p.add_argument("--config", "-c", type=Path, metavar="YAML", help="a training recipe")
    add_set_option(p, "optim.lr=5e-5")
    return p


def run(args: argparse.Namespace) -> int:
    """Build the training config from the options and train."""
    from ..compression.finetune import finetune, finetune_config
    from ..errors import ConfigError
    from ..pretrained import resolve_checkpoint_path
    from ..training.state import run_has_checkpoints

    if run_has_checkpoints(Path(args.output)):
        raise ConfigError(
            f"-o {args.output} already holds a fine-tuning run; continue it with "
            f"`dualsr train --resume {args.output}`, or choose a new -o"
        )

    cfg = finetune_config(
        resolve_checkpoint_path(args.model),
        args.output,
        resolve_data_dirs(args.data, args.data_root) or (),  # names -> folders (data/locate.py)
        teacher=resolve_checkpoint_path(args.teacher) if args.teacher else None,
        distill_weight=args.distill_weight,
        steps=args.steps,
        recipe=args.config,
        overrides=args.overrides,
    )
    distill = f", distilling from {args.teacher}" if args.teacher else ""
    print(f"fine-tuning {args.model} for {cfg.train.steps} steps{distill} -> {cfg.run.dir}")
    result = finetune(cfg)
    if result.stop_reason in ("SIGINT", "SIGTERM"):
        return 128 + signal.Signals[result.stop_reason].value
    if result.finished:
        best = f", best {result.best_psnr:.2f} dB: {result.best}" if result.best else ""
        print(f"done: {result.step} steps in {result.run_dir} (latest: {result.latest}{best})")
    sys.stdout.flush()
    return 0
