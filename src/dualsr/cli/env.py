"""``dualsr env``: what a bug report needs (versions, threads, devices, what ``auto`` picks)."""

from __future__ import annotations

import argparse
import platform


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="print environment information for bug reports",
        description="Versions, threads, devices, the CPU's kind and nominal limits, and what "
        "--backend auto picks here for the default model.",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="run --backend auto's calibration and start-up measurement now for the default "
        "model if they are not cached (a few seconds), instead of leaving them to the first "
        "`dualsr upscale`",
    )
    p.add_argument(
        "--clear-cache",
        action="store_true",
        help="remove --backend auto's cached choices (autoselect.json), start-up measurements "
        "(launch.json) and exported ONNX graphs (onnx/) from the cache folder ($DUALSR_HOME, "
        "default ~/.cache/dualsr)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Print versions of dualsr, Python, torch and optional packages, and the backend auto picks."""
    import numpy
    import torch

    from .. import __version__
    from ..deploy.cpu import detect_cpu, physical_limit
    from ..deploy.precision import describe_precision

    if getattr(args, "clear_cache", False):
        from ..deploy.autoselect import cache_path, clear_cache, onnx_cache_dir
        from ..deploy.launch import launch_path

        removed = clear_cache()
        for path in removed:
            print(f"removed {path}")
        if not removed:
            print(
                f"nothing to remove ({cache_path()}, {launch_path()} and {onnx_cache_dir()} do "
                "not exist)"
            )
    threads = torch.get_num_threads()
    info = detect_cpu()
    rows = {
        "dualsr": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch threads": threads,
        "cuda available": torch.cuda.is_available(),
        "cpu capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": info.describe(),
        "precision auto": describe_precision("cpu"),
        "backend auto": describe_auto_backend(threads, getattr(args, "calibrate", False)),
        "start-up": describe_launch(getattr(args, "calibrate", False)),
    }
    for precision in ("fp32", "bf16", "int8"):
        macs, how = physical_limit(info, threads, precision)
        value = f"{macs / 1e9:.0f} G MAC/s, " if macs else ""
        rows[f"limit {precision}"] = f"{value}{how}"
    for mod in ("onnxruntime", "safetensors", "PIL"):
        try:
            rows[mod] = __import__(mod).__version__
        except ImportError:
            rows[mod] = "not installed"
    for k, v in rows.items():
        print(f"{k:<15} {v}")
    return 0


def describe_auto_backend(threads: int, calibrate: bool = False) -> str:
    """What ``--backend auto`` runs here for the default model, and why; calibrates first only
    when ``calibrate`` (otherwise a missing calibration is reported as pending)."""
    from ..deploy.autoselect import candidates, choose_backend, known_choice
    from ..errors import DualSRError
    from ..pretrained import DEFAULT_PRESET, default_model_name, resolve_model

    name = default_model_name()
    if name is None:
        return f"unknown (the default model {DEFAULT_PRESET} is not shipped with this install)"
    try:
        model = resolve_model(name)
        if calibrate:
            choice = choose_backend(model, "cpu", "auto", threads)
        else:
            choice = known_choice(model, "cpu", "auto", threads)
    except DualSRError as exc:
        return f"unknown ({exc})"
    if choice is None:
        found, _notes = candidates(model, "auto")
        pending = ", ".join(f"{b} {p}" for b, p in found)
        return (
            f"not calibrated yet, runs on first upscale (for {name} on cpu: times {pending}; "
            "`dualsr env --calibrate` runs it now)"
        )
    cached = ", cached" if choice.cached else ""
    return f"{choice.label} for {name} on cpu ({choice.reason}{cached})"


def describe_launch(measure: bool = False) -> str:
    """Whether ``dualsr upscale`` of the default model skips PyTorch here, and for which job
    sizes (:mod:`dualsr.deploy.launch`); measures it first only when ``measure``."""
    import importlib.util

    from ..deploy.launch import launch_key, model_file_for, read_records
    from ..pretrained import default_model_name

    name = default_model_name()
    path = model_file_for(name) if name is not None else None
    if path is None:
        return "PyTorch (no shipped default model to measure)"
    if importlib.util.find_spec("onnxruntime") is None:
        return "always PyTorch (onnxruntime is not installed: pip install 'dualsr[onnx]')"
    key = launch_key(path, "auto")
    record = read_records().get(key)
    if record is None and measure:
        from ..deploy.autoselect import auto_upscaler, record_launch
        from ..pretrained import resolve_model

        record = record_launch(auto_upscaler(resolve_model(name)), path)
    if record is None:
        return f"not measured yet for {name} (the first `dualsr upscale` does, once)"
    return f"{name}: {record.summary()}"
