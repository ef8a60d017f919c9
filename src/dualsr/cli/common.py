"""Options shared by the subcommands that run a model."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DualSRError
from ..pretrained import BICUBIC, DEFAULT_SCALE
from ..tiling import DEFAULT_TILE_OVERLAP, DEFAULT_TILES, MIN_TILE

if TYPE_CHECKING:  # PyTorch is imported when a model is built, not by the parsers
    from ..inference import Upscaler

#: --backend choices: the PyTorch paths of TorchUpscaler, then ONNX Runtime.
BACKEND_CHOICES = ["auto", "eager", "fused", "compile", "winograd", "onnxruntime"]


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
    """--model, --random-weights, --tile, --tile-overlap, --self-ensemble, --device, --backend,
    --precision.

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
    add_random_weights_option(g)
    g.add_argument(
        "--tile",
        "-t",
        type=_tile_size,
        default=None,
        metavar="N|auto",
        help="process the LR image in tiles to bound memory: each tile's input holds at most "
        f"as many pixels as an N x N tile's, the grid cut for the least work (N >= {MIN_TILE}); "
        "0 = whole "
        "image; 'auto' = the largest tile whose estimated memory fits in half the memory "
        "available now "
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
        type=device_name,
        metavar="cpu|cuda|cuda:N|mps",
        help="where to run the model: cpu (default), cuda (the current GPU), cuda:N (GPU N) or "
        "mps (Apple silicon); an unavailable device is an error before any work",
    )
    g.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_CHOICES,
        help="how to run the model: 'auto' (default) is the fastest correct path here (on a "
        "CPU with native bf16 the fused PyTorch module in bf16; on other CPUs the fastest of "
        "fused PyTorch and ONNX Runtime, timed once per machine and model in a few seconds and "
        "cached, see `dualsr env`; an .onnx --model runs with ONNX Runtime); 'eager' the model as "
        "written; 'fused' folded convolutions, final output only, channels_last; 'compile' "
        "torch.compile of the fused module (needs a C++ compiler, slow first call per size); "
        "'winograd' fused fp32 with the 3x3 convolutions by Winograd F(4x4,3x3) (AVX2 CPUs, "
        "a C compiler on first use; not rounded like direct convolution, so auto takes it under "
        "--precision auto only); "
        "'onnxruntime' exports the model on the fly (or runs an .onnx --model); needs "
        "pip install 'dualsr[onnx]'",
    )
    g.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="arithmetic of the PyTorch paths: 'auto' (default) is bf16 where the device computes "
        "it natively (CPUs with AVX512_BF16 or AMX, recent GPUs; about 1.8x faster, PSNR within "
        "0.01 dB) and fp32 elsewhere; 'fp32' forces exact fp32, never bf16 or int8 "
        "(docs/deployment.md)",
    )


def add_random_weights_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--random-weights``: accept a preset that has no trained weights (random weights)."""
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="allow a preset without trained weights, built with random weights (meaningless "
        "images: for trying the pipeline or timing only); without it such a preset is an error "
        "that names the trained models",
    )


def device_name(text: str) -> str:
    """argparse type of --device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (lower-cased).
    Whether it is available is checked later (:func:`dualsr.inference.check_device`)."""
    value = text.strip().lower()
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", value):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N or mps, got {text!r}")
    return value


#: What a model file starts with when it is not a checkpoint: (magic bytes, what it is).
_NOT_CHECKPOINT_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
)


def describe_non_checkpoint(path: Path) -> str | None:
    """What ``path`` is when it is clearly not a model checkpoint (an ONNX model, an image, a
    text file, an unknown format); None when it may be one (safetensors, a PyTorch zip or
    pickle), leaving the loader to judge."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    if path.suffix.lower() == ".onnx" or _looks_like_onnx(head):
        return "an ONNX model"
    if len(head) >= 9 and head[8:9] == b"{":
        return None  # safetensors: an 8-byte header length, then the JSON header
    if head.startswith((b"PK", b"\x80")):
        return None  # torch.save: a zip archive, or a pickle in the legacy format
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    for magic, what in _NOT_CHECKPOINT_MAGIC:
        if head.startswith(magic):
            return what
    if not head:
        return None  # empty: the loader says so
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "not a format dualsr reads"


def _looks_like_onnx(head: bytes) -> bool:
    """An ONNX ModelProto starts with field 1 (ir_version, a small varint), then a
    length-delimited field among 2..8 (producer name, ..., graph, opset imports)."""
    return (
        len(head) > 2
        and head[0] == 0x08
        and head[1] < 64
        and head[2] & 7 == 2
        and 2 <= head[2] >> 3 <= 8
    )


def check_model_file(spec: str, takes: str) -> None:
    """If ``spec`` is an existing file that is clearly not a checkpoint (an exported ONNX model,
    an image, ...), DualSRError in one line; ``takes`` lists what the command accepts."""
    path = Path(spec).expanduser()
    if not path.is_file():
        return
    what = describe_non_checkpoint(path)
    if what is not None:
        raise DualSRError(
            f"{spec} could not be loaded: it is {what}, not a model checkpoint; {takes}"
        )


def interactive_stderr() -> bool:
    """Whether stderr is a terminal: progress bars then; plain lines (no carriage returns or
    escape codes) in logs, pipes and CI."""
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


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
    if 0 < value < MIN_TILE:
        raise argparse.ArgumentTypeError(
            f"{value} is below the smallest useful tile, {MIN_TILE}: each tile is computed with "
            f"--tile-overlap ({DEFAULT_TILE_OVERLAP} by default) context pixels on every side and "
            "the channel attention pools over the tile, so tiny tiles multiply the work (and "
            f"drift from whole-image results) without saving memory; use {MIN_TILE} or more, "
            "0 (whole image) or auto"
        )
    return value


#: What --model accepts in upscale and eval (the end of the error for a file that is not one).
MODEL_TAKES = (
    "--model takes a dualsr .safetensors or official .pt checkpoint, a preset, a released "
    "model's name, an http(s) URL, 'bicubic', or an exported model named *.onnx"
)


def build_upscaler(args: argparse.Namespace, scale: int | None = None, progress=None) -> Upscaler:
    """Make the upscaler that the parsed options describe. ``--model bicubic`` without a scale
    is x4 (the default scale); the device is checked before any model is loaded."""
    if isinstance(args.tile, int) and args.tile < 0:
        raise ValueError(f"--tile must be a positive number of pixels (or 0), got {args.tile}")
    if args.tile_overlap < 0:
        raise ValueError(f"--tile-overlap must be >= 0, got {args.tile_overlap}")
    from ..deploy.onnx import is_onnx_file
    from ..inference import BicubicUpscaler, TorchUpscaler, check_device
    from ..pretrained import resolve_model

    if args.model.lower() == BICUBIC:
        return BicubicUpscaler(scale or DEFAULT_SCALE)
    backend = getattr(args, "backend", "auto")

    check_device(args.device)
    if not is_onnx_file(args.model):
        what = describe_non_checkpoint(Path(args.model).expanduser())
        if what == "an ONNX model" and Path(args.model).is_file():
            raise DualSRError(
                f"{args.model} is an ONNX model without the .onnx suffix: rename it to "
                "*.onnx to run it with ONNX Runtime"
            )
        check_model_file(args.model, MODEL_TAKES)
    random_weights = getattr(args, "random_weights", False)
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
        model = resolve_model(args.model, random_weights=random_weights)
        tile = args.tile if isinstance(args.tile, int) or args.tile == "auto" else None
        if backend == "auto":  # the fastest correct path here (deploy/autoselect.py)
            from ..deploy.autoselect import auto_upscaler

            upscaler = auto_upscaler(
                model,
                device=args.device,
                precision=precision,
                tile=tile,
                tile_overlap=args.tile_overlap,
                ensemble=args.self_ensemble,
                progress=progress,
            )
        else:
            upscaler = TorchUpscaler(
                model,
                device=args.device,
                tile=tile,
                tile_overlap=args.tile_overlap,
                ensemble=args.self_ensemble,
                progress=progress,
                backend=backend,
                precision=precision,
            )
        if args.tile is None and args.tile_by_default:
            # int8 (ONNX Runtime) holds fp32 activations between its layers: fp32's tile
            upscaler.tile = DEFAULT_TILES.get(upscaler.precision, DEFAULT_TILES["fp32"])
    if scale is not None and upscaler.scale != scale:
        raise ValueError(
            f"--scale {scale} does not match the model, which upscales x{upscaler.scale}"
        )
    return upscaler


def _onnx_upscaler(args: argparse.Namespace, backend: str, progress) -> Upscaler:  # noqa: ANN001
    from ..deploy.onnx import OnnxUpscaler, is_onnx_file
    from ..pretrained import resolve_model

    if backend not in ("auto", "onnxruntime"):
        raise DualSRError(
            f"{args.model} is an ONNX model: it runs with --backend onnxruntime, not {backend}"
        )
    if args.device != "cpu":
        raise DualSRError("--backend onnxruntime runs on the CPU: use --device cpu")
    model = (
        args.model
        if is_onnx_file(args.model)
        else resolve_model(args.model, random_weights=getattr(args, "random_weights", False))
    )
    return OnnxUpscaler(
        model,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        ensemble=args.self_ensemble,
        progress=progress,
    )
