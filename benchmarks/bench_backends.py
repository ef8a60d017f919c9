"""Inference backends on DRN-S, DRN-S30/50/70 and DRN-L (x4), and the issue's speed targets.

One interleaved run (every round times every model on every backend once, so load from other
processes hits all of them alike) at a 90x160 LR input (a 360x640 output), with the ceiling
convolution timed in the same rounds. Then the targets are checked from these numbers:

1. the default CPU path of ``dualsr upscale`` ("fused") on DRN-S is >= 1.6x faster than plain
   PyTorch eager fp32 NCHW, and reaches >= 75% of the ceiling in multiply-adds per second;
2. the DRN-S30/50/70 speed-ups over DRN-S are >= 0.8x their multiply-add ratios.

    python benchmarks/bench_backends.py                    # all models, default backends
    python benchmarks/bench_backends.py --models drn-s-x4 --backends eager,fused --rounds 9
    python benchmarks/bench_backends.py --models drn-s-x4,drn-s70-x4,drn-s70-x4@16

A model name ``PRESET@16`` is the preset's channel configuration refit, at the same
multiply-adds (within 2%, :func:`dualsr.compression.budget.fit_to_budget`), to widths that are
multiples of 16: what ``dualsr search --multiple 16`` would produce for a CPU target. A speed
study of SIMD-aligned widths (an AVX-512 register holds 16 floats), not a trained model.

Writes benchmarks/results/bench_backends.json and .txt (or --name).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

import dualsr
from dualsr.compression.budget import Budget, CostModel, config_cost, fit_to_budget
from dualsr.deploy.bench import BackendResult, BenchReport, run_benchmark
from dualsr.models.drn import DRN, full_widths
from dualsr.models.registry import get_preset, preset_channel_config

RESULTS = Path(__file__).parent / "results"
MODELS = ["drn-s-x4", "drn-s30-x4", "drn-s50-x4", "drn-s70-x4", "drn-l-x4"]
BACKENDS = ["eager", "channels_last", "fused", "compile", "onnxruntime"]
INPUT_HW = (90, 160)  # the LR input of every model here (a 360x640 output)
DEFAULT_PATH = "fused"  # what TorchUpscaler(backend="auto") runs on a CPU


def build(name: str) -> DRN:
    """A preset, or ``PRESET@K``: its widths refit to multiples of K at equal multiply-adds."""
    if "@" not in name:
        return dualsr.create_model(name).eval()
    base, k = name.split("@")
    p = get_preset(base)
    full = DRN(p.scale, p.n_feats, p.n_blocks)
    widths = preset_channel_config(base) or full_widths(p.scale, p.n_feats, p.n_blocks)
    macs = config_cost(full.arch, widths, INPUT_HW)[1]
    cost_model = CostModel.from_arch(full.arch, INPUT_HW)
    fit = fit_to_budget(cost_model, widths, Budget(macs=macs, input_hw=INPUT_HW), int(k))
    return DRN(p.scale, p.n_feats, p.n_blocks, channel_config=fit.channel_config).eval()


def check_targets(report: BenchReport) -> list[str]:
    """Lines saying which targets are met, with the measured ratios."""
    res: dict[tuple[str, str], BackendResult] = {
        (r.model, r.backend): r for r in report.results if not r.error
    }
    lines = []
    base = "drn-s-x4"
    eager, fast = res.get((base, "eager")), res.get((base, DEFAULT_PATH))
    if eager and fast:
        ratio = eager.median_s / fast.median_s
        best = eager.min_s / fast.min_s
        lines.append(
            f"target 1a: {DEFAULT_PATH} vs eager on {base}: {ratio:.2f}x by median "
            f"({best:.2f}x by best run); target >= 1.6x: {'MET' if ratio >= 1.6 else 'NOT MET'}"
        )
        frac = fast.ceiling_fraction
        executed = fast.executed_macs / fast.median_s / report.ceiling.macs_per_s
        lines.append(
            f"target 1b: {DEFAULT_PATH} at {frac * 100:.1f}% of the ceiling (nominal MACs; "
            f"{executed * 100:.1f}% counting the MACs it executes); target >= 75%: "
            f"{'MET' if frac >= 0.75 else 'NOT MET'}"
        )
    for backend in (DEFAULT_PATH, "eager", "onnxruntime"):
        ref = res.get((base, backend))
        if not ref:
            continue
        compressed = sorted(
            {r.model for r in report.results if r.model.startswith("drn-s") and r.model != base}
        )
        for name in compressed:
            r = res.get((name, backend))
            if not r:
                continue
            speedup = ref.median_s / r.median_s
            mac_ratio = ref.macs / r.macs
            eff = speedup / mac_ratio
            verdict = "MET" if eff >= 0.8 else "NOT MET"
            lines.append(
                f"target 2 ({backend}): {name} speed-up over {base} {speedup:.2f}x, MAC ratio "
                f"{mac_ratio:.2f}x, speed-up / MAC ratio = {eff:.2f}; target >= 0.8: {verdict}"
            )
    return lines


def main() -> None:
    """Parse the options, run, write the results."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--input", default="90x160", help="LR input HxW (default: 90x160)")
    p.add_argument("--threads", type=int, default=None, help="default: torch's default")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--name", default="bench_backends", help="results file name (no suffix)")
    p.add_argument("--no-tune-malloc", action="store_true", help="glibc's default malloc settings")
    args = p.parse_args()
    h, w = (int(v) for v in args.input.split("x"))
    models = {name: build(name) for name in args.models.split(",")}
    report = run_benchmark(
        models,
        (h, w),
        args.backends.split(","),
        threads=args.threads,
        warmup=args.warmup,
        rounds=args.rounds,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
        tune_malloc=not args.no_tune_malloc,
    )
    command = "python " + shlex.join(sys.argv)
    lines = [
        f"# {command}",
        f"# {report.machine.get('cpu_model', report.machine['processor'])}, "
        f"{report.machine['cpu_count']} CPUs, torch {torch.__version__}; shared machine: "
        "load average (1/5/15 min) below",
        report.table(),
        "",
        *check_targets(report),
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.txt").write_text(text + "\n")
    doc = {"command": command, "targets": check_targets(report), **report.to_dict()}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {RESULTS / args.name}.txt and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
