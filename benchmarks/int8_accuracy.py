"""INT8 (ONNX Runtime, static QDQ) accuracy of the shipped models: PSNR change on Set5/Set14/BSD100
against their float32 ONNX graphs, for two calibration sources, and the output fidelity on a fixed
synthetic input.

Calibration sources: ``t91`` (LR patches of the first 16 T91 HR images, as ``dualsr export --int8``
does with ``--calibration T91``) and ``synthetic`` (:func:`dualsr.deploy.quantize.synthetic_images`:
1/f-spectrum images, no data set). Fidelity: PSNR of the INT8 output against the float32 output
on a fixed synthetic 64x64 LR input (no HR needed: what a machine can check by itself).

The INT8 kernels differ by CPU (VNNI dot products vs AVX2's saturating u8 x s8 pairs): the CPU
flags are recorded with the results, and the numbers hold for that kind of CPU.

    python benchmarks/int8_accuracy.py --data ../shared/datasets --models drn-t-x4 drn-t-x8

``--layers rcab`` quantizes only the RCABs' 3x3 convolutions (the rest stays float32); each row
also records one 180x320 forward's time of both graphs (median of 3).

Writes benchmarks/results/int8_accuracy_<cpu kind>.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import dualsr
from dualsr.data.image_io import list_images, load_rgb_uint8
from dualsr.deploy.onnx import OnnxUpscaler, export_onnx
from dualsr.deploy.quantize import (
    calibration_patches,
    quantize_onnx,
    synthetic_calibration,
    synthetic_images,
)
from dualsr.evaluation import evaluate_folder
from dualsr.fileio import atomic_write_bytes
from dualsr.pretrained import resolve_checkpoint_path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def fidelity_db(a: OnnxUpscaler, b: OnnxUpscaler, seed: int = 123) -> float:
    """PSNR (RGB, 0..255) of ``b``'s output against ``a``'s on a fixed synthetic LR input."""
    lr = synthetic_images(1, 64, seed)[0]
    x, y = a(lr, np.float32), b(lr, np.float32)
    mse = float(np.mean((np.clip(x, 0, 255) - np.clip(y, 0, 255)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def forward_ms(upscaler: OnnxUpscaler, runs: int = 3) -> float:
    """Median milliseconds of one whole 180x320 LR forward (720p out at x4), after a warm-up."""
    lr = synthetic_images(1, 320, seed=7)[0][:180]
    upscaler(lr)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        upscaler(lr)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main() -> None:
    """Parse the options, measure, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--models", nargs="+", default=["drn-t-x4", "drn-t50-x4", "drn-t-x8"])
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    p.add_argument("--calibrations", nargs="+", default=["synthetic", "t91"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--layers",
        choices=["all", "rcab"],
        default="all",
        help="quantize every convolution but the ends (all) or only the RCABs' 3x3 ones (rcab)",
    )
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    rows = []
    t0 = time.time()
    for name in args.models:
        model = dualsr.load_model(resolve_checkpoint_path(name)).eval()
        with tempfile.TemporaryDirectory() as tmp:
            fp32_path = export_onnx(model, Path(tmp) / "fp32.onnx")
            fp32 = OnnxUpscaler(fp32_path, threads=args.threads)
            base = {s: evaluate_folder(fp32, args.data / s).psnr for s in args.sets}
            for calib in args.calibrations:
                if calib == "synthetic":  # what --backend auto calibrates its INT8 graphs on
                    patches = synthetic_calibration(model.scale)
                else:
                    files = list_images(args.data / "T91" / "HR") or list_images(args.data / "T91")
                    hr = [load_rgb_uint8(f) for f in files[:16]]
                    patches = calibration_patches(hr, model.scale, patch=48, per_image=4)
                q = quantize_onnx(
                    fp32_path, Path(tmp) / f"int8_{calib}.onnx", patches, layers=args.layers
                )
                int8 = OnnxUpscaler(q, threads=args.threads)
                row = {
                    "model": name,
                    "calibration": calib,
                    "layers": args.layers,
                    "fidelity_db": fidelity_db(fp32, int8),
                    "ms_180x320": {"fp32": forward_ms(fp32), "int8": forward_ms(int8)},
                }
                for s in args.sets:
                    got = evaluate_folder(int8, args.data / s).psnr
                    row[s] = {"psnr_fp32": base[s], "psnr_int8": got, "change_db": got - base[s]}
                rows.append(row)
                changes = " ".join(f"{s} {row[s]['change_db']:+.3f}" for s in args.sets)
                fid, ms = row["fidelity_db"], row["ms_180x320"]
                print(
                    f"{name} {calib} {args.layers}: fidelity {fid:.1f} dB; {changes}; 180x320 "
                    f"fp32 {ms['fp32']:.0f} ms, int8 {ms['int8']:.0f} ms",
                    flush=True,
                )
    out = args.output or RESULTS / f"int8_accuracy_{info['cpu_kind']}.json"
    doc = {
        "command": "python " + shlex.join(sys.argv),
        "machine": info,
        "seconds": round(time.time() - t0, 1),
        "rows": rows,
    }
    atomic_write_bytes(out, (json.dumps(doc, indent=2) + "\n").encode())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
