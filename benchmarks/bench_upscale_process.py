"""Whole-process time of ``dualsr upscale`` against a plain eager fp32 script, and where it goes.

What a user waits for: a fresh process that imports, loads DRN-S x4 weights, reads a 320x180
PNG, upscales it x4 (1280x720 out) and writes the PNG. Compared, each as a fresh process, run
in interleaved rounds (median of the rounds):

* ``plain``: a plain PyTorch script: build the DRN, load the weights, forward in fp32 (the model
  as written, NCHW), round, write the PNG (Pillow's defaults); glibc's default malloc settings;
* ``dualsr upscale`` with its defaults (``--backend auto``, ``--precision auto``, default tile);
* ``dualsr upscale --precision fp32`` (auto among the exact-fp32 paths);
* ``dualsr upscale --backend fused``: the PyTorch path that auto takes on a native-bf16 CPU
  when it does not skip PyTorch (on other CPUs auto's PyTorch-process choice may differ).

``--backend auto`` calibrates once per machine and model where rules do not decide, and measures
once whether ONNX Runtime without PyTorch finishes small jobs first (dualsr.deploy.launch); it
caches both and the exported ONNX graph in ``$DUALSR_HOME``: the benchmark points
``$DUALSR_HOME`` at a fresh folder, reports each command's first run (with those one-time costs)
apart, times the later, cached runs, and says which path each command took.

The phases are timed too from separate in-process runs, with what auto chose: the PyTorch path
(imports, model load, building the chosen path, the upscale, the PNG write at the default level)
and, where auto skips PyTorch, that path (imports, reading the record and opening the ONNX
Runtime session, the upscale, the write). Interpreter start and exit are in the whole-process
times only. Random weights (seed 0): time does not depend on their values. Run it on a quiet
machine.

    python benchmarks/bench_upscale_process.py [--rounds 5] [--threads 2] [--preset drn-s-x4]

Writes benchmarks/results/bench_upscale_process_<preset>_<cpu kind>.json and .txt.
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
from _machine import machine

RESULTS = Path(__file__).parent / "results"

PLAIN = """
import sys, numpy as np, torch
from PIL import Image
import dualsr
torch.set_num_threads(int(sys.argv[3]))
model = dualsr.load_model(sys.argv[1]).eval()
x = torch.from_numpy(np.asarray(Image.open(sys.argv[2]).convert("RGB"), dtype=np.float32))
with torch.no_grad():
    sr = model(x.permute(2, 0, 1)[None])[-1][0]
out = sr.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
Image.fromarray(out).save(sys.argv[4])
"""

PHASES = """
import gc, sys, time
t0 = time.perf_counter()
import numpy as np, torch
t1 = time.perf_counter()
from dualsr.cli import main
from dualsr.data.image_io import read_image, write_image
from dualsr.deploy.autoselect import auto_upscaler
from dualsr.pretrained import resolve_model
gc.freeze()  # as the dualsr console script does once its subcommand is imported
t2 = time.perf_counter()
torch.set_num_threads(int(sys.argv[3]))
model = resolve_model(sys.argv[1])
t3 = time.perf_counter()
up = auto_upscaler(model, precision=sys.argv[6], tile=int(sys.argv[5]))
t4 = time.perf_counter()
image = read_image(sys.argv[2])
image.pixels = up(image.pixels)
t5 = time.perf_counter()
write_image(sys.argv[4], image)
t6 = time.perf_counter()
import json
print(json.dumps({"import torch": t1 - t0, "import dualsr": t2 - t1, "load model": t3 - t2,
       "choose (cached) + build the path": t4 - t3, "read + upscale": t5 - t4,
       "write PNG": t6 - t5, "precision": up.precision, "backend": up.backend,
       "why": up.choice.reason}))
"""


LAUNCH_PHASES = """
import sys, time, argparse
from pathlib import Path
t0 = time.perf_counter()
import numpy as np, onnxruntime
from dualsr.data.image_io import read_image, write_image
from dualsr.deploy.launch import launch_without_torch
t1 = time.perf_counter()
args = argparse.Namespace(model=sys.argv[1], backend="auto", device="cpu", precision=sys.argv[6],
    self_ensemble=False, random_weights=False, tile=None, tile_by_default=True, tile_overlap=16,
    scale=None)
up = launch_without_torch(args, [Path(sys.argv[2])])
t2 = time.perf_counter()
if up is None:
    print("null")
    sys.exit(0)
image = read_image(sys.argv[2])
image.pixels = up(image.pixels)
t3 = time.perf_counter()
write_image(sys.argv[4], image)
t4 = time.perf_counter()
import json
print(json.dumps({"import onnxruntime + dualsr (no torch)": t1 - t0,
       "read the record + open the session": t2 - t1, "read + upscale": t3 - t2,
       "write PNG": t4 - t3, "precision": up.precision, "backend": up.backend + " (no torch)",
       "tile": up.tile, "torch imported": "torch" in sys.modules}))
"""


def chosen(stderr: str) -> str:
    """What ``--backend auto`` said it runs (its log lines), or the backend given."""
    lines = [ln.split(": ", 1)[1] for ln in stderr.splitlines() if ln.startswith("backend auto:")]
    return "; ".join(lines) or "as given"


def precision_auto() -> str:
    from dualsr.deploy.precision import describe_precision

    return describe_precision("cpu")


def run_once(cmd: list[str], env: dict) -> tuple[float, str]:
    """Seconds of one fresh process, and its stderr."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="drn-s-x4")
    parser.add_argument("--size", default="320x180", help="input WxH")
    args = parser.parse_args()
    import torch
    from PIL import Image

    import dualsr
    from dualsr.inference import DEFAULT_TILES

    info = machine()
    w, h = (int(v) for v in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="dualsr-bench-"))
    torch.manual_seed(0)
    model = dualsr.create_model(args.preset)
    scale = model.scale
    ckpt = dualsr.save_model(tmp / "model.safetensors", model)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 127 + 80 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 13.0)[..., None]
    img = np.clip(img + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    src = tmp / "in.png"
    Image.fromarray(img).save(src)
    (tmp / "plain.py").write_text(PLAIN)
    (tmp / "phases.py").write_text(PHASES)
    (tmp / "launch_phases.py").write_text(LAUNCH_PHASES)

    # a fresh cache: the first run of each command pays auto's one-time calibration and export
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "DUALSR_HOME": str(tmp / "home")}
    plain_env = {k: v for k, v in env.items() if not k.startswith("MALLOC_")}
    dualsr_bin = str(Path(sys.executable).with_name("dualsr"))
    upscale = [dualsr_bin, "upscale", str(src), "-m", str(ckpt)]
    plain = [sys.executable, str(tmp / "plain.py"), str(ckpt), str(src), str(args.threads)]
    cases = {
        "plain eager fp32 script": ([*plain, str(tmp / "plain.png")], plain_env),
        "dualsr upscale (defaults)": ([*upscale, "-o", str(tmp / "d.png")], env),
        "dualsr upscale --precision fp32": (
            [*upscale, "-o", str(tmp / "f.png"), "--precision", "fp32"],
            env,
        ),
        "dualsr upscale --backend fused": (
            [*upscale, "-o", str(tmp / "t.png"), "--backend", "fused"],
            env,
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    load_start = os.getloadavg()
    first = {}
    for name, (cmd, e) in cases.items():  # also fills the cache
        first[name] = run_once(cmd, e)[0]
    paths = {}
    for _ in range(args.rounds):
        for name, (cmd, e) in cases.items():
            seconds, err = run_once(cmd, e)
            times[name].append(seconds)
            paths[name] = chosen(err)
    load_end = os.getloadavg()
    phase_times = {}
    for label, precision in (("defaults", "auto"), ("--precision fp32", "fp32")):
        bf16 = precision == "auto" and "bf16" in precision_auto()
        tile = DEFAULT_TILES["bf16" if bf16 else "fp32"]
        cmd = [
            sys.executable,
            str(tmp / "phases.py"),
            str(ckpt),
            str(src),
            str(args.threads),
            str(tmp / "p.png"),
            str(tile),
            precision,
        ]
        out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
        phase_times[f"{label}, PyTorch path"] = json.loads(out.stdout.strip().splitlines()[-1])
        cmd[1] = str(tmp / "launch_phases.py")
        out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
        launch = json.loads(out.stdout.strip().splitlines()[-1])
        if launch is not None:
            phase_times[f"{label}, without PyTorch"] = launch
    medians = {k: statistics.median(v) for k, v in times.items()}
    base = medians["plain eager fp32 script"]
    lines = [
        f"# whole process, {args.preset} (random weights), {w}x{h} PNG in -> "
        f"{w * scale}x{h * scale} out, {args.threads} threads, {args.rounds} interleaved rounds "
        f"after one first run each: python {' '.join(sys.argv)}",
        f"# cpu {info['cpu_model']}; kind {info['cpu_kind']}; flags {' '.join(info['cpu_flags'])}",
        *([f"# {info['cpu_emulation']}"] if "cpu_emulation" in info else []),
        f"# {info['platform']}, torch {torch.__version__}; load average "
        f"{tuple(round(v, 2) for v in load_start)} at start, "
        f"{tuple(round(v, 2) for v in load_end)} at end; default tiles {DEFAULT_TILES}",
        f"{'command':<34} {'median s':>9} {'min':>7} {'max':>7} {'vs plain':>9} {'first run':>10}",
    ]
    for name, ts in times.items():
        lines.append(
            f"{name:<34} {medians[name]:>9.2f} {min(ts):>7.2f} {max(ts):>7.2f} "
            f"{base / medians[name]:>8.2f}x {first[name]:>9.2f}s"
        )
    lines.append("what each dualsr command ran (its cached runs' log):")
    for name, what in paths.items():
        if name.startswith("dualsr"):
            lines.append(f"  {name}: {what}")
    for label, phases in phase_times.items():
        lines.append(f"phases inside dualsr upscale, {label} (one in-process run, seconds):")
        for k, v in phases.items():
            lines.append(f"  {k:<38} {v if isinstance(v, str | int) else f'{v:.3f}'}")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = f"bench_upscale_process_{args.preset}_{info['cpu_kind']}"
    (RESULTS / f"{stem}.txt").write_text(text + "\n")
    doc = {
        "machine": info,
        "first_run_s": first,
        "times_s": times,
        "medians_s": medians,
        "phases_s": phase_times,
        "paths": paths,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
