"""``dualsr env``: what a bug report needs (versions, threads, devices)."""

from __future__ import annotations

import argparse
import platform


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    return sub.add_parser(name, help="print environment information for bug reports")


def run(args: argparse.Namespace) -> int:
    """Print versions of dualsr, Python, torch and optional packages."""
    import numpy
    import torch

    from .. import __version__
    from ..deploy.precision import describe_precision

    rows = {
        "dualsr": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch threads": torch.get_num_threads(),
        "cuda available": torch.cuda.is_available(),
        "cpu capability": torch.backends.cpu.get_cpu_capability(),
        "precision auto": describe_precision("cpu"),
    }
    for mod in ("onnxruntime", "safetensors", "PIL"):
        try:
            rows[mod] = __import__(mod).__version__
        except ImportError:
            rows[mod] = "not installed"
    for k, v in rows.items():
        print(f"{k:<15} {v}")
    return 0
