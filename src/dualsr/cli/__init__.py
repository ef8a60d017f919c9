"""The ``dualsr`` command line: one module per subcommand, each with ``add_parser`` and ``run``.

Only the module of the subcommand being run is imported (the others, and PyTorch with them, are
not), so ``dualsr --version`` and ``dualsr --help`` answer at once.

SIGTERM (what ``timeout``, ``docker stop`` and Slurm send) is handled like Ctrl-C in every
subcommand: the work stops, partial files are removed (:func:`dualsr.fileio.atomic_write`), and
the command exits with status 143 (128 + 15; Ctrl-C: 130). ``train``, ``finetune`` and ``search``
replace this handler while they run with their own (a checkpoint is saved first).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..errors import DualSRError

# subcommand name -> (module, one-line help), in pipeline order (data -> train -> compress ->
# evaluate -> deploy). The help is listed by `dualsr --help` without importing the module; it is
# the same text as the module's own add_parser(help=...) (tests/test_cli_startup.py checks).
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a DRN with the dual regression objective"),
    "search": ("search", "search the channel numbers of a DRN (DRC stage 1)"),
    "prune": (
        "prune",
        "prune a trained model to a channel configuration (DRC stage 2, or a baseline)",
    ),
    "finetune": (
        "finetune",
        "fine-tune a pruned model with the dual regression loss (+ distillation)",
    ),
    "adapt": ("adapt", "adapt a model to your own LR images (no HR needed; DRN-Adapt)"),
    "eval": ("evaluate", "evaluate PSNR/SSIM on benchmark folders"),
    "upscale": ("upscale", "upscale images with a DRN model"),
    "demo": ("demo", "upscale sample images and compare with bicubic"),
    "profile": ("profile", "count parameters, multiply-adds, activations and peak memory"),
    "bench": (
        "bench",
        "time inference backends (eager, fused, fused-bf16, compile, ONNX Runtime, ...)",
    ),
    "export": ("export", "export a model to ONNX"),
    "models": ("models", "list model presets and released models"),
    "download": ("download", "download released weights by name (or URL) into the cache"),
    "env": ("env", "print environment information for bug reports"),
}

#: Exit status after SIGTERM (128 + signal number, the shell's convention) and after Ctrl-C.
EXIT_SIGTERM = 128 + signal.SIGTERM
EXIT_SIGINT = 128 + signal.SIGINT


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM while a ``dualsr`` command runs.

    A KeyboardInterrupt, so that everything that cleans up after Ctrl-C (temporary files,
    checkpoints saved after an interruption) does the same after SIGTERM.
    """


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser.

    ``command`` None registers every subcommand fully (this imports all of them, PyTorch
    included); a name registers that one fully and the others by name and help only, which
    imports nothing else (how :func:`main` parses).
    """
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
    for name, (module, summary) in COMMANDS.items():
        if command is None or name == command:
            mod = importlib.import_module(f"{__name__}.{module}")
            p = mod.add_parser(sub, name)
            p.set_defaults(_run=mod.run)
        else:
            sub.add_parser(name, help=summary)
    return parser


def requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first argument that is not an option), or None."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def _version() -> str:
    from .. import __version__

    return __version__


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dualsr`` console script; returns the exit status.

    Called without ``argv`` (the console script, ``python -m dualsr``), this is the whole
    process: the objects its imports made (PyTorch's are hundreds of thousands) live until it
    exits, so they are frozen out of the garbage collector once imported, and what is alive at
    the end is frozen too, so that neither the collections on the way nor the interpreter's
    exit walk them again (0.1-0.3 s of a 2 s ``dualsr upscale``; bench_upscale_process.py).
    Exit handlers, flushing and closing run as usual.
    """
    if argv is None:
        try:
            return _main(sys.argv[1:], whole_process=True)
        finally:
            gc.freeze()
    return _main(argv)


def _main(argv: list[str], whole_process: bool = False) -> int:
    command = requested_command(argv)
    parser = build_parser(command or "")  # "": no subcommand module is imported
    if whole_process:
        gc.freeze()  # the subcommand's imports: alive until exit
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    warnings.formatwarning = _format_warning
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        with sigterm_as_interrupt():
            return int(args._run(args) or 0)
    except Terminated:
        _print_error("terminated (SIGTERM)")
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        _print_error("interrupted")
        return EXIT_SIGINT
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


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread (as Ctrl-C
    raises KeyboardInterrupt); the previous handler is restored afterwards.

    Outside the main thread nothing changes. A process forked inside the block (a DataLoader
    worker, a multiprocessing pool) is not this command: SIGTERM ends it as by default.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handle(signum: int, frame: object) -> None:
        if os.getpid() != owner:  # a forked child: die as SIGTERM always made it
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:  # None: a handler installed outside Python, which cannot be put back
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _print_error(line: str) -> None:
    """One line on stderr, on a line of its own even when a progress bar was drawing."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
