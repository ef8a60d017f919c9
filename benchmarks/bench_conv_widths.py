"""Why DRN-S70 is slower than its multiply-adds promise: conv speed against channel width.

Times a 3x3 convolution (channels_last fp32, the layout of the fast path) from 64 channels to
``c`` and from ``c`` to 64 channels, for ``c`` = 8 .. 64, on a 180x320 map: the shapes of an RCAB
of DRN-S x4 at a 90x160 input, where pruning shrinks ``c``. Reports the median time and the
multiply-adds per second. On AVX-512 CPUs oneDNN computes output channels in groups of 16, so a
64->20 conv costs about as much as a 64->32 one (DRN-S70's RCAB widths are 16 and 20).

Also prints, for the DRN-S x4 presets at a 90x160 input:

- the fused path's multiply-adds with every conv's output width rounded up to a multiple of 16,
  and the bound this puts on "speed-up / MAC ratio" for each compressed model;
- the sum of the isolated times of the fused graph's convolutions (each distinct conv timed
  alone, times its count) and the whole fused forward: the speed-up / MAC ratio the convolutions
  alone allow, and what the rest of the graph costs.

    python benchmarks/bench_conv_widths.py [--threads N] [--runs R] [--precision bf16]

With ``--precision bf16`` every conv runs in bf16 (the fused path's default on CPUs with native
bf16). 32 bf16 values fill a 512-bit register, but the measured sweep (bench_conv_widths_bf16.txt)
steps at 16 output channels, as in fp32 (64->16 2.65 ms, 64->20 5.05 ms, 64->32 5.06 ms): oneDNN's
AVX512_BF16 kernels block output channels by 16, so the lane bound uses 16 for both.

Writes benchmarks/results/bench_conv_widths.{txt,json} (``_bf16`` with --precision bf16).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _machine import machine

import dualsr
from dualsr.deploy.allocator import tune_allocator
from dualsr.deploy.bench import time_calls
from dualsr.deploy.fused import fuse_for_inference

RESULTS = Path(__file__).parent / "results"
HW = (180, 320)
LANES = {"fp32": 16, "bf16": 16}  # output-channel block of oneDNN's kernels (measured)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
DTYPE = torch.float32  # set by --precision


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Median seconds of ``runs`` calls after two warm-up calls."""
    return statistics.median(time_calls(fn, warmup=2, runs=runs))


def conv_rate(cin: int, cout: int, runs: int) -> tuple[float, float]:
    """(ms, G MAC/s) of a 3x3 'same' conv cin -> cout on a 1 x cin x 180 x 320 map."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, cin, *HW, generator=gen).to(DTYPE, memory_format=torch.channels_last)
    w, b = torch.randn(cout, cin, 3, 3, generator=gen), torch.randn(cout, generator=gen)
    w, b = w.to(DTYPE), b.to(DTYPE)
    with torch.inference_mode():
        t = median_time(lambda: F.conv2d(x, w, b, padding=1), runs)
    return t * 1e3, cin * cout * 9 * HW[0] * HW[1] / t / 1e9


def conv_calls(model: torch.nn.Module, input_hw: tuple[int, int]) -> dict[tuple, list[int]]:
    """The convs of one forward of ``model``: (input shape, weight shape, stride, padding) ->
    [number of calls, output height * width]."""
    calls: dict[tuple, list[int]] = {}

    def hook(mod: torch.nn.Conv2d, inp: tuple, out: torch.Tensor) -> None:
        key = (tuple(inp[0].shape), tuple(mod.weight.shape), mod.stride[0], mod.padding[0])
        calls.setdefault(key, [0, out.shape[2] * out.shape[3]])[0] += 1

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(hook) for m in convs]
    with torch.inference_mode():
        model(torch.rand(1, 3, *input_hw) * 255)
    for h in hooks:
        h.remove()
    return calls


def lane_padded_macs(
    model: torch.nn.Module, input_hw: tuple[int, int], lanes: int = 16
) -> tuple[int, int]:
    """(executed MACs, MACs with every conv's output width rounded up to a multiple of lanes)."""
    executed = padded = 0
    for (_, (cout, cin, kh, kw), _, _), (count, pixels) in conv_calls(model, input_hw).items():
        macs = count * pixels * cin * kh * kw * cout
        executed += macs
        padded += macs * math.ceil(cout / lanes) * lanes // cout
    return executed, padded


def conv_time_sum(model: torch.nn.Module, input_hw: tuple[int, int], runs: int) -> float:
    """Seconds: sum over the convs of ``model``'s forward of their isolated median times."""
    total = 0.0
    gen = torch.Generator().manual_seed(0)
    for (xs, ws, stride, pad), (count, _) in conv_calls(model, input_hw).items():
        x = torch.randn(*xs, generator=gen).to(DTYPE, memory_format=torch.channels_last)
        w, b = torch.randn(*ws, generator=gen), torch.randn(ws[0], generator=gen)
        w, b = w.to(DTYPE), b.to(DTYPE)
        with torch.inference_mode():
            total += count * median_time(lambda: F.conv2d(x, w, b, stride, pad), runs)  # noqa: B023
    return total


def main() -> None:
    """Run both studies and write the results."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=9)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = p.parse_args()
    global DTYPE
    DTYPE = DTYPES[args.precision]
    lanes = LANES[args.precision]
    torch.set_num_threads(args.threads)
    tune_allocator()
    rows = []
    lines = [
        f"3x3 conv, channels_last {args.precision}, 1 x C x {HW[0]} x {HW[1]}, "
        f"{args.threads} threads"
    ]
    lines.append(f"{'c':>3} {'64->c ms':>9} {'G MAC/s':>8} {'c->64 ms':>9} {'G MAC/s':>8}")
    for c in range(8, 65, 4):
        down, up = conv_rate(64, c, args.runs), conv_rate(c, 64, args.runs)
        rows.append({"c": c, "64_to_c": down, "c_to_64": up})
        lines.append(f"{c:>3} {down[0]:>9.2f} {down[1]:>8.1f} {up[0]:>9.2f} {up[1]:>8.1f}")
    lines.append("")
    lines.append(f"lane padding of the fused path at 90x160 (output widths rounded up to {lanes})")
    bounds = {}
    ref = None
    for name in ["drn-s-x4", "drn-s30-x4", "drn-s50-x4", "drn-s70-x4"]:
        fused = fuse_for_inference(dualsr.create_model(name), dtype=DTYPE)
        executed, padded = lane_padded_macs(fused, (90, 160), lanes)
        ref = ref or (executed, padded)
        bound = (ref[1] / padded) / (ref[0] / executed)
        bounds[name] = {"executed_macs": executed, "padded_macs": padded, "bound": bound}
        lines.append(
            f"{name:<12} executed {executed / 1e9:6.2f} G, lane-padded {padded / 1e9:6.2f} G: "
            f"speed-up / MAC ratio at most {bound:.2f}"
        )
    lines.append("")
    lines.append("the fused graph's convolutions timed alone, summed, against the whole forward")
    ref_t = None
    for name in ["drn-s-x4", "drn-s70-x4"]:
        fused = fuse_for_inference(dualsr.create_model(name), dtype=DTYPE)
        x = torch.rand(1, 3, 90, 160) * 255
        with torch.inference_mode():
            whole = median_time(lambda: fused(x), args.runs)  # noqa: B023
        convs = conv_time_sum(fused, (90, 160), args.runs)
        ref_t = ref_t or (convs, whole, dualsr.count_macs(dualsr.create_model(name), (90, 160)))
        macs = dualsr.count_macs(dualsr.create_model(name), (90, 160))
        conv_only = (ref_t[0] / convs) / (ref_t[2] / macs)
        bounds[name].update({"conv_seconds": convs, "forward_seconds": whole})
        lines.append(
            f"{name:<12} convs {convs * 1e3:7.1f} ms, forward {whole * 1e3:7.1f} ms, rest "
            f"{(whole - convs) * 1e3:6.1f} ms; convs alone: speed-up / MAC ratio {conv_only:.2f}"
        )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    info = machine()
    header = (
        f"# {info['command']}\n"
        f"# {info['processor']}, torch {info['torch']}, load average {info['loadavg']}\n"
    )
    stem = "bench_conv_widths" + ("_bf16" if args.precision == "bf16" else "")
    (RESULTS / f"{stem}.txt").write_text(header + text + "\n")
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({"machine": info, "convs": rows, "lane_padding": bounds}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
