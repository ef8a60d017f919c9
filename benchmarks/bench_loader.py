"""Throughput of the training data loader alone: HR patches (with their LR pyramid) per second.

Setting of the DRC search and fine-tuning: DRN-S x4, HR patch 192 (LR 48), batch 16, random flips
and transposes. The first pass decodes every image and builds its pyramid into the disk cache
(timed separately); then the loader is timed with 0 and 2 worker processes, reading
memory-mapped uint8 pyramids from the cache, up to the uint8 batch in the main process.

    python benchmarks/bench_loader.py --data ../shared/datasets/T91

Writes benchmarks/results/bench_loader.json and .txt.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

from _machine import machine

from dualsr.data.dataset import (
    PatchDataset,
    StepBatchSampler,
    build_store,
    find_images,
    make_loader,
)

RESULTS = Path(__file__).parent / "results"


def time_loader(dataset: PatchDataset, batch: int, workers: int, batches: int) -> dict:
    """Patches per second over ``batches`` batches after a warm-up of a few batches."""
    sampler = StepBatchSampler(len(dataset), batch, seed=0)
    loader = iter(make_loader(dataset, sampler, workers=workers))
    for _ in range(3):  # start the workers, fill the prefetch queue
        next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        levels = next(loader)
    seconds = time.perf_counter() - start
    del loader
    shapes = [list(t.shape) for t in levels]
    return {
        "workers": workers,
        "batches": batches,
        "seconds": seconds,
        "patches_per_s": batches * batch / seconds,
        "batch_shapes": shapes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/T91"))
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--patch", type=int, default=192)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh temp dir")
    args = parser.parse_args()

    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="dualsr-bench-cache-"))
    records = find_images(args.data, None, args.scale)
    report: dict = {"machine": machine(), "data": str(args.data), "images": len(records)}
    report["setting"] = {"scale": args.scale, "hr_patch": args.patch, "batch": args.batch}
    for label in ("cold", "warm"):
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            store = build_store(records, args.scale, patch_size=args.patch, cache_dir=cache)
        report[f"cache_{label}_s"] = time.perf_counter() - start
    report["images_used"] = len(store)
    report["skipped"] = [str(w.message) for w in caught]
    dataset = PatchDataset(store, args.scale, args.patch, augment=True)
    report["loader"] = [time_loader(dataset, args.batch, w, args.batches) for w in (0, 2)]
    report["machine"]["loadavg_after"] = os.getloadavg()

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_loader.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# data loader throughput: {report['machine']['command']}",
        f"# {report['machine']['platform']}, {report['machine']['cpus']} CPUs, torch "
        f"{report['machine']['torch']}; load average before {report['machine']['loadavg']}, "
        f"after {report['machine']['loadavg_after']} (shared machine)",
        f"{args.data}: {len(records)} images, {len(store)} used (HR >= {args.patch} px)",
        f"x{args.scale}, HR patch {args.patch} (LR {args.patch // args.scale}), batch {args.batch}",
        f"cache build (decode + MATLAB-bicubic pyramid, disk): {report['cache_cold_s']:.1f} s",
        f"cache reuse (memory-map the .npy files):           {report['cache_warm_s']:.2f} s",
    ]
    for row in report["loader"]:
        lines.append(
            f"loader, {row['workers']} workers: {row['patches_per_s']:8.0f} patches/s "
            f"({row['batches']} batches in {row['seconds']:.2f} s)"
        )
    text = "\n".join(lines) + "\n"
    (RESULTS / "bench_loader.txt").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
