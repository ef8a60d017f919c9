"""Does ``dualsr adapt`` help on LR images that are not MATLAB-bicubic downscales?

For each test set and degradation: the HR images are degraded (``dualsr.adaptation.Degradation``:
Gaussian blur before a bicubic x4 downscale, nearest-neighbour downscaling, JPEG, noise, blur +
JPEG), the model is adapted to the degraded LR images alone (their HR is never shown to it), and
the unadapted model, the adapted one and bicubic are scored against HR (PSNR/SSIM on Y, the
papers' protocol: ``dualsr.evaluation.score``). One job per (set, degradation, scheme, seed);
finished jobs are kept in the JSON and skipped on a rerun.

    python experiments/adapt_degradations.py --data ../shared/datasets --sets Set5 \\
        --degradations bicubic blur=1.6,jpeg=75 --seeds 0 --steps 150 --threads 2
    # the full grid on a GPU (about 6 minutes on an H200):
    python experiments/adapt_degradations.py --data DATA --device cuda --seeds 0 1 2 --steps 300
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _machine import machine  # noqa: E402

from dualsr.adaptation import AdaptOptions, adapt, parse_degradation, state_path  # noqa: E402
from dualsr.data.image_io import list_images, load_rgb_uint8, write_image  # noqa: E402
from dualsr.evaluation import crop_to_scale, score  # noqa: E402
from dualsr.fileio import atomic_write_bytes  # noqa: E402
from dualsr.inference import BicubicUpscaler, TorchUpscaler  # noqa: E402
from dualsr.pretrained import resolve_checkpoint_path  # noqa: E402

DEGRADATIONS = [
    "bicubic",
    "blur=1.2",
    "blur=2.0",
    "down=nearest",
    "jpeg=40",
    "blur=1.6,jpeg=75",
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/datasets"))
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    p.add_argument("--degradations", nargs="+", default=DEGRADATIONS)
    p.add_argument(
        "--schemes",
        nargs="+",
        default=["paper", "estimate"],
        help="recipes: a scheme, optionally with option overrides (estimate,unpaired_ratio=0)",
    )
    p.add_argument("--paired", nargs="*", default=["T91"], help="paired sets under --data")
    p.add_argument("--model", default="drn-t-x4")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=None, help="override the recipe's learning rate")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument(
        "--estimates-only",
        action="store_true",
        help="record the estimated degradation of each (set, degradation, seed); no training",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="jobs run at once (processes; a GPU takes many)"
    )
    p.add_argument("--work", type=Path, default=Path("runs/adapt_degradations"))
    p.add_argument(
        "--output", type=Path, default=Path("benchmarks/results/adapt_degradations.json")
    )
    p.add_argument(
        "--summary",
        action="store_true",
        help="print the table of --output (mean +- std over seeds of the change against the "
        "unadapted model); no jobs",
    )
    return p.parse_args()


def summary_rows(jobs: dict) -> list[dict]:
    """One row per (set, degradation, scheme and steps): the seeds' PSNR/SSIM changes against
    the unadapted model, their mean and sample standard deviation, and the paired LR used."""
    cells: dict[tuple, list[tuple[str, dict]]] = {}
    for key, row in jobs.items():
        parts = key.split("|")
        if len(parts) != 5 or "delta_psnr" not in row:
            continue
        name, spec, scheme, seed, steps = parts
        cells.setdefault((name, spec, scheme, steps), []).append((seed, row))
    rows = []
    for (name, spec, scheme, steps), runs in cells.items():
        base = jobs[f"{name}|{spec}|unadapted"]
        dp = np.array([r["delta_psnr"] for _, r in runs])
        ds = np.array([r["ssim"] - base["ssim"] for _, r in runs])
        rows.append(
            {
                "set": name,
                "degradation": spec,
                "scheme": scheme,
                "steps": steps,
                "seeds": sorted(s for s, _ in runs),
                "bicubic_psnr": jobs[f"{name}|{spec}|bicubic"]["psnr"],
                "unadapted_psnr": base["psnr"],
                "unadapted_ssim": base["ssim"],
                "delta_psnr_mean": float(dp.mean()),
                "delta_psnr_std": float(dp.std(ddof=1)) if len(dp) > 1 else None,
                "delta_ssim_mean": float(ds.mean()),
                "paired_lr": sorted({r["degradation"] for _, r in runs}),
            }
        )
    return sorted(rows, key=lambda r: (r["degradation"], r["scheme"], r["set"]))


def print_summary(jobs: dict) -> None:
    """The summary table as Markdown."""
    print(
        "| LR made with | set | scheme | seeds | bicubic | unadapted | adapted change (dB) "
        "| SSIM change | paired LR |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in summary_rows(jobs):
        std = f" +- {r['delta_psnr_std']:.3f}" if r["delta_psnr_std"] is not None else ""
        print(
            f"| {r['degradation']} | {r['set']} | {r['scheme']} | {len(r['seeds'])} "
            f"| {r['bicubic_psnr']:.2f} | {r['unadapted_psnr']:.2f} / {r['unadapted_ssim']:.4f} "
            f"| {r['delta_psnr_mean']:+.3f}{std} | {r['delta_ssim_mean']:+.4f} "
            f"| {', '.join(r['paired_lr'])} |"
        )


def degraded_set(data: Path, name: str, spec: str, work: Path, scale: int) -> tuple[Path, list]:
    """Write the degraded LR images of a set (PNG, lossless) once; return the folder and HR."""
    deg = parse_degradation(spec)
    folder = work / "lr" / name / deg.spec().replace(",", "_").replace("=", "")
    hrs = []
    for i, path in enumerate(list_images(data / name / "HR")):
        hr = crop_to_scale(load_rgb_uint8(path), scale)
        hrs.append(hr)
        target = folder / f"{path.stem}.png"
        if not target.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            write_image(target, deg.apply(hr, scale, np.random.default_rng(1000 + i)))
    return folder, hrs


def evaluate(upscaler, folder: Path, hrs: list, scale: int) -> dict:
    """Mean PSNR/SSIM (Y) of ``upscaler`` on the LR images of ``folder`` against ``hrs``."""
    rows = [
        score(upscaler(load_rgb_uint8(p)), hr, scale)
        for p, hr in zip(list_images(folder), hrs, strict=True)
    ]
    return {
        "psnr": float(np.mean([r[0] for r in rows])),
        "ssim": float(np.mean([r[1] for r in rows])),
    }


def run_job(item: tuple, args: argparse.Namespace, base_path: str, paired: list, scale: int):
    """Adapt to one degraded set and score the result; returns (job key, row)."""
    job, name, spec, scheme, seed = item
    if args.threads:
        torch.set_num_threads(args.threads)
    folder, hrs = degraded_set(args.data, name, spec, args.work, scale)
    scheme_name, _, overrides = scheme.partition(",")
    extra: dict = {"lr": args.lr} if args.lr else {}
    for pair in filter(None, overrides.split(",")):
        k, _, v = pair.partition("=")
        if k == "paired":  # paired=none: no paired data (self-pairs)
            paired = [] if v == "none" else [args.data / v]
            continue
        extra[k] = type(getattr(AdaptOptions(), k))(v)
    out = (
        args.work
        / "models"
        / (job.replace("|", "_").replace("=", "").replace(",", "_") + ".safetensors")
    )
    out.unlink(missing_ok=True)
    opts = AdaptOptions(steps=args.steps, minutes=None, seed=seed, scheme=scheme_name, **extra)
    t0 = time.perf_counter()
    res = adapt(
        [folder],
        out,
        model=base_path,
        paired=paired,
        options=opts,
        device=args.device,
        progress=False,
        resume=state_path(out).exists(),  # a job cut short by a stop continues where it was
    )
    seconds = time.perf_counter() - t0
    up = TorchUpscaler(res.model, device=args.device, precision="fp32")
    row = evaluate(up, folder, hrs, scale)
    row.update(seconds=round(seconds, 1), degradation=res.degradation.spec())
    return job, row


def record(jobs: dict, job: str, row: dict) -> None:
    """Store a job's row with its gain over the unadapted model, and print it."""
    base = jobs["|".join(job.split("|")[:2]) + "|unadapted"]["psnr"]
    row["delta_psnr"] = row["psnr"] - base
    jobs[job] = row
    print(
        f"{job}: {row['psnr']:.2f} dB ({row['delta_psnr']:+.3f} vs unadapted, paired LR: "
        f"{row['degradation']}, {row['seconds']:.0f} s)",
        flush=True,
    )


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = json.loads(args.output.read_text()) if args.output.is_file() else {}
    if args.summary:
        print_summary(results.get("jobs", {}))
        return 0
    results["machine"] = machine()
    commands = results.setdefault("commands", [])
    command = "python " + " ".join(sys.argv)
    if command not in commands:
        commands.append(command)
    jobs = results.setdefault("jobs", {})
    base_path = resolve_checkpoint_path(args.model)
    import dualsr

    base = dualsr.load_model(base_path)
    scale = base.scale
    paired = [args.data / p for p in args.paired]

    def save() -> None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.output, json.dumps(results, indent=1, sort_keys=True).encode())

    if args.estimates_only:
        from dualsr.adaptation.estimate import estimate_degradation
        from dualsr.adaptation.images import load_paired_hr

        refs = load_paired_hr(paired, scale)
        for name in args.sets:
            for spec in args.degradations:
                folder, _ = degraded_set(args.data, name, spec, args.work, scale)
                lrs = [load_rgb_uint8(p) for p in list_images(folder)]
                for seed in args.seeds:
                    est, _ = estimate_degradation(lrs, refs, scale, seed)
                    jobs[f"{name}|{spec}|estimate-only|seed{seed}"] = {"degradation": est.spec()}
                    print(f"{name} {spec} seed {seed}: estimated {est.spec()}", flush=True)
        save()
        return 0
    todo = []
    for name in args.sets:
        for spec in args.degradations:
            folder, hrs = degraded_set(args.data, name, spec, args.work, scale)
            key = f"{name}|{spec}"
            if f"{key}|unadapted" not in jobs:
                up = TorchUpscaler(base, device=args.device, precision="fp32")
                jobs[f"{key}|unadapted"] = evaluate(up, folder, hrs, scale)
                jobs[f"{key}|bicubic"] = evaluate(BicubicUpscaler(scale), folder, hrs, scale)
                save()
            for scheme in args.schemes:
                for seed in args.seeds:
                    job = f"{key}|{scheme}|seed{seed}|steps{args.steps}"
                    if job not in jobs:
                        todo.append((job, name, spec, scheme, seed))
    todo.sort(key=lambda item: item[4])  # seed by seed: a cut-short run still covers the grid
    print(f"{len(todo)} jobs to run, {args.workers} at a time", flush=True)
    run = partial(run_job, args=args, base_path=str(base_path), paired=paired, scale=scale)
    if args.workers > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.workers) as pool:
            for job, row in pool.imap_unordered(run, todo):
                record(jobs, job, row)
                save()
    else:
        for item in todo:
            record(jobs, *run(item))
            save()
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
