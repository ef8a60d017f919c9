"""The ``dualsr`` command line: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from ..errors import DualSRError

# subcommand name -> module, in pipeline order (data -> train -> compress -> evaluate -> deploy)
COMMANDS = {
    "train": "train",
    "search": "search",
    "prune": "prune",
    "finetune": "finetune",
    "eval": "evaluate",
    "upscale": "upscale",
    "demo": "demo",
    "profile": "profile",
    "bench": "bench",
    "export": "export",
    "models": "models",
    "env": "env",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="dualsr",
        description="Dual Regression Networks for super-resolution: train, compress, evaluate, "
        "and run DRN models.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"{__name__}.{module}")
        p = mod.add_parser(sub, name)
        p.set_defaults(_run=mod.run)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dualsr`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    warnings.formatwarning = _format_warning
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (
        DualSRError,
        FileNotFoundError,
        PermissionError,
        IsADirectoryError,
        KeyError,
        ValueError,
    ) as exc:
        if args.debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 1
