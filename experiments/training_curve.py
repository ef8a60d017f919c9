"""PSNR against CPU-hours for training runs: a markdown table and (with matplotlib) a plot.

    python experiments/training_curve.py ~/dualsr-runs/size-f8b10 ~/dualsr-runs/long-x4 \
        --plot docs/img/psnr_vs_cpu_hours.png --json benchmarks/results/training_curve_x4.json

Reads each RUN/config.yaml (batch size, threads) and RUN/metrics.jsonl (the training rows'
throughput, the validation rows' PSNR). CPU-hours are core-hours of training steps: the wall
time of the steps (validation and pauses excluded) times the threads the run used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from dualsr.provenance import psnr_curve, read_metrics, training_cost


def run_curve(run: Path) -> dict:
    """The run's label, cost and validation curve."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    batch = int(cfg["data"]["batch_size"])
    threads = int(cfg["train"].get("threads") or 1)
    rows = read_metrics(run / "metrics.jsonl")
    model = cfg["model"]
    label = f"{run.name}: n_feats {model['n_feats']}, {model['n_blocks']} RCABs"
    return {
        "run": run.name,
        "label": label,
        "steps_planned": cfg["train"]["steps"],
        "amp": cfg["train"].get("amp"),
        "cost": training_cost(rows, batch, threads),
        "curve": psnr_curve(rows, batch, threads),
    }


def main() -> None:
    """Print the table; write the JSON and the plot when asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--dataset", default="Set5")
    args = parser.parse_args()
    curves = [run_curve(r.expanduser()) for r in args.runs]
    for c in curves:
        print(
            f"\n{c['label']} ({c['cost']['steps']:,} of {c['steps_planned']:,} steps, "
            f"{c['cost']['cpu_hours']:.2f} CPU-h)"
        )
        sets = sorted({k for p in c["curve"] for k in p if k not in ("step", "cpu_hours")})
        print("| step | CPU-hours | " + " | ".join(sets) + " |")
        print("|---:|---:|" + "---:|" * len(sets))
        for p in c["curve"]:
            cells = " | ".join(f"{p[s]:.2f}" if s in p else "" for s in sets)
            print(f"| {p['step']:,} | {p['cpu_hours']:.2f} | {cells} |")
    if args.json:
        args.json.write_text(json.dumps(curves, indent=2) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        for c in curves:
            pts = [p for p in c["curve"] if args.dataset in p]
            ax.plot(
                [p["cpu_hours"] for p in pts],
                [p[args.dataset] for p in pts],
                "o-",
                label=c["label"],
                markersize=3,
            )
        ax.set_xlabel("CPU-hours (core-hours of training steps)")
        ax.set_ylabel(f"{args.dataset} PSNR (dB, Y)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
