"""Options shared by the subcommands that run a model."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import DualSRError
from ..inference import (
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILES,
    BicubicUpscaler,
    TorchUpscaler,
    Upscaler,
    auto_tile,
)
from ..pretrained import BICUBIC, resolve_model

#: --backend choices: the PyTorch paths of TorchUpscaler, then ONNX Runtime.
BACKEND_CHOICES = ["auto", "eager", "fused", "compile", "onnxruntime"]


def add_set_option(p: argparse.ArgumentParser, example: str = "optim.lr=2e-4") -> None:
    """``--set KEY=VALUE`` (repeatable): training-config overrides, collected in ``overrides``."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a training config value, e.g. --set {example} (repeatable; values are "
        "YAML)",
    )


def add_inference_options(
    parser: argparse.ArgumentParser,
    default_model: str | None,
    tile_by_default: bool = False,
    model_help: str | None = None,
) -> None:
    """--model, --tile, --tile-overlap, --self-ensemble, --device, --backend, --precision.

    ``default_model`` None makes --model required unless ``model_help`` describes the default
    (the command then chooses it itself, e.g. by --scale).

    Without ``tile_by_default`` whole images are processed unless --tile is given (evaluation
    protocol); with it, images larger than :data:`~dualsr.inference.DEFAULT_TILES` LR pixels
    (per precision) are tiled (bounded memory for users).
    """
    parser.set_defaults(tile_by_default=tile_by_default)
    tiles = ", ".join(f"{v} in {k}" for k, v in DEFAULT_TILES.items())
    g = parser.add_argument_group("model and inference")
    g.add_argument(
        "--model",
        "-m",
        default=default_model,
        required=default_model is None and model_help is None,
        help="checkpoint (.safetensors or official .pt), preset name, released model name, "
        "http(s) URL, 'bicubic', or an exported model (.onnx, run with ONNX Runtime)"
        + (f" (default: {default_model})" if default_model else "")
        + (f" ({model_help})" if model_help else ""),
    )
    g.add_argument(
        "--tile",
        "-t",
        type=_tile_size,
        default=None,
        metavar="N|auto",
        help="process the LR image in N x N tiles to bound memory; 0 = whole image; 'auto' = "
        "the largest tile whose estimated memory fits in half the memory available now "
        + (
            f"(default: {tiles}, about the same memory)"
            if tile_by_default
            else "(default: whole image)"
        ),
    )
    g.add_argument(
        "--tile-overlap",
        type=int,
        default=DEFAULT_TILE_OVERLAP,
        metavar="K",
        help=f"LR pixels of context around each tile (default: {DEFAULT_TILE_OVERLAP})",
    )
    g.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average the 8 flips/transposes (x8 slower, usually +0.1 dB)",
    )
    g.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="where to run the model (default: cpu)",
    )
    g.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_CHOICES,
        help="how to run the model: 'auto' (default) is the fastest measured path (on CPU the "
        "fused PyTorch module; an .onnx --model runs with ONNX Runtime); 'eager' the model as "
        "written; 'fused' folded convolutions, final output only, channels_last; 'compile' "
        "torch.compile of the fused module (needs a C++ compiler, slow first call per size); "
        "'onnxruntime' exports the model on the fly (or runs an .onnx --model); needs "
        "pip install 'dualsr[onnx]'",
    )
    g.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="arithmetic of the PyTorch paths: 'auto' (default) is bf16 where the device computes "
        "it natively (CPUs with AVX512_BF16 or AMX, recent GPUs; about 1.8x faster, PSNR within "
        "0.01 dB) and fp32 elsewhere; 'fp32' forces full precision (docs/deployment.md)",
    )


def ensure_writable_folder(folder: Path, option: str) -> None:
    """Create ``folder`` if needed and make sure files can be written into it; the errors name
    ``option`` (the flag that chose the folder)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DualSRError(
            f"cannot create the output folder {folder}: a file is in the way ({option})"
        ) from None
    except OSError as exc:
        raise DualSRError(
            f"cannot create the output folder {folder} ({exc.strerror}); choose another {option}"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DualSRError(f"the output folder {folder} is not writable; choose another {option}")


def check_output_file(path: Path, option: str = "-o") -> None:
    """Before the work: ``path`` must be a file path (not an existing folder) in a writable
    folder."""
    if path.is_dir():
        raise DualSRError(
            f"{option} {path} is an existing folder; give a file name, e.g. {path / 'model'}"
            f"{path.suffix or '.safetensors'}"
        )
    ensure_writable_folder(path.parent if str(path.parent) else Path("."), option)


def save_or_rescue(save: Callable[[Path], object], path: Path, option: str = "-o") -> Path:
    """``save(path)``; if that fails (a full disk, a vanished folder), save to the temporary
    folder instead and raise an error that says where the result is, so no work is lost."""
    try:
        save(path)
        return path
    except OSError as exc:
        rescue = Path(tempfile.gettempdir()) / f"dualsr-rescued-{os.getpid()}-{path.name}"
        try:
            save(rescue)
        except OSError:
            raise DualSRError(
                f"could not write {path} ({exc.strerror or exc}), nor a rescue copy to {rescue}"
            ) from None
        raise DualSRError(
            f"could not write {path} ({exc.strerror or exc}); the result was saved to {rescue} "
            f"instead: move it where you want it"
        ) from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (thread counts, rounds, steps)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _tile_size(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of pixels or 'auto', got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = whole image), got {value}")
    return value


def build_upscaler(args: argparse.Namespace, scale: int | None = None, progress=None) -> Upscaler:
    """Make the upscaler that the parsed options describe."""
    if isinstance(args.tile, int) and args.tile < 0:
        raise ValueError(f"--tile must be a positive number of pixels (or 0), got {args.tile}")
    if args.tile_overlap < 0:
        raise ValueError(f"--tile-overlap must be >= 0, got {args.tile_overlap}")
    if args.model.lower() == BICUBIC:
        if scale is None:
            raise ValueError("--model bicubic needs --scale")
        return BicubicUpscaler(scale)
    backend = getattr(args, "backend", "auto")
    from ..deploy.onnx import is_onnx_file

    precision = getattr(args, "precision", "auto")
    if is_onnx_file(args.model) or backend == "onnxruntime":
        if precision == "bf16":
            raise DualSRError(
                "ONNX Runtime runs this model in fp32: drop --precision bf16, or use a PyTorch "
                "--backend (auto, fused, eager)"
            )
        if args.tile == "auto" or (args.tile is None and args.tile_by_default):
            args.tile = DEFAULT_TILES["fp32"]  # no per-pixel estimate for ONNX Runtime
        upscaler: Upscaler = _onnx_upscaler(args, backend, progress)
    else:
        model = resolve_model(args.model)
        upscaler = TorchUpscaler(
            model,
            device=args.device,
            tile=args.tile if isinstance(args.tile, int) else None,
            tile_overlap=args.tile_overlap,
            ensemble=args.self_ensemble,
            progress=progress,
            backend=backend,
            precision=precision,
        )
        if args.tile == "auto":
            upscaler.tile = auto_tile(model, upscaler.precision, args.tile_overlap)
        elif args.tile is None and args.tile_by_default:
            upscaler.tile = DEFAULT_TILES[upscaler.precision]
    if scale is not None and upscaler.scale != scale:
        raise ValueError(
            f"--scale {scale} does not match the model, which upscales x{upscaler.scale}"
        )
    return upscaler


def _onnx_upscaler(args: argparse.Namespace, backend: str, progress) -> Upscaler:  # noqa: ANN001
    from ..deploy.onnx import OnnxUpscaler, is_onnx_file

    if backend not in ("auto", "onnxruntime"):
        raise DualSRError(
            f"{args.model} is an ONNX model: it runs with --backend onnxruntime, not {backend}"
        )
    if args.device != "cpu":
        raise DualSRError("--backend onnxruntime runs on the CPU: use --device cpu")
    model = args.model if is_onnx_file(args.model) else resolve_model(args.model)
    return OnnxUpscaler(
        model,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        ensemble=args.self_ensemble,
        progress=progress,
    )
