"""Training throughput on this CPU: LR patches per second of a full dual regression step.

A step is what ``dualsr train`` runs: forward of the primal and the duals, the dual regression
loss, backward, gradient norm, both Adam steps (``dualsr.training.train_step``). Models:

* DRN-S x4 (4.8 M parameters), batch 4 of 48 x 48 LR patches (HR 192);
* the small CPU recipe's model (x4, n_feats 8, 10 RCABs per stage, 0.46 M), batch 16 of 32 x 32.

Each in fp32 and bf16 autocast (``train.amp``), NCHW and channels_last, with glibc malloc tuned
as ``dualsr train`` does on CPU (``--no-tune-malloc``: glibc's defaults). Synthetic batches
(throughput does not depend on the pixels); 2 warm-up steps, then timed steps. Run it on a
quiet machine: the load average is recorded.

    python benchmarks/bench_train_step.py

Writes benchmarks/results/bench_train_step.json and .txt.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from _machine import machine

import dualsr
from dualsr.deploy.allocator import tune_allocator
from dualsr.training import load_config, make_trainer, train_step
from dualsr.training.builders import build_model
from dualsr.training.distributed import DistInfo

RESULTS = Path(__file__).parent / "results"
CASES = {
    "drn-s-x4": (["model.preset=drn-s-x4"], 4, 48),
    "cpu-recipe-x4 (n_feats 8, 10 RCABs)": (
        ["model.scale=4", "model.n_feats=8", "model.n_blocks=10"],
        16,
        32,
    ),
}


def pyramid(batch: int, lr: int, scale: int = 4) -> list[torch.Tensor]:
    """A random float pyramid in [0, 255]: LR, 2x, 4x."""
    g = torch.Generator().manual_seed(0)
    return [torch.rand(batch, 3, lr * f, lr * f, generator=g) * 255 for f in (1, 2, scale)]


#: label -> (train.amp, train.channels_last)
VARIANTS = {
    "fp32": ("none", False),
    "fp32 channels_last": ("none", True),
    "bf16": ("bf16", False),
    "bf16 channels_last": ("bf16", True),
}


def bench(overrides: list[str], batch: int, lr: int, steps: int) -> dict:
    """Seconds per step and LR patches per second after two warm-up steps."""
    base = ["optim.skip_factor=null", "data.train=[unused]", "train.device=cpu"]
    cfg = load_config(None, [*overrides, *base])
    torch.manual_seed(0)
    model, duals = build_model(cfg.model)
    t = make_trainer(cfg, model, duals, torch.device("cpu"), DistInfo())
    data = pyramid(batch, lr)
    for _ in range(2):
        train_step(t, data)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step(t, data)
        times.append(time.perf_counter() - start)
    mean = sum(times) / len(times)
    return {
        "params": dualsr.count_parameters(model),
        "batch": batch,
        "lr_patch": lr,
        "steps": steps,
        "step_s": times,
        "mean_step_s": mean,
        "lr_patches_per_s": batch / mean,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-tune-malloc", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    malloc = None if args.no_tune_malloc else tune_allocator()
    report: dict = {"machine": {**machine(), "malloc_tuning": malloc}, "cases": {}}
    for name, (overrides, batch, lr) in CASES.items():
        for variant, (amp, cl) in VARIANTS.items():
            extra = [f"train.amp={amp}", f"train.channels_last={str(cl).lower()}"]
            report["cases"][f"{name}, {variant}"] = bench(
                [*overrides, *extra], batch, lr, args.steps
            )
    report["machine"]["loadavg_after"] = os.getloadavg()

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_train_step.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [
        f"# training step throughput (fwd + bwd + Adam, dual loss): {m['command']}",
        f"# {m['platform']}, {m['cpus']} CPUs, torch {m['torch']} ({m['torch_threads']} threads);"
        f" load average before {m['loadavg']}, after {m['loadavg_after']}; malloc tuning "
        f"{'on' if m['malloc_tuning'] else 'off'}",
    ]
    for name, r in report["cases"].items():
        lines.append(
            f"{name}: {r['params']:,} params, batch {r['batch']} x {r['lr_patch']}x{r['lr_patch']}"
            f" LR: {r['mean_step_s']:.2f} s/step, {r['lr_patches_per_s']:.2f} LR patches/s "
            f"(mean of {r['steps']} steps after 2 warm-up)"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / "bench_train_step.txt").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
