"""INT8 (ONNX Runtime static quantization) against float32: speed-up, and PSNR change on Set5/Set14.

Speed: DRN-S x4 at a 90x160 input, ONNX Runtime float32 (the fused graph) vs its INT8 QDQ
version, beside the default PyTorch path, in one interleaved run (:mod:`dualsr.deploy.bench`).

PSNR: only meaningful with trained weights (``--checkpoint``); calibration uses LR patches of
the first ``--calibration-images`` HR images of ``--calibration`` (default: the training
images, never the test sets), then Set5 and Set14 are evaluated with the papers' protocol (Y
channel, border shave = scale) by the float and the INT8 model. dualsr offers INT8 only if the
PSNR loss is <= 0.1 dB on both.

    python benchmarks/bench_int8.py                               # speed only (random weights)
    python benchmarks/bench_int8.py --checkpoint DRNS4x.pt --data ../shared/datasets \
        --calibration ../shared/datasets/T91

Writes benchmarks/results/bench_int8.json and .txt (or --name).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import dualsr
from dualsr.deploy.bench import run_benchmark
from dualsr.deploy.onnx import export_onnx
from dualsr.deploy.quantize import MAX_PSNR_LOSS_DB, quantize_checked

RESULTS = Path(__file__).parent / "results"


def psnr_change(checkpoint: Path, data: Path, calibration: Path, n_calib: int) -> list[dict]:
    """Per test set: PSNR of the float and INT8 ONNX models and the change."""
    model = dualsr.load_model(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx")
        checks = quantize_checked(
            fp32,
            Path(tmp) / "int8.onnx",
            calibration,
            [data / "Set5", data / "Set14"],
            max_loss_db=float("inf"),  # report, do not refuse
            calibration_images=n_calib,
        )
    return [
        {
            "dataset": c.dataset,
            "psnr_fp32": c.psnr_fp32,
            "psnr_int8": c.psnr_int8,
            "change_db": c.change_db,
        }
        for c in checks
    ]


def main() -> None:
    """Parse the options, run, write the results."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="drn-s-x4", help="preset timed for speed")
    p.add_argument("--checkpoint", type=Path, default=None, help="trained weights (for PSNR)")
    p.add_argument("--data", type=Path, default=Path("../shared/datasets"))
    p.add_argument("--calibration", type=Path, default=Path("../shared/datasets/T91"))
    p.add_argument("--calibration-images", type=int, default=16)
    p.add_argument("--input", default="90x160")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--name", default="bench_int8", help="results file name (no suffix)")
    args = p.parse_args()
    h, w = (int(v) for v in args.input.split("x"))
    model = dualsr.load_model(args.checkpoint) if args.checkpoint else None
    model = model or dualsr.create_model(args.model).eval()
    report = run_benchmark(
        {args.model if args.checkpoint is None else str(args.checkpoint): model},
        (h, w),
        ["fused", "onnxruntime", "onnxruntime-int8"],
        threads=args.threads,
        rounds=args.rounds,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    res = {r.backend: r for r in report.results}
    lines = [f"# python {shlex.join(sys.argv)}", report.table(), ""]
    ort, int8 = res["onnxruntime"], res["onnxruntime-int8"]
    if not ort.error and not int8.error:
        lines.append(
            f"INT8 vs ONNX Runtime float32: {ort.median_s / int8.median_s:.2f}x "
            f"(by median); vs the default PyTorch path (fused): "
            f"{res['fused'].median_s / int8.median_s:.2f}x; max |diff| from eager on the "
            f"random benchmark input {int8.max_abs_diff:.2f} (0..255)"
        )
    psnr_rows = None
    if args.checkpoint is None:
        lines.append(
            "PSNR change: not measured: needs trained weights (--checkpoint); random weights "
            "make a PSNR comparison meaningless."
        )
    else:
        psnr_rows = psnr_change(
            args.checkpoint, args.data, args.calibration, args.calibration_images
        )
        for row in psnr_rows:
            lines.append(
                f"{row['dataset']}: PSNR float32 {row['psnr_fp32']:.3f} dB, INT8 "
                f"{row['psnr_int8']:.3f} dB, change {row['change_db']:+.3f} dB"
            )
        ok = all(row["change_db"] >= -MAX_PSNR_LOSS_DB for row in psnr_rows)
        lines.append(f"offer INT8 (PSNR loss <= {MAX_PSNR_LOSS_DB} dB on both): {ok}")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.txt").write_text(text + "\n")
    doc = {"command": lines[0][2:], "psnr": psnr_rows, **report.to_dict()}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
