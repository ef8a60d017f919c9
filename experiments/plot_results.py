"""Plots for docs/RESULTS.md: training curves with/without the dual loss, and PSNR vs MACs.

    python experiments/plot_results.py --runs runs --out docs/img

Reads RUN/metrics.jsonl of runs/ablation-dual and runs/ablation-primal, and the eval results
(RUN/eval*/results.json) of the base and compressed models under runs/compress. Needs matplotlib
(`pip install matplotlib`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import dualsr
from dualsr.profiling import count_macs

MAC_INPUT = (180, 320)  # LR input of a 1280x720 output at x4


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def smooth(values: list[float], k: int = 10) -> list[float]:
    """Trailing moving average."""
    out = []
    for i in range(len(values)):
        window = values[max(0, i - k + 1) : i + 1]
        out.append(sum(window) / len(window))
    return out


def plot_training(runs: Path, out: Path) -> None:
    """Primal loss and Set5 validation PSNR against steps for both ablation arms."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for arm, label in (("dual", "dual regression (lambda 0.1)"), ("primal", "primal only")):
        rows = read_jsonl(runs / f"ablation-{arm}" / "metrics.jsonl")
        train = [r for r in rows if "primal" in r]
        val = [r for r in rows if "val_psnr" in r]
        ax1.plot([r["step"] for r in train], smooth([r["primal"] for r in train]), label=label)
        ax2.plot([r["step"] for r in val], [r["val_psnr"] for r in val], marker="o", label=label)
    ax1.set(xlabel="step", ylabel="primal L1 loss (0-255, smoothed)", title="training loss")
    ax2.set(xlabel="step", ylabel="Set5 PSNR (dB, Y)", title="validation")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=100)


def plot_compression(runs: Path, out: Path) -> None:
    """Set5 PSNR against MACs for the base model and every compressed model found."""
    import matplotlib.pyplot as plt

    points = []
    base = runs / "compress" / "base.safetensors"
    base_eval = runs / "ablation-dual" / "eval" / "results.json"
    if base.is_file() and base_eval.is_file():
        points.append(("base", base, base_eval))
    for ev in sorted((runs / "compress").glob("eval-*/results.json")):
        name = ev.parent.name.removeprefix("eval-")
        points.append((name, runs / "compress" / f"ft-{name}" / "latest.safetensors", ev))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ckpt, ev in points:
        macs = count_macs(dualsr.load_model(ckpt), MAC_INPUT) / 1e9
        psnr = next(
            d["psnr"] for d in json.loads(ev.read_text())["datasets"] if d["dataset"] == "Set5"
        )
        ax.scatter(macs, psnr)
        ax.annotate(name, (macs, psnr), textcoords="offset points", xytext=(4, 4))
    ax.set(
        xlabel=f"multiply-adds (G) at a {MAC_INPUT[0]}x{MAC_INPUT[1]} input",
        ylabel="Set5 PSNR (dB, Y)",
        title="x4, CPU-scale models",
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "psnr_vs_macs.png", dpi=100)


def main() -> None:
    """Write both plots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    plot_training(args.runs, args.out)
    plot_compression(args.runs, args.out)


if __name__ == "__main__":
    main()
