"""``dualsr train``: dual regression training from a YAML recipe, on CPU, GPU or under torchrun."""

from __future__ import annotations

import argparse
import signal
import sys

import yaml

from .common import add_set_option


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="train a DRN with the dual regression objective",
        description="Train a DRN from a YAML recipe (see configs/ and docs/training.md). "
        "Ctrl-C or SIGTERM saves a checkpoint and stops; --resume RUN_DIR continues with exactly "
        "the batches an uninterrupted run would see. Several processes: "
        "`torchrun --nproc_per_node N -m dualsr train --config ...`.",
    )
    p.add_argument("--config", "-c", metavar="YAML", help="the training recipe")
    add_set_option(p, "optim.lr=2e-4 --set loss.dual=false")
    p.add_argument(
        "--run-dir", metavar="DIR", help="where the run is written (= --set run.dir=DIR)"
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest usable checkpoint (uses its saved "
        "config.yaml; --set still applies, e.g. --set train.steps=20000)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved, validated config and exit",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Validate the config, train, and report where the run is."""
    from ..errors import ConfigError
    from ..training import load_config, resume_config, train

    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"run.dir={args.run_dir}")
    if args.resume:
        if args.config:
            raise ConfigError("give either --config (a new run) or --resume RUN_DIR, not both")
        cfg = resume_config(args.resume, overrides)
    elif args.config:
        cfg = load_config(args.config, overrides)
    else:
        raise ConfigError("give --config YAML for a new run, or --resume RUN_DIR to continue one")
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    result = train(cfg, resume=bool(args.resume))
    if result.stop_reason in ("SIGINT", "SIGTERM"):
        return 128 + signal.Signals[result.stop_reason].value
    if result.finished and result.rank == 0:
        best = ""
        if result.best is not None and result.best_psnr is not None:
            best = f", best {result.best_psnr:.2f} dB: {result.best}"
        print(f"done: {result.step} steps in {result.run_dir} (latest: {result.latest}{best})")
    sys.stdout.flush()
    return 0
