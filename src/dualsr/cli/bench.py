"""``dualsr bench``: latency of each inference backend against the machine's conv ceiling."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..deploy.bench import BACKENDS, DEFAULT_BACKENDS, DEFAULT_CEILING_SHAPE, run_benchmark
from ..fileio import atomic_write_bytes
from ..profiling import parse_hw
from .common import positive_int
from .profile import add_model_argument, check_forward_fits, model_for_costs


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="time inference backends (eager, fused, fused-bf16, compile, ONNX Runtime, ...)",
        description="Median latency (with warm-up, a fixed thread count and interleaved rounds, "
        "so load from other processes hits every backend alike) of each model on each backend, "
        "its multiply-adds per second and the fraction of the machine's ceiling: the measured "
        "rate of a large dense 3x3 convolution in the same rounds, one ceiling per precision "
        "(fp32, and bf16 when a bf16 backend is timed). fused-bf16 is what `dualsr upscale` runs "
        "by default on CPUs with native bf16. Table to stdout, JSON to a file. Run it on a "
        "quiet machine: the load average is recorded with the results.",
    )
    add_model_argument(p, nargs="+")
    p.add_argument(
        "--input", default="90x160", metavar="HxW", help="LR input size (default: 90x160)"
    )
    p.add_argument(
        "--backends",
        default=",".join(DEFAULT_BACKENDS),
        metavar="LIST",
        help=f"comma-separated, from {', '.join(BACKENDS)} (default: {','.join(DEFAULT_BACKENDS)})",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="intra-op threads (default: torch's default)",
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per backend (default: 2)")
    p.add_argument("--rounds", type=int, default=5, help="timed calls per backend (default: 5)")
    p.add_argument(
        "--ceiling-shape",
        default="x".join(map(str, DEFAULT_CEILING_SHAPE)),
        metavar="CINxCOUTxHxW",
        help="the ceiling convolution (3x3), default: "
        f"{'x'.join(map(str, DEFAULT_CEILING_SHAPE))} (DRN-S x4's RCAB conv at a 90x160 input)",
    )
    p.add_argument(
        "--no-tune-malloc",
        action="store_true",
        help="keep glibc's default malloc settings (by default they are tuned as for "
        "`dualsr upscale`: freed activation buffers are reused; see docs/deployment.md)",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=Path("bench.json"),
        metavar="FILE",
        help="where the JSON results go (default: bench.json)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Time, print the table, write the JSON."""
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(
            f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}"
        )
    if args.rounds < 1 or args.warmup < 0:
        raise ValueError("--rounds must be >= 1 and --warmup >= 0")
    try:
        shape = tuple(int(v) for v in args.ceiling_shape.lower().split("x"))
        assert len(shape) == 4 and min(shape) > 0
    except (ValueError, AssertionError):
        raise ValueError(
            f"--ceiling-shape must be CINxCOUTxHxW, e.g. 64x64x180x320, got {args.ceiling_shape}"
        ) from None
    models = {spec: model_for_costs(spec, args.channel_config) for spec in args.model}
    input_hw = parse_hw(args.input)
    for spec, model in models.items():
        check_forward_fits(model, input_hw, spec, "time a smaller --input (costs scale with area)")
    report = run_benchmark(
        models,
        input_hw,
        backends,
        threads=args.threads,
        warmup=args.warmup,
        rounds=args.rounds,
        ceiling_shape=shape,
        log=lambda msg: print(msg, file=sys.stderr),
        tune_malloc=not args.no_tune_malloc,
    )
    print(report.table())
    atomic_write_bytes(args.json, json.dumps(report.to_dict(), indent=2).encode())
    print(f"wrote {args.json}")
    return 0
