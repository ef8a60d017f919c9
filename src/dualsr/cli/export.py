"""``dualsr export``: a model to ONNX (dynamic height and width, final SR output only)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..deploy.onnx import DEFAULT_OPSET, export_onnx, onnx_session
from ..deploy.quantize import MAX_PSNR_LOSS_DB
from ..errors import DualSRError
from ..inference import sr_output
from ..models.drn import DRN
from ..pretrained import resolve_model
from .common import add_random_weights_option, check_model_file


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="export a model to ONNX",
        description="Export the final SR output of a model to ONNX: input 'lr' (N x 3 x H x W, "
        "float32 in 0..255, H and W dynamic), output 'sr' (0..255, not clamped); the scale is "
        "stored in the model metadata. Run it with `dualsr upscale --model FILE.onnx`. Needs "
        "pip install 'dualsr[onnx]'.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help="checkpoint file (.safetensors or official .pt), preset with trained weights, "
        "released model's name or http(s) URL",
    )
    add_random_weights_option(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET})"
    )
    p.add_argument(
        "--graph",
        choices=["fused", "eager"],
        default="fused",
        help="'fused' (default): folded convolutions, fastest in ONNX Runtime; 'eager': the "
        "model as written",
    )
    p.add_argument(
        "--resize-op",
        action="store_true",
        help="export the bicubic pre-upsampling as an ONNX Resize node (cubic), the graph of "
        "earlier versions, which only some runtimes read (ONNX Runtime does, OpenCV's dnn does "
        "not). Default: the portable graph, with the bicubic as fixed-weight convolutions and no "
        "Resize, DepthToSpace or Shape node. --int8 always quantizes the Resize graph.",
    )
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip the check that ONNX Runtime reproduces PyTorch on a small input",
    )
    q = p.add_argument_group(
        "INT8 (experimental)",
        "Write an ONNX Runtime static-quantized model instead: int8 convolutions calibrated on "
        "--calibration images. It is written only if its PSNR (Y, shave = scale) on every "
        f"--validate folder is at most {MAX_PSNR_LOSS_DB} dB below the float model's.",
    )
    q.add_argument("--int8", action="store_true", help="quantize to INT8 (needs the two below)")
    q.add_argument(
        "--calibration", type=Path, metavar="DIR", help="HR training images for calibration"
    )
    q.add_argument(
        "--validate", type=Path, nargs="+", metavar="DIR", help="HR benchmark folders (Set5 ...)"
    )
    q.add_argument(
        "--int8-layers",
        choices=["all", "rcab"],
        default="all",
        help="which convolutions become int8: all but the first two and the last (all, "
        "default), or only the RCABs' 3x3 ones (rcab: more accurate, e.g. drn-t-x4 -0.02 dB "
        "instead of -0.06 on Set5, and slower; docs/deployment.md)",
    )
    q.add_argument(
        "--max-psnr-loss",
        type=float,
        default=MAX_PSNR_LOSS_DB,
        metavar="DB",
        help=f"largest PSNR loss accepted (default: {MAX_PSNR_LOSS_DB})",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Export, then (if onnxruntime is installed) compare with PyTorch on a small input."""
    if args.output.suffix.lower() != ".onnx":
        raise DualSRError(f"the output should be a .onnx file, got {args.output}")
    if args.int8 and not (args.calibration and args.validate):
        raise DualSRError("--int8 needs --calibration DIR and --validate DIR [DIR ...]")
    check_model_file(
        args.model,
        "export reads a .safetensors or .pt checkpoint, a preset, a released model's name or an "
        "http(s) URL (an .onnx file is already exported: run it with dualsr upscale --model FILE)",
    )
    model = resolve_model(args.model, random_weights=args.random_weights)
    if args.int8:
        return _export_int8(model, args)
    path = export_onnx(
        model,
        args.output,
        opset=args.opset,
        fused=args.graph == "fused",
        portable=not args.resize_op,
    )
    kind = "Resize node" if args.resize_op else "portable"
    print(f"wrote {path} (x{model.scale}, opset {args.opset}, {args.graph} graph, {kind})")
    if not args.no_check:
        try:
            session = onnx_session(path)
        except DualSRError as exc:
            print(f"not checked: {exc}")
            return 0
        lr = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0)) * 255
        with torch.inference_mode():
            ref = sr_output(model, lr).numpy()
        out = session.run(["sr"], {"lr": lr.numpy()})[0]
        diff = float(np.abs(out - ref).max())
        print(f"check: ONNX Runtime vs PyTorch on a 24x20 input, max |diff| = {diff:.2e} (0..255)")
        if diff > 1e-3:
            raise DualSRError(f"the exported model differs from PyTorch by {diff:.3g} (> 1e-3)")
    return 0


def _export_int8(model: DRN, args: argparse.Namespace) -> int:
    from ..deploy.quantize import quantize_checked

    with tempfile.TemporaryDirectory() as tmp:
        # the Resize graph: quantize_onnx keeps the first two convolutions (mean shift, head) in
        # float32 by position, and the portable graph has the bicubic convolution between them
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", opset=args.opset, portable=False)
        checks = quantize_checked(
            fp32,
            args.output,
            args.calibration,
            args.validate,
            max_loss_db=args.max_psnr_loss,
            layers=args.int8_layers,
        )
    for c in checks:
        print(
            f"{c.dataset}: PSNR float32 {c.psnr_fp32:.3f} dB, INT8 {c.psnr_int8:.3f} dB "
            f"({c.change_db:+.3f} dB)"
        )
    print(f"wrote {args.output} (INT8 {args.int8_layers}, x{model.scale}, opset {args.opset})")
    return 0
