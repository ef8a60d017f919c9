"""Peak memory of a whole `dualsr upscale` process for a large output, by backend choice.

Upscales one synthetic PNG (default 1000x750, so 4000x3000 out at x4) with ``dualsr upscale``
in a fresh process per configuration and reads that process's peak resident set (the
``ru_maxrss`` of a waited-for child, Linux: kB). Compared: the default (``--backend auto``,
``--precision auto``), ``--precision fp32`` (auto among the exact-fp32 paths), and the fixed
PyTorch paths that were the defaults before ``auto`` calibrated (``--backend fused`` with each
precision), so a reader sees whether auto's choice costs memory. ``auto``'s one-time calibration
and ONNX export are paid in an untimed first run against the same fresh ``$DUALSR_HOME``.

    python benchmarks/bench_upscale_memory.py [--model drn-t-x4] [--size 1000x750] [--threads 2]

Writes benchmarks/results/bench_upscale_memory_<model>_<cpu kind>.{json,txt}. Seconds are
recorded too but are only indicative (the point is memory): run it on a quiet machine to use them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"

# one child per configuration, so ru_maxrss is that command's own peak
MEASURE = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - t
if proc.returncode:
    sys.exit(proc.stderr)
print(json.dumps({"seconds": seconds, "peak_rss_kb": resource.getrusage(
    resource.RUSAGE_CHILDREN).ru_maxrss, "log": proc.stderr.strip().splitlines()}))
"""


def measure(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd`` under a fresh measuring process; its seconds, peak RSS and log lines."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def main() -> None:
    """Measure each configuration and write the results."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _machine import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="drn-t-x4", help="a preset or a checkpoint")
    parser.add_argument("--size", default="1000x750", help="input W x H (default 1000x750)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per configuration, interleaved (default 3)"
    )
    args = parser.parse_args()

    from dualsr.data.image_io import write_image

    info = machine()
    w, h = (int(v) for v in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="dualsr-mem-"))
    yy, xx = np.mgrid[0:h, 0:w]
    img = 127 + 80 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 13.0)[..., None]
    img = img + np.random.default_rng(0).normal(0, 6, size=(h, w, 3))
    src = tmp / "in.png"
    write_image(src, np.clip(img, 0, 255).astype(np.uint8))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "DUALSR_HOME": str(tmp / "home")}
    dualsr_bin = str(Path(sys.executable).with_name("dualsr"))
    base = [dualsr_bin, "upscale", str(src), "-o", str(tmp / "out.png"), "-m", args.model]
    configs = {
        "defaults (auto)": [],
        "--precision fp32 (auto)": ["--precision", "fp32"],
        "--backend fused (bf16 where native)": ["--backend", "fused"],
        "--backend fused --precision fp32": ["--backend", "fused", "--precision", "fp32"],
    }
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    load_start = os.getloadavg()
    for name, extra in configs.items():
        if "auto" in name:  # pay the one-time calibration/export before measuring
            measure([*base, *extra], env)
    for _ in range(args.repeats):  # interleaved: the peak varies by tens of MB run to run
        for name, extra in configs.items():
            runs[name].append(measure([*base, *extra], env))
    load_end = os.getloadavg()

    lines = [
        f"# peak RSS of `dualsr upscale` ({args.model}, {w}x{h} PNG in, {args.threads} threads), "
        f"one fresh process each: python {' '.join(sys.argv)}",
        f"# cpu {info['cpu_model']}; kind {info['cpu_kind']}; flags {' '.join(info['cpu_flags'])}",
        f"# {info['platform']}; load average {tuple(round(v, 2) for v in load_start)} at start, "
        f"{tuple(round(v, 2) for v in load_end)} at end",
        f"# peak RSS over {args.repeats} interleaved runs each (after an untimed first run of "
        "the auto commands): median and range, GiB",
        f"{'command':<40} {'median':>7} {'min':>7} {'max':>7} {'seconds':>8}  what ran",
    ]
    for name, rs in runs.items():
        peaks = [r["peak_rss_kb"] / 2**20 for r in rs]
        seconds = statistics.median(r["seconds"] for r in rs)
        picked = next((line for line in rs[0]["log"] if line.startswith("backend")), "")
        lines.append(
            f"{name:<40} {statistics.median(peaks):>7.3f} {min(peaks):>7.3f} {max(peaks):>7.3f} "
            f"{seconds:>8.1f}  {picked[:100]}"
        )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = f"bench_upscale_memory_{Path(args.model).stem}_{info['cpu_kind']}"
    (RESULTS / f"{stem}.txt").write_text(text + "\n")
    doc = {
        "command": " ".join(sys.argv),
        "machine": info,
        "input_wh": [w, h],
        "threads": args.threads,
        "runs": runs,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
