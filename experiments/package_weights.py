"""Package a trained checkpoint as shipped weights: model + duals + provenance, no training state.

Evaluates the model on the benchmark folders with the papers' protocol, times one 1280x720 output
(fused backend, automatic precision, 2 threads; run it with nothing else busy), and stores the
measured PSNR/SSIM, the speed, the portable recipe (data-set names, no local paths), the training
cost and the PSNR-vs-CPU-hours curve of the run in the safetensors metadata.

    python experiments/package_weights.py ~/dualsr-runs/long-x4/latest.safetensors \
        src/dualsr/weights/drn-t-x4.safetensors --data ../shared/datasets \
        --note "CPU recipe configs/cpu-drn-x4.yaml, 16,000 bf16 steps"

``--from-shipped`` re-packages an existing shipped file: its recipe, note and training record are
taken from its own provenance (made portable), the scores and speed are measured again.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml

import dualsr
from dualsr.evaluation import evaluate_folder
from dualsr.inference import TorchUpscaler
from dualsr.provenance import portable_recipe, psnr_curve, read_metrics, training_cost

DATA = "T91 + BSD200 (291 HR images), LR by MATLAB-style bicubic (dualsr.imresize)"
PROTOCOL = "Y channel (BT.601), border = scale, uint8 SR, MATLAB bicubic LR"
OUTPUT_HW = (720, 1280)


def time_720p(model: torch.nn.Module, threads: int, repeats: int) -> dict:
    """Median seconds of one 1280x720 output (LR input of 720/s x 1280/s), warm."""
    torch.set_num_threads(threads)
    scale = model.scale
    lr = np.random.default_rng(0).integers(
        0, 256, (OUTPUT_HW[0] // scale, OUTPUT_HW[1] // scale, 3), dtype=np.uint8
    )
    up = TorchUpscaler(model, backend="auto", precision="auto", tile=None)
    up(lr)  # build the fast path, warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        up(lr)
        times.append(time.perf_counter() - t0)
    return {
        "ms": round(1000 * statistics.median(times), 1),
        "output": "1280x720",
        "precision": up.precision,
        "backend": "fused",
        "threads": threads,
        "machine": f"{threads} threads, {platform.machine()} {_cpu_flags()}".strip(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0]
    except (OSError, IndexError):
        return ""
    return "with AVX512_BF16" if "avx512_bf16" in flags else ""


def record_shipped(path: Path) -> None:
    """Record a file written into the package's weights folder in its ``shipped.json`` (size and
    sha256, checked on every load by ``dualsr.pretrained.load_shipped``)."""
    from dualsr.fileio import atomic_write_bytes
    from dualsr.pretrained import SHIPPED_MANIFEST, file_record

    folder = Path(dualsr.__file__).resolve().parent / "weights"
    if path.resolve().parent != folder:
        return
    manifest = folder / SHIPPED_MANIFEST
    doc = json.loads(manifest.read_text(encoding="utf-8"))
    doc["weights"][path.stem] = file_record(path)
    doc["weights"] = dict(sorted(doc["weights"].items()))
    atomic_write_bytes(manifest, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    print(f"recorded {path.name} in {manifest}")


def main() -> None:
    """Evaluate, time, then write the weights with provenance; prints the JSON provenance."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="folder holding Set5/Set14/BSD100")
    parser.add_argument("--note", default=None, help="recipe / how it was made")
    parser.add_argument("--run-dir", type=Path, default=None, help="training run (config, metrics)")
    parser.add_argument("--from-shipped", action="store_true", help="re-package a shipped file")
    parser.add_argument(
        "--derived-from",
        default=None,
        help="the shipped model this one was compressed or fine-tuned from (not in its cost)",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for the timing")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = dualsr.load_checkpoint(args.checkpoint)
    model = ckpt.model.eval()
    old: dict = {}
    if args.from_shipped:
        from safetensors import safe_open

        with safe_open(str(args.checkpoint), "pt") as f:
            old = json.loads((f.metadata() or {}).get("provenance", "{}"))

    up = TorchUpscaler(model, backend="eager", precision="fp32")
    scores = {}
    for name in ("Set5", "Set14", "BSD100"):
        res = evaluate_folder(up, args.data / name, name=name)
        scores[name] = {"psnr": round(res.psnr, 3), "ssim": round(res.ssim, 4)}

    provenance: dict = {
        "note": args.note if args.note is not None else old.get("note", ""),
        "data": DATA,
        "eval_protocol": PROTOCOL + ", fp32",
        "eval": scores,
        "params": dualsr.count_parameters(model),
        "speed": time_720p(model, args.threads, args.repeats),
    }
    run_dir = args.run_dir or (None if args.from_shipped else args.checkpoint.parent)
    recipe = None
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        recipe = yaml.safe_load((run_dir / "config.yaml").read_text())
    elif isinstance(old.get("recipe"), str):
        recipe = yaml.safe_load(old["recipe"])
    if recipe is not None:
        provenance["recipe"] = yaml.safe_dump(portable_recipe(recipe), sort_keys=False)
    if run_dir is not None and (run_dir / "metrics.jsonl").is_file() and recipe is not None:
        rows = read_metrics(run_dir / "metrics.jsonl")
        batch = int(recipe["data"]["batch_size"])
        threads = int(recipe["train"].get("threads") or args.threads)
        provenance["cost"] = training_cost(rows, batch, threads)
        provenance["curve"] = psnr_curve(rows, batch, threads)
    elif "cost" in old:
        provenance["cost"], provenance["curve"] = old["cost"], old.get("curve", [])
    derived = args.derived_from or old.get("derived_from")
    if derived:
        provenance["derived_from"] = derived
    training = ckpt.metadata if not args.from_shipped else old.get("training")
    if isinstance(training, str):  # written as a Python repr by an early version
        training = ast.literal_eval(training)
    if isinstance(training, dict):
        provenance["training"] = {k: v for k, v in training.items() if k in ("stage", "step")}
    dualsr.save_model(args.output, model, ckpt.duals, metadata=provenance)
    record_shipped(args.output)
    print(
        json.dumps({k: v for k, v in provenance.items() if k not in ("recipe", "curve")}, indent=2)
    )


if __name__ == "__main__":
    main()
