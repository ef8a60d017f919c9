"""Does ``--backend auto`` pick the faster way to start, by image size? (dualsr.deploy.launch)

For one model (default: the shipped drn-t-x4), whole ``dualsr upscale`` processes on synthetic
PNGs of growing size, three ways, in interleaved rounds (median):

* ``auto``: the defaults, after the one-time measurement (what a user gets);
* ``PyTorch``: ``--backend fused`` (auto's PyTorch-process choice on a native-bf16 CPU; on other
  CPUs pass ``--torch-backend`` to match what ``dualsr env`` says auto runs);
* ``no PyTorch``: ONNX Runtime fp32 in a process without PyTorch, forced through a copy of the
  cache whose record says PyTorch needs 1e6 s to start.

It prints the record's prediction beside each, so a reader sees whether auto took the faster
way and how far the predicted break-even is from the measured one.

    python benchmarks/bench_launch_choice.py [--model drn-t-x4] [--rounds 3] [--threads 2]

Writes benchmarks/results/bench_launch_choice_<model>_<cpu kind>.json and .txt.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine
from PIL import Image

RESULTS = Path(__file__).parent / "results"
SIZES = ((320, 180), (480, 270), (640, 360), (960, 540), (1280, 720))


def photo(path: Path, w: int, h: int) -> Path:
    """A synthetic smooth-plus-noise PNG (as bench_upscale_process.py's)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 127 + 80 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 13.0)[..., None]
    img = np.clip(img + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path)
    return path


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="drn-t-x4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--torch-backend", default="fused")
    args = parser.parse_args()
    from dualsr.deploy.launch import LaunchRecord, launch_key, model_file_for

    info = machine()
    tmp = Path(tempfile.mkdtemp(prefix="dualsr-launch-"))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "DUALSR_HOME": str(tmp / "home")}
    dualsr_bin = str(Path(sys.executable).with_name("dualsr"))
    images = {f"{w}x{h}": photo(tmp / f"{w}x{h}.png", w, h) for w, h in SIZES}
    first = images["320x180"]
    measure_s, _ = timed(
        [dualsr_bin, "upscale", str(first), "-m", args.model, "-o", str(tmp / "first.png")], env
    )
    data = json.loads((tmp / "home" / "launch.json").read_text())
    model_file = model_file_for(args.model)
    if model_file is None:
        sys.exit(f"{args.model}: not a local weights file or shipped preset")
    os.environ.update({"OMP_NUM_THREADS": str(args.threads), "DUALSR_HOME": env["DUALSR_HOME"]})
    key = launch_key(model_file, "auto")
    entry = data["records"][key]
    record = LaunchRecord(**{k: v for k, v in entry.items() if k != "created"})
    forced = json.loads(json.dumps(data))
    forced["records"][key]["torch_start_s"] = 1e6
    (tmp / "forced").mkdir()
    shutil.copytree(tmp / "home" / "onnx", tmp / "forced" / "onnx")
    for rec in forced["records"].values():  # the graph path, in the copy
        rec["onnx"] = rec["onnx"].replace(str(tmp / "home"), str(tmp / "forced"))
    (tmp / "forced" / "launch.json").write_text(json.dumps(forced))
    forced_env = {**env, "DUALSR_HOME": str(tmp / "forced")}

    load_start = os.getloadavg()
    ways = ("auto", "PyTorch", "no PyTorch")
    times: dict[str, dict[str, list[float]]] = {s: {w: [] for w in ways} for s in images}
    took: dict[str, str] = {}
    for _ in range(args.rounds):
        for size, src in images.items():
            base = [dualsr_bin, "upscale", str(src), "-m", args.model, "-o", str(tmp / "o.png")]
            seconds, err = timed(base, env)
            times[size]["auto"].append(seconds)
            took[size] = "no PyTorch" if "without PyTorch" in err else "PyTorch"
            times[size]["PyTorch"].append(timed([*base, "--backend", args.torch_backend], env)[0])
            seconds, err = timed(base, forced_env)
            assert "without PyTorch" in err, err
            times[size]["no PyTorch"].append(seconds)
    load_end = os.getloadavg()

    lines = [
        f"# whole `dualsr upscale` processes, {args.model}, {args.threads} threads, median of "
        f"{args.rounds} interleaved rounds: python {' '.join(sys.argv)}",
        f"# cpu {info['cpu_model']}; kind {info['cpu_kind']}; flags {' '.join(info['cpu_flags'])}",
        f"# {info['platform']}; load average {tuple(round(v, 2) for v in load_start)} at start, "
        f"{tuple(round(v, 2) for v in load_end)} at end; first run (with the one-time "
        f"measurement) {measure_s:.2f} s",
        f"# record: {record.summary()}",
        f"{'LR size':>9} {'M px':>6} {'auto took':>11} {'auto s':>7} {'PyTorch s':>10} "
        f"{'no PyTorch s':>13} {'faster':>11} {'predicted: no PyTorch':>22} {'PyTorch':>8}",
    ]
    rows = {}
    for size in images:
        w, h = (int(v) for v in size.split("x"))
        med = {way: statistics.median(times[size][way]) for way in ways}
        faster = min(("PyTorch", "no PyTorch"), key=lambda way: med[way])
        ort_s, torch_s = record.predicted(w * h)
        rows[size] = {
            "medians_s": med,
            "auto_took": took[size],
            "faster": faster,
            "predicted_s": {"no PyTorch": ort_s, "PyTorch": torch_s},
            "times_s": times[size],
        }
        lines.append(
            f"{size:>9} {w * h / 1e6:>6.3f} {took[size]:>11} {med['auto']:>7.2f} "
            f"{med['PyTorch']:>10.2f} {med['no PyTorch']:>13.2f} {faster:>11} "
            f"{ort_s:>22.2f} {torch_s:>8.2f}"
        )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = f"bench_launch_choice_{args.model}_{info['cpu_kind']}"
    (RESULTS / f"{stem}.txt").write_text(text + "\n")
    doc = {
        "machine": info,
        "record": entry,
        "first_run_s": measure_s,
        "rows": rows,
        "loadavg_start": load_start,
        "loadavg_end": load_end,
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
