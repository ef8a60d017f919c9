"""Winograd F(4x4, 3x3) for DRN's 3x3 convs, as PyTorch ops and as dualsr's kernel, vs oneDNN.

Issue #23 names Winograd as a way past the fp32 direct-convolution ceiling (on AVX2-only CPUs the
fast fp32 paths already run at 94% of it). This measures, for the 3x3 convolutions of DRN-S x4
at a 180x320 LR input (16 channels at 720x1280, 32 at 360x640, 64 at 180x320; same in and out
widths), on the CPU it runs on:

* ``direct``: ``F.conv2d`` on channels_last input (oneDNN's direct convolution, what the fused
  path runs);
* ``winograd``: F(4x4, 3x3) (Lavin and Gray's matrices) as PyTorch ops: 6x6 input tiles by
  ``unfold``, the input and output transforms by ``einsum``, the 36 products by ``bmm``;
* ``its bmm alone``: the 36 matrix products only, i.e. a Winograd whose transforms cost nothing
  (the bound for a native kernel that fuses them);
* ``kernel``: dualsr's native kernel (:mod:`dualsr.deploy.winograd`, C with AVX2+FMA, what the
  ``winograd`` backend runs), where it builds here, and its effective rate (the direct
  algorithm's multiply-adds per second: it does 4x fewer);
* the largest difference from ``direct`` of each (random weights of scale 0.05, N(0,1) input).

Median of 5 calls after a warm-up. Writes benchmarks/results/bench_winograd_<cpu kind>.txt/.json.

    python benchmarks/bench_winograd.py [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _machine import machine

from dualsr.deploy import winograd as native
from dualsr.deploy.winograd import G as WINOGRAD_G

RESULTS = Path(__file__).parent / "results"
#: F(4x4, 3x3): input transform B^T, filter transform G, output transform A^T.
BT = torch.tensor(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=torch.float32,
)
G = torch.from_numpy(WINOGRAD_G).to(torch.float32)  # the kernel transform dualsr uses
AT = torch.tensor(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    dtype=torch.float32,
)
SHAPES = ((16, 720, 1280), (32, 360, 640), (64, 180, 320))


def median_seconds(fn: Callable[[], object], runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def filter_transform(weight: torch.Tensor) -> torch.Tensor:
    """K x C x 3 x 3 weights -> the 36 x K x C transformed filters."""
    k, c = weight.shape[:2]
    return torch.einsum("ij,kcjl,ml->imkc", G, weight, G).reshape(36, k, c).contiguous()


def winograd_conv(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """3x3 convolution, padding 1, of N x C x H x W ``x`` with transformed filters ``u``."""
    n, c, h, w = x.shape
    th, tw = -(-h // 4), -(-w // 4)
    xp = F.pad(x, (1, tw * 4 + 1 - w, 1, th * 4 + 1 - h))
    tiles = xp.unfold(2, 6, 4).unfold(3, 6, 4)  # N, C, th, tw, 6, 6
    v = torch.einsum("ij,nctsjk,lk->ilcnts", BT, tiles, BT).reshape(36, c, n * th * tw)
    k = u.shape[1]
    m = torch.bmm(u, v).reshape(6, 6, k, n, th, tw)
    y = torch.einsum("ai,ijknts,bj->kntasb", AT, m, AT).reshape(k, n, th * 4, tw * 4)
    return y[:, :, :h, :w].permute(1, 0, 2, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = machine()
    load_start = os.getloadavg()
    rows = []
    for c, h, w in SHAPES:
        x = torch.randn(1, c, h, w)
        weight = torch.randn(c, c, 3, 3) * 0.05
        u = filter_transform(weight)
        xc = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            err = float((winograd_conv(x, u) - F.conv2d(x, weight, padding=1)).abs().max())
            direct = median_seconds(lambda xc=xc, weight=weight: F.conv2d(xc, weight, padding=1))
            wino = median_seconds(lambda x=x, u=u: winograd_conv(x, u))
            v = torch.randn(36, c, -(-h // 4) * -(-w // 4))
            gemm = median_seconds(lambda u=u, v=v: torch.bmm(u, v))
            kernel = kernel_err = None
            if native.unavailable_reason() is None:
                un = native.transform_kernel(weight)
                out = native.conv3x3(xc, un, None, threads=args.threads)
                kernel_err = float((out - F.conv2d(x, weight, padding=1)).abs().max())
                kernel = median_seconds(
                    lambda xc=xc, un=un, out=out: native.conv3x3(
                        xc, un, None, threads=args.threads, out=out
                    )
                )
        macs = 9 * c * c * h * w
        rows.append(
            {
                "channels": c,
                "hw": [h, w],
                "direct_ms": direct * 1e3,
                "direct_gmacs": macs / direct / 1e9,
                "winograd_ms": wino * 1e3,
                "bmm_only_ms": gemm * 1e3,
                "max_abs_diff": err,
                "kernel_ms": None if kernel is None else kernel * 1e3,
                "kernel_effective_gmacs": None if kernel is None else macs / kernel / 1e9,
                "kernel_max_abs_diff": kernel_err,
            }
        )
    load_end = os.getloadavg()
    lines = [
        f"# 3x3 conv, same in/out width, {args.threads} threads, median of 5: "
        f"python {' '.join(sys.argv)}",
        f"# cpu {info['cpu_model']}; kind {info['cpu_kind']}; flags {' '.join(info['cpu_flags'])}",
        f"# {info['platform']}, torch {torch.__version__}; load average "
        f"{tuple(round(v, 2) for v in load_start)} at start, "
        f"{tuple(round(v, 2) for v in load_end)} at end",
        f"{'channels':>8} {'size':>9} {'direct ms':>10} {'G MAC/s':>8} {'winograd ms':>12} "
        f"{'vs direct':>10} {'its bmm ms':>11} {'bmm vs direct':>14} {'max diff':>9} "
        f"{'kernel ms':>10} {'vs direct':>10} {'eff G MAC/s':>12} {'kernel diff':>12}",
    ]
    why = native.unavailable_reason()
    if why is not None:
        lines.insert(3, f"# dualsr's native kernel: not available here ({why})")
    for r in rows:
        lines.append(
            f"{r['channels']:>8} {r['hw'][0]}x{r['hw'][1]:<5} {r['direct_ms']:>10.1f} "
            f"{r['direct_gmacs']:>8.0f} {r['winograd_ms']:>12.1f} "
            f"{r['direct_ms'] / r['winograd_ms']:>9.2f}x {r['bmm_only_ms']:>11.1f} "
            f"{r['direct_ms'] / r['bmm_only_ms']:>13.2f}x {r['max_abs_diff']:>9.1e}"
            + (
                f" {r['kernel_ms']:>10.1f} {r['direct_ms'] / r['kernel_ms']:>9.2f}x "
                f"{r['kernel_effective_gmacs']:>12.0f} {r['kernel_max_abs_diff']:>12.1e}"
                if r["kernel_ms"] is not None
                else f" {'-':>10} {'-':>10} {'-':>12} {'-':>12}"
            )
        )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = f"bench_winograd_{info['cpu_kind']}"
    (RESULTS / f"{stem}.txt").write_text(text + "\n")
    doc = {"machine": info, "loadavg_start": load_start, "loadavg_end": load_end, "rows": rows}
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
