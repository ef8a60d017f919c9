"""Cost and quality of the DRC greedy channel selection: the paper's loop vs the faster ones.

The paper's greedy loop (``greedy="passes", channels_per_pass=1``) spends two full passes over
the pruning data per kept channel: one to accumulate gradients, one epoch of local SGD. Measured
here on the same model, data and configurations:

* ``passes, k=K``: K channels selected per gradient pass (K times fewer passes);
* ``moments`` (the default): the reconstruction term's gradient computed exactly from per-layer
  input moments (one truncated pass per layer), so every channel is still selected and locally
  optimised one at a time; the SR term's gradient from one real pass per layer, and one real
  local-SGD epoch at the end of each layer;
* the other methods (dcp, thinet, cp, l1) for reference.

The model is a small DRN (x4, n_feats 8, 2 RCABs per stage) quickly fitted on T91 with the dual
regression loss (cached between runs), pruned with 64 HR patches of 64 px (4 batches of 16) to the
uniform configurations at 30% and 50%, and evaluated on Set5 (Y, border 4) after pruning, without
fine-tuning. Single-threaded CPU.

    python benchmarks/bench_greedy.py --train ../shared/datasets/T91 --eval ../shared/datasets/Set5

Writes benchmarks/results/bench_greedy.json and .md (the recorded output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import dualsr
from dualsr.compression.prune import prune_model
from dualsr.compression.pruning.widths import uniform_config
from dualsr.data.image_io import list_images, load_rgb_uint8
from dualsr.data.pyramid import make_pyramid
from dualsr.evaluation import evaluate_folder
from dualsr.inference import BicubicUpscaler, TorchUpscaler

SCALE, N_FEATS, N_BLOCKS = 4, 8, 2
RESULTS = Path(__file__).parent / "results"


def load_pyramids(folder: Path, scale: int) -> list[list[np.ndarray]]:
    """The uint8 pyramid of every image of ``folder`` (cropped to a multiple of the scale)."""
    if not list_images(folder) and (folder / "HR").is_dir():
        folder = folder / "HR"
    out = []
    for path in list_images(folder):
        hr = load_rgb_uint8(path)
        h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
        out.append(make_pyramid(np.ascontiguousarray(hr[:h, :w]), scale))
    return out


def random_batch(
    pyramids: list[list[np.ndarray]], n: int, patch: int, rng: np.random.Generator
) -> list[torch.Tensor]:
    """``n`` aligned random crops (HR side ``patch``) as a float pyramid in [0, 255]."""
    levels: list[list[np.ndarray]] = [[] for _ in pyramids[0]]
    lr_patch = patch // SCALE
    for _ in range(n):
        pyr = pyramids[int(rng.integers(len(pyramids)))]
        lh, lw = pyr[0].shape[:2]
        y, x = int(rng.integers(lh - lr_patch + 1)), int(rng.integers(lw - lr_patch + 1))
        for lvl, arr in enumerate(pyr):
            f = 2**lvl
            levels[lvl].append(arr[y * f : (y + lr_patch) * f, x * f : (x + lr_patch) * f])
    return [torch.from_numpy(np.stack(lv).transpose(0, 3, 1, 2).copy()).float() for lv in levels]


def fit_model(
    pyramids: list[list[np.ndarray]], steps: int, seed: int
) -> tuple[dualsr.DRN, dualsr.DualModels]:
    """A quickly fitted small DRN and its duals (dual regression loss, Adam, cosine)."""
    torch.manual_seed(seed)
    model, duals = dualsr.DRN(SCALE, N_FEATS, N_BLOCKS), dualsr.DualModels(SCALE, N_FEATS)
    params = list(model.parameters()) + list(duals.parameters())
    opt = torch.optim.Adam(params, lr=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-6)
    loss_fn = dualsr.DualRegressionLoss(0.1)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        batch = random_batch(pyramids, 16, 48, rng)
        outputs = model(batch[0])
        loss = loss_fn(outputs, batch, duals(outputs)).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            print(f"  fit step {step}: loss {loss.item():.3f}", flush=True)
    return model.eval(), duals.eval()


def set5_psnr(model: dualsr.DRN | None, folder: Path) -> float:
    """Mean PSNR (Y, border = scale) on ``folder``; bicubic when ``model`` is None."""
    upscaler = BicubicUpscaler(SCALE) if model is None else TorchUpscaler(model.eval())
    return evaluate_folder(upscaler, folder).psnr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train", type=Path, default=Path("../shared/datasets/T91"))
    p.add_argument("--eval", type=Path, default=Path("../shared/datasets/Set5"))
    p.add_argument("--fit-steps", type=int, default=3000)
    p.add_argument("--rates", type=float, nargs="+", default=[0.3, 0.5], help="uniform rates")
    p.add_argument("--patches", type=int, default=64)
    p.add_argument("--patch-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--k", type=int, nargs="+", default=[2, 4, 8], help="channels per pass")
    p.add_argument("--baselines", nargs="*", default=["dcp", "thinet", "cp", "l1"])
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dualsr")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)

    ckpt = args.cache / f"bench_greedy_drn{SCALE}_{N_FEATS}_{N_BLOCKS}_{args.fit_steps}.safetensors"
    print(f"loading {args.train} ...", flush=True)
    pyramids = load_pyramids(args.train, SCALE)
    if ckpt.is_file():
        loaded = dualsr.load_checkpoint(ckpt)
        model, duals = loaded.model.eval(), loaded.duals
        fit_seconds = float(loaded.metadata.get("fit_seconds", 0.0))
    else:
        print(f"fitting DRN({SCALE}, {N_FEATS}, {N_BLOCKS}) for {args.fit_steps} steps ...")
        t0 = time.perf_counter()
        model, duals = fit_model(pyramids, args.fit_steps, args.seed)
        fit_seconds = time.perf_counter() - t0
        dualsr.save_model(ckpt, model, duals, {"fit_seconds": fit_seconds, "data": str(args.train)})
    assert duals is not None

    rng = np.random.default_rng(args.seed + 1)
    n_batches = args.patches // args.batch_size
    batches = [
        random_batch(pyramids, args.batch_size, args.patch_size, rng) for _ in range(n_batches)
    ]
    full_psnr, bicubic_psnr = set5_psnr(model, args.eval), set5_psnr(None, args.eval)
    print(f"full model {full_psnr:.3f} dB, bicubic {bicubic_psnr:.3f} dB")

    runs: list[tuple[str, str, dict]] = [
        ("paper loop (passes, k=1)", "drc", {"greedy": "passes", "channels_per_pass": 1})
    ]
    runs += [
        (f"passes, k={k}", "drc", {"greedy": "passes", "channels_per_pass": k})
        for k in args.k
        if k != 1
    ]
    runs += [
        ("moments (default)", "drc", {}),
        ("moments, no final epoch", "drc", {"final_epochs": 0}),
        ("moments, refresh 8", "drc", {"refresh": 8}),
    ]
    runs += [(f"{m} (default)", m, {}) for m in args.baselines]
    rows = []
    for rate in args.rates:
        config = uniform_config(model.channel_widths(), rate)
        print(f"rate {rate}: config {config}")
        for label, method, kwargs in runs:
            t0 = time.perf_counter()
            result = prune_model(model, duals, config, batches, method=method, **kwargs)
            seconds = time.perf_counter() - t0
            psnr = set5_psnr(result.model, args.eval)
            row = {
                "rate": rate,
                "run": label,
                "method": method,
                "options": kwargs,
                "passes": result.stats.passes,
                "gradient_passes": result.stats.gradient_passes,
                "local_passes": result.stats.local_passes,
                "truncated_passes": result.stats.teacher_passes + result.stats.feature_passes,
                "seconds": round(seconds, 2),
                "psnr": round(psnr, 3),
                "params": dualsr.count_parameters(result.model),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    doc = {
        "model": f"DRN(scale={SCALE}, n_feats={N_FEATS}, n_blocks={N_BLOCKS})",
        "fit": {"data": str(args.train), "steps": args.fit_steps, "seconds": round(fit_seconds)},
        "prune_data": f"{n_batches} batches x {args.batch_size} patches, HR {args.patch_size}px",
        "configs": {str(r): uniform_config(model.channel_widths(), r) for r in args.rates},
        "eval": str(args.eval),
        "full_params": dualsr.count_parameters(model),
        "full_psnr": round(full_psnr, 3),
        "bicubic_psnr": round(bicubic_psnr, 3),
        "machine": f"{platform.processor() or platform.machine()}, 1 torch thread, "
        f"{os.cpu_count()} cores shared with other jobs",
        "torch": torch.__version__,
        "runs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_greedy.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        f"# bench_greedy: {doc['model']}, uniform configurations, {doc['prune_data']}",
        "",
        f"Full model {full_psnr:.3f} dB, bicubic {bicubic_psnr:.3f} dB (Set5, Y, border 4); "
        "PSNR after pruning, before fine-tuning. passes = full forward/backward passes over the "
        "pruning data; truncated = forward passes that stop at the layer (original model, "
        f"statistics). {doc['machine']}.",
        "",
        "| rate | run | passes | truncated | seconds | speed-up | PSNR (dB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = next(b for b in rows if b["rate"] == r["rate"])
        speed = f"{base['seconds'] / r['seconds']:.1f}x" if r["seconds"] else "-"
        lines.append(
            f"| {r['rate']} | {r['method']}: {r['run']} | {r['passes']} | {r['truncated_passes']} "
            f"| {r['seconds']} | {speed} | {r['psnr']:.3f} |"
        )
    (args.out / "bench_greedy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
