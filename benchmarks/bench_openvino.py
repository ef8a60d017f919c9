"""Is OpenVINO worth a place among ``--backend auto``'s candidates? One interleaved timing.

Times, in the same rounds and thread setting, the paths dualsr has (fused PyTorch fp32 and bf16,
ONNX Runtime fp32 on the exported portable graph) against OpenVINO's CPU plugin running that same
ONNX graph, with its inference precision forced to f32 and, where the CPU has native bf16, with
bf16. OpenVINO is not a dualsr dependency: install it beside dualsr to run this
(``pip install openvino``). Random weights (seed 0): time does not depend on their values; the
max |difference| from eager fp32 is reported for each path.

    python benchmarks/bench_openvino.py [--presets drn-s-x4 drn-t-x4] [--input 180x320]
        [--threads 2] [--rounds 5]

Writes benchmarks/results/bench_openvino_<cpu kind>.{txt,json}. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"


def openvino_runner(path: Path, threads: int, precision: str) -> Callable[[np.ndarray], np.ndarray]:
    """A callable running ``path`` (ONNX) with OpenVINO's CPU plugin at ``precision``."""
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "bf16",
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    return run


def main() -> None:
    """Build every path for each preset, time them interleaved, write the results."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _machine import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["drn-s-x4", "drn-t-x4"])
    parser.add_argument("--input", default="180x320", help="LR input H x W (default 180x320)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import openvino as ov

    import dualsr
    from dualsr.deploy.allocator import tune_allocator
    from dualsr.deploy.fused import fuse_for_inference
    from dualsr.deploy.onnx import export_onnx, onnx_session
    from dualsr.deploy.precision import native_bf16

    tune_allocator()
    info = machine()
    h, w = (int(v) for v in args.input.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="dualsr-ov-"))
    native = native_bf16("cpu")
    rows = []
    load_start = os.getloadavg()
    for preset in args.presets:
        torch.manual_seed(0)
        model = dualsr.create_model(preset).eval()
        lr = torch.rand(1, 3, h, w) * 255
        with torch.no_grad():
            reference = model(lr)[-1].numpy()
        onnx_path = export_onnx(model, tmp / f"{preset}.onnx")
        paths: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        fused32 = fuse_for_inference(model)
        paths["fused fp32"] = lambda x, m=fused32: m(torch.from_numpy(x)).numpy()
        if native:
            fused16 = fuse_for_inference(model, dtype=torch.bfloat16)
            paths["fused bf16"] = lambda x, m=fused16: m(torch.from_numpy(x)).numpy()
        session = onnx_session(onnx_path, threads=args.threads)
        paths["onnxruntime fp32"] = lambda x, s=session: s.run(None, {"lr": x})[0]
        paths["openvino fp32"] = openvino_runner(onnx_path, args.threads, "fp32")
        if native:
            paths["openvino bf16"] = openvino_runner(onnx_path, args.threads, "bf16")
        x = lr.numpy()
        times: dict[str, list[float]] = {name: [] for name in paths}
        diffs = {}
        with torch.no_grad():
            for name, run in paths.items():  # warm-up, and the difference from eager
                diffs[name] = float(np.abs(run(x) - reference).max())
            for _ in range(args.rounds):
                for name, run in paths.items():
                    start = time.perf_counter()
                    run(x)
                    times[name].append(time.perf_counter() - start)
        base = statistics.median(times["fused fp32"])
        for name, ts in times.items():
            rows.append(
                {
                    "preset": preset,
                    "path": name,
                    "median_s": statistics.median(ts),
                    "times_s": ts,
                    "vs_fused_fp32": base / statistics.median(ts),
                    "max_abs_diff": diffs[name],
                }
            )
    load_end = os.getloadavg()
    lines = [
        f"# OpenVINO {ov.__version__} against dualsr's paths, {h}x{w} LR input, {args.threads} "
        f"threads, {args.rounds} interleaved rounds: python {' '.join(sys.argv)}",
        f"# cpu {info['cpu_model']}; kind {info['cpu_kind']}; flags {' '.join(info['cpu_flags'])}",
        f"# {info['platform']}, torch {torch.__version__}; load average "
        f"{tuple(round(v, 2) for v in load_start)} at start, "
        f"{tuple(round(v, 2) for v in load_end)} at end",
        f"{'preset':<10} {'path':<18} {'median ms':>10} {'min':>8} {'max':>8} "
        f"{'vs fused fp32':>13} {'max|diff|':>10}",
    ]
    for r in rows:
        lines.append(
            f"{r['preset']:<10} {r['path']:<18} {r['median_s'] * 1e3:>10.1f} "
            f"{min(r['times_s']) * 1e3:>8.1f} {max(r['times_s']) * 1e3:>8.1f} "
            f"{r['vs_fused_fp32']:>12.2f}x {r['max_abs_diff']:>10.2e}"
        )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = f"bench_openvino_{info['cpu_kind']}"
    (RESULTS / f"{stem}.txt").write_text(text + "\n")
    doc = {
        "command": " ".join(sys.argv),
        "openvino": ov.__version__,
        "machine": info,
        "input_hw": [h, w],
        "threads": args.threads,
        "rows": rows,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
