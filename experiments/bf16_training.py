"""fp32 against bf16 training on the CPU recipe: PSNR at equal steps and at equal wall time.

The runs (each `dualsr train --config configs/cpu-drn-x4.yaml`, channels_last, 2 threads):

    for s in 0 1; do
      dualsr train --config configs/cpu-drn-x4.yaml --run-dir RUNS/amp-fp32-s$s \\
        --set train.amp=none --set train.seed=$s --set train.steps=500 --set val.every=0 \\
        --set train.channels_last=true --set train.threads=2
      ... --run-dir RUNS/amp-bf16-s$s     --set train.amp=bf16 ... --set train.steps=500
      ... --run-dir RUNS/amp-bf16-920-s$s --set train.amp=bf16 ... --set train.steps=920
    done

(920 bf16 steps take the wall time of 500 fp32 steps: 0.81 against 0.44 s a step, measured on
the idle machine.) This script evaluates each run's final weights in fp32 with the papers'
protocol on Set5 and Set14 and reads the step time from its metrics (the median over the logged
windows, so pauses of the machine do not count), then writes the table:

    python experiments/bf16_training.py --runs ~/dualsr-runs --data ../shared/datasets

Writes benchmarks/results/bf16_training.{txt,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

import dualsr
from dualsr.evaluation import evaluate_folder
from dualsr.inference import TorchUpscaler

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
GROUPS = {  # label -> run-name prefix (followed by -s<seed>)
    "fp32, 500 steps": "amp-fp32",
    "bf16, 500 steps (equal steps)": "amp-bf16",
    "bf16, 920 steps (equal wall time)": "amp-bf16-920",
}


def step_seconds(run: Path) -> float:
    """Median seconds per step over the logged windows (batch / patches per second)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    cfg = dualsr.load_config(run / "config.yaml")
    rates = [r["patches_per_s"] for r in rows if "patches_per_s" in r]
    return cfg.data.batch_size / statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for label, prefix in GROUPS.items():
        for seed in args.seeds:
            run = args.runs / f"{prefix}-s{seed}"
            if not (run / "latest.safetensors").is_file():
                print(f"missing: {run}")
                continue
            model = dualsr.load_model(run / "latest.safetensors")
            up = TorchUpscaler(model, tile=0, precision="fp32")
            scores = {s: evaluate_folder(up, args.data / s).psnr for s in ("Set5", "Set14")}
            step = dualsr.load_checkpoint(run / "latest.safetensors").metadata.get("step")
            rows.append(
                {
                    "group": label,
                    "seed": seed,
                    "run": run.name,
                    "step": step,
                    **scores,
                    "s_per_step": step_seconds(run),
                }
            )
            print(rows[-1], flush=True)
    lines = [
        "# fp32 vs bf16 training, CPU recipe (n_feats 8, 10 RCABs, batch 16 of 32x32 LR, lr 1e-3 "
        "cosine), channels_last, 2 threads; final weights evaluated in fp32 (Y, border 4)",
        "# python experiments/bf16_training.py --runs RUNS --data ../shared/datasets",
        f"{'group':<34} {'seed':>4} {'steps':>5} {'Set5':>7} {'Set14':>7} {'s/step':>7}",
    ]
    for r in rows:
        lines.append(
            f"{r['group']:<34} {r['seed']:>4} {r['step']!s:>5} {r['Set5']:>7.3f} "
            f"{r['Set14']:>7.3f} {r['s_per_step']:>7.3f}"
        )
    lines.append("means over seeds:")
    for label in GROUPS:
        group = [r for r in rows if r["group"] == label]
        if group:
            mean = {
                k: statistics.mean(r[k] for r in group) for k in ("Set5", "Set14", "s_per_step")
            }
            spread = {k: max(r[k] for r in group) - min(r[k] for r in group) for k in ("Set5",)}
            lines.append(
                f"{label:<34} Set5 {mean['Set5']:.3f} (range {spread['Set5']:.3f}), "
                f"Set14 {mean['Set14']:.3f}, {mean['s_per_step']:.3f} s/step"
            )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bf16_training.txt").write_text(text + "\n")
    (RESULTS / "bf16_training.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
