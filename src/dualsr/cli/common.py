"""Options shared by the subcommands that run a model."""

from __future__ import annotations

import argparse

from ..errors import DualSRError
from ..inference import DEFAULT_TILE_OVERLAP, BicubicUpscaler, TorchUpscaler, Upscaler
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
    parser: argparse.ArgumentParser, default_model: str | None, default_tile: int | None = None
) -> None:
    """--model, --tile, --tile-overlap, --self-ensemble, --device.

    ``default_tile`` None processes whole images unless --tile is given (evaluation protocol);
    a number tiles images larger than that many LR pixels (bounded memory for users).
    """
    g = parser.add_argument_group("model and inference")
    g.add_argument(
        "--model",
        "-m",
        default=default_model,
        required=default_model is None,
        help="checkpoint (.safetensors or official .pt), preset name, 'bicubic', or an exported "
        "model (.onnx, run with ONNX Runtime)"
        + (f" (default: {default_model})" if default_model else ""),
    )
    g.add_argument(
        "--tile",
        type=int,
        default=default_tile,
        metavar="N",
        help="process the LR image in N x N tiles to bound memory; 0 = whole image "
        + (f"(default: {default_tile})" if default_tile else "(default: whole image)"),
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


def build_upscaler(args: argparse.Namespace, scale: int | None = None, progress=None) -> Upscaler:
    """Make the upscaler that the parsed options describe."""
    if args.tile is not None and args.tile < 0:
        raise ValueError(f"--tile must be a positive number of pixels (or 0), got {args.tile}")
    if args.tile_overlap < 0:
        raise ValueError(f"--tile-overlap must be >= 0, got {args.tile_overlap}")
    if args.model.lower() == BICUBIC:
        if scale is None:
            raise ValueError("--model bicubic needs --scale")
        return BicubicUpscaler(scale)
    backend = getattr(args, "backend", "auto")
    from ..deploy.onnx import is_onnx_file

    if is_onnx_file(args.model) or backend == "onnxruntime":
        upscaler: Upscaler = _onnx_upscaler(args, backend, progress)
    else:
        upscaler = TorchUpscaler(
            resolve_model(args.model),
            device=args.device,
            tile=args.tile,
            tile_overlap=args.tile_overlap,
            ensemble=args.self_ensemble,
            progress=progress,
            backend=backend,
        )
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
