"""PSNR-Y of bf16 inference against fp32, per shipped model and test set (the papers' protocol).

Each model is evaluated three ways on the same LR inputs: fp32 (the fused path), bf16 as
``dualsr upscale`` runs it by default on CPUs with native bf16 (fused, bf16 body, fp32 ends),
and bf16 under ``torch.autocast`` (the eager fallback). The change against fp32 is what the
precision costs; the goal is |change| <= 0.01 dB everywhere.

    python benchmarks/bf16_psnr.py --data ../shared/datasets
    python benchmarks/bf16_psnr.py --data ../shared/datasets --models drn-t-x4 my.safetensors

Writes benchmarks/results/bf16_psnr.json and .txt (or --name).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _machine import machine

from dualsr.evaluation import evaluate_folder
from dualsr.inference import TorchUpscaler
from dualsr.pretrained import resolve_model

RESULTS = Path(__file__).parent / "results"
WAYS = {  # label -> TorchUpscaler options
    "fp32": {"precision": "fp32"},
    "bf16 (fused, default)": {"precision": "bf16"},
    "bf16 (autocast eager)": {"precision": "bf16", "backend": "eager"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding the test sets")
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    parser.add_argument("--models", nargs="+", default=["drn-t-x4", "drn-t50-x4"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="bf16_psnr")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for spec in args.models:
        model = resolve_model(spec)
        for label, options in WAYS.items():
            up = TorchUpscaler(model, tile=0, **options)
            for name in args.sets:
                result = evaluate_folder(up, args.data / name)
                rows.append(
                    {
                        "model": spec,
                        "way": label,
                        "backend": up.backend,
                        "set": name,
                        "psnr": result.psnr,
                        "ssim": result.ssim,
                        "seconds": result.seconds,
                    }
                )
                print(f"{spec:<14} {label:<22} {name:<7} {result.psnr:.4f}", flush=True)
    base = {(r["model"], r["set"]): r["psnr"] for r in rows if r["way"] == "fp32"}
    for r in rows:
        r["change_db"] = r["psnr"] - base[(r["model"], r["set"])]
    lines = [
        "# PSNR-Y change of bf16 inference vs fp32 (whole images, papers' protocol): "
        f"python benchmarks/bf16_psnr.py --data {args.data} --models {' '.join(args.models)}",
        f"# {machine()['platform']}, torch {torch.__version__}",
        f"{'model':<14} {'way':<22} " + " ".join(f"{s:>17}" for s in args.sets),
    ]
    for spec in args.models:
        for label in WAYS:
            cells = []
            for name in args.sets:
                r = next(r for r in rows if (r["model"], r["way"], r["set"]) == (spec, label, name))
                cells.append(f"{r['psnr']:8.4f} ({r['change_db']:+.4f})")
            lines.append(f"{spec:<14} {label:<22} " + " ".join(f"{c:>17}" for c in cells))
    worst = max(abs(r["change_db"]) for r in rows)
    lines.append(f"largest |change|: {worst:.4f} dB (goal <= 0.01)")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.txt").write_text(text + "\n")
    doc = {"machine": machine(), "rows": rows, "largest_abs_change_db": worst}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
