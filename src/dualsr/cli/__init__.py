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
    "download": "download",
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
    parser.add_argument("--version", action="version", version=f"dualsr {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f"{__name__}.{module}")
        p = mod.add_parser(sub, name)
        p.set_defaults(_run=mod.run)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


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
        _print_error("interrupted")
        return 130
    except BrokenPipeError:  # e.g. `dualsr models | head -1`: the reader left, which is fine
        _silence_stdout()
        return 0
    except (
        DualSRError,
        FileNotFoundError,
        PermissionError,
        IsADirectoryError,
        OSError,  # a full disk, a read-only file system, ...: one line, not a traceback
        KeyError,
        ValueError,
    ) as exc:
        if args.debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        _print_error(f"error: {msg}")
        return 1


def _print_error(line: str) -> None:
    """One line on stderr, on a line of its own even when a progress bar was drawing."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second BrokenPipeError."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
