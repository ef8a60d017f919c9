"""``dualsr export``: a model to ONNX (dynamic height and width, final SR output only)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..deploy.onnx import DEFAULT_OPSET, export_onnx, onnx_session
from ..errors import DualSRError
from ..inference import sr_output
from ..pretrained import resolve_model


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
    p.add_argument("model", metavar="MODEL", help="checkpoint file or preset name")
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
        "--no-check",
        action="store_true",
        help="skip the check that ONNX Runtime reproduces PyTorch on a small input",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Export, then (if onnxruntime is installed) compare with PyTorch on a small input."""
    if args.output.suffix.lower() != ".onnx":
        raise DualSRError(f"the output should be a .onnx file, got {args.output}")
    model = resolve_model(args.model)
    path = export_onnx(model, args.output, opset=args.opset, fused=args.graph == "fused")
    print(f"wrote {path} (x{model.scale}, opset {args.opset}, {args.graph} graph)")
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
