"""Peak memory of tiled inference: a 2000x1500 input (W x H) upscaled x4 with DRN-S.

Each configuration runs in a fresh Python process (so nothing allocated by another run is
counted or reused); the peak is that process's resident-set high-water mark (VmHWM, Linux),
read after the upscale, beside its RSS before the model was built. The output array alone is
8000 x 6000 x 3 uint8 = 144 MB.

    python benchmarks/bench_tiled_memory.py                         # tile 256, default backend
    python benchmarks/bench_tiled_memory.py --tile 128 --backend eager

Appends to benchmarks/results/bench_tiled_memory.jsonl and prints one line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

CHILD = r"""
import json, os, sys, time
import numpy as np
import torch

def kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])

model_name, h, w, tile, overlap, backend, threads = sys.argv[1:]
torch.set_num_threads(int(threads))
import dualsr
from dualsr.inference import TorchUpscaler
rss_start = kib("VmRSS")
model = dualsr.create_model(model_name).eval()
up = TorchUpscaler(model, tile=int(tile), tile_overlap=int(overlap), backend=backend)
rng = np.random.default_rng(0)
img = rng.integers(0, 256, size=(int(h), int(w), 3), dtype=np.uint8)
rss_ready = kib("VmRSS")
start = time.perf_counter()
out = up(img)
seconds = time.perf_counter() - start
print(json.dumps({
    "output_shape": list(out.shape), "seconds": seconds, "backend": up.backend,
    "rss_start_kib": rss_start, "rss_ready_kib": rss_ready, "peak_rss_kib": kib("VmHWM"),
    "loadavg_end": os.getloadavg(),
}))
"""


def main() -> None:
    """Run one configuration in a subprocess and record it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="drn-s-x4")
    p.add_argument("--height", type=int, default=1500)
    p.add_argument("--width", type=int, default=2000)
    p.add_argument("--tile", type=int, default=256, help="LR tile size (default: 256)")
    p.add_argument("--overlap", type=int, default=16)
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    load_start = os.getloadavg()
    start = time.perf_counter()
    cmd = [sys.executable, "-c", CHILD, args.model, str(args.height), str(args.width)]
    cmd += [str(args.tile), str(args.overlap), args.backend, str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"the measuring process failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    record = {
        "command": "python " + shlex.join(sys.argv),
        "model": args.model,
        "input_hw": [args.height, args.width],
        "tile": args.tile,
        "overlap": args.overlap,
        "threads": args.threads,
        "loadavg_start": load_start,
        "wall_s": time.perf_counter() - start,
        **result,
    }
    peak_gb = result["peak_rss_kib"] * 1024 / 1e9
    line = (
        f"{args.model} x4 on {args.width}x{args.height} (WxH), tile {args.tile} + overlap "
        f"{args.overlap}, backend {result['backend']}, {args.threads} threads: peak RSS "
        f"{peak_gb:.2f} GB (target < 4 GB: {'MET' if peak_gb < 4 else 'NOT MET'}); RSS after "
        f"import {result['rss_start_kib'] / 2**20:.2f} GiB; {result['seconds']:.0f} s; load "
        f"{load_start[0]:.2f} at start, {result['loadavg_end'][0]:.2f} at end"
    )
    print(line)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "bench_tiled_memory.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    with open(RESULTS / "bench_tiled_memory.txt", "a") as fh:
        fh.write(line + "\n")


if __name__ == "__main__":
    main()
