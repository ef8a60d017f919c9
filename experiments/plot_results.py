"""Plots for docs/RESULTS.md: training curves with/without the dual loss, and PSNR vs MACs.

    python experiments/plot_results.py --runs runs --out docs/img

Reads RUN/metrics.jsonl of runs/ablation-dual and runs/ablation-primal, and the eval results
(eval-*/results.json, read by experiments/compression_table.py) of the base and compressed models
under runs/compress. Needs matplotlib (`pip install 'dualsr[plots]'`).
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
    """Set5 PSNR against MACs: the base model, and every method across the pruning rates."""
    import matplotlib.pyplot as plt
    from compression_table import rows, scores

    fig, ax = plt.subplots(figsize=(7, 4.5))
    base = runs / "compress" / "base.safetensors"
    base_eval = runs / "ablation-dual" / "eval" / "results.json"
    if base.is_file() and base_eval.is_file():
        macs = count_macs(dualsr.load_model(base), MAC_INPUT) / 1e9
        ax.scatter([macs], [scores(base_eval)["Set5"][0]], marker="*", s=150, c="k")
        ax.annotate(
            "unpruned",
            (macs, scores(base_eval)["Set5"][0]),
            xytext=(-60, -4),
            textcoords="offset points",
        )
    by_method: dict[str, list[dict]] = {}
    for row in rows(runs / "compress"):
        by_method.setdefault(row["method"] + row["suffix"], []).append(row)
    styles = [("o", "-", 9), ("s", "--", 7), ("^", "-.", 8), ("D", ":", 5), ("v", "-", 7)]
    for i, (method, points) in enumerate(sorted(by_method.items())):
        points.sort(key=lambda r: r["macs"])
        xs = [r["macs"] / 1e9 for r in points]
        ys = [r["scores"]["Set5"][0] for r in points]
        marker, line, size = styles[i % len(styles)]
        # different markers and sizes, so methods with identical results stay visible
        ax.plot(xs, ys, marker=marker, linestyle=line, markersize=size, label=method, alpha=0.8)
    ax.set(
        xlabel=f"multiply-adds (G) at a {MAC_INPUT[0]}x{MAC_INPUT[1]} LR input",
        ylabel="Set5 PSNR (dB, Y)",
        title="drn-t-x4 compressed at 30/50/70%, 400-step fine-tuning",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
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
