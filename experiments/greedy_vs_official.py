"""Does the moments greedy pick the channels the released per-channel loop picks?

For every searched layer, in the official order, both greedy variants select the layer's channels
from the same network state, on the same pruning batches:

* ``official``: the released code's loop (``greedy="passes"``, one channel per step, a gradient
  pass and a local-SGD epoch per channel, the ``official`` score, the bias updated);
* ``moments``: our fast variant (``greedy="moments"``), with the same score, bias and gamma.

The network then advances with the official loop's selection (its weights and bias), so every
layer is compared from the state the released procedure would have reached; the moments greedy
runs on a copy. Per layer the script prints and saves whether the two kept sets are equal, their
overlap, and each variant's reconstruction MSE on the pruning data.

With ``--crops fresh`` (as ``dualsr prune --crops fresh``, the pruning default) each variant
draws its own passes from the same seeded crop source, as it would in its own pruning run: the
released loop new crops for every gradient pass and local-SGD epoch, the moments greedy one
draw per layer. The selections then differ by data as well as by method; both reconstruction
MSEs are measured on the first pass's crops.

Run (the shipped small model and T91; expensive: the official loop makes two full passes per kept
channel)::

    OMP_NUM_THREADS=2 .venv/bin/python experiments/greedy_vs_official.py --model drn-t-x4 \\
        --data ../shared/datasets/T91 --rate 0.3 --images 64 --patch-size 128 --batch-size 16 \\
        --out runs/greedy_vs_official/drn-t-x4-r30.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

import dualsr
from dualsr.checkpoint import load_checkpoint
from dualsr.cli.prune import pruning_batches, pruning_source
from dualsr.compression.criteria import (
    DEFAULT_RATE_ROUNDING,
    DEFAULT_SCORE,
    GRADIENT_SCORES,
    RATE_ROUNDINGS,
    get_criterion,
    rate_config,
)
from dualsr.compression.greedy import Pyramid, select_greedy
from dualsr.compression.layers import SearchedLayer, searched_layers
from dualsr.compression.prune import PruneOptions, check_channel_config, teacher_features
from dualsr.compression.pruning_data import CropSource, LayerData, PassData
from dualsr.models.registry import read_channel_config
from dualsr.pretrained import resolve_checkpoint_path


def reconstruction_mse(
    model: dualsr.DRN,
    layer: SearchedLayer,
    batches: Sequence[Pyramid],
    targets: Sequence[torch.Tensor],
) -> float:
    """Mean over batches of MSE(``layer``'s consumer output in ``model``, original output)."""
    outputs = teacher_features(model, layer, batches)
    pairs = zip(outputs, targets, strict=True)
    return sum(float(F.mse_loss(o, t)) for o, t in pairs) / len(outputs)


def compare(
    model: dualsr.DRN,
    duals: dualsr.DualModels | None,
    config: Sequence[int],
    batches: Sequence[Pyramid],
    method: str = "drc",
    gamma: float = 1.0,
    score: str = DEFAULT_SCORE,
    local_bias: bool = True,
    max_layers: int | None = None,
    log: bool = True,
    fresh: CropSource | None = None,
) -> list[dict]:
    """Per searched layer, the official loop's and the moments greedy's selections (see module).

    Layers kept at full width are reported without running either greedy. ``max_layers`` stops
    after that many layers (for a quick look). ``fresh``: a fresh crop source each variant draws
    its passes from (``batches`` then only serve the MSEs); None: every pass reads ``batches``.
    """
    criterion = get_criterion(method)
    if criterion.needs != "gradients":
        raise ValueError(f"--method must be a gradient method (drc, dcp), got {method!r}")
    criterion = get_criterion(method, score=score)  # the greedy scores with the criterion's rule
    config = check_channel_config(model, config)
    official = PruneOptions(
        method=method,
        gamma=gamma,
        greedy="passes",
        channels_per_pass=1,
        score=score,
        local_bias=local_bias,
    )
    # greedy="moments" explicitly: the released loop ("passes") is PruneOptions' default
    moments = PruneOptions(
        method=method, gamma=gamma, score=score, local_bias=local_bias, greedy="moments"
    )
    official.check()
    device = next(model.parameters()).device
    data = [[t.to(device, torch.float32) for t in pyramid] for pyramid in batches]
    work = copy.deepcopy(model).eval().requires_grad_(False)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    dual_copy = None
    if duals is not None and criterion.dual:
        dual_copy = copy.deepcopy(duals).to(device).eval().requires_grad_(False)
    draws_m = draws_o = None
    if fresh is not None:  # each variant's own sequence of draws, as in its own pruning run
        draws_m, draws_o = PassData(fresh, device), PassData(fresh, device)
    rows: list[dict] = []
    layers = list(zip(searched_layers(work), searched_layers(teacher), config, strict=True))
    with torch.enable_grad():
        for index, (layer, tlayer, n_keep) in enumerate(layers):
            if max_layers is not None and index >= max_layers:
                break
            row: dict = {"index": layer.index, "name": layer.name, "width": layer.width}
            row["kept"] = n_keep
            if n_keep == layer.width:
                row.update(same=True, overlap=n_keep, skipped=True)
                rows.append(row)
                continue
            targets = teacher_features(teacher, tlayer, data)
            feed_m = feed_o = data
            feed_targets: list[torch.Tensor] | None = targets
            if draws_m is not None and draws_o is not None:
                teach = partial(teacher_features, teacher, tlayer)
                feed_m, feed_o = LayerData(draws_m, teach), LayerData(draws_o, teach)
                feed_targets = None
            pretrained = tlayer.consumer.weight.detach()
            # the moments greedy on a copy of the current state
            fork = copy.deepcopy(work)
            flayer = searched_layers(fork)[index]
            t0 = time.perf_counter()
            keep_m, _ = select_greedy(
                fork,
                flayer,
                pretrained,
                dual_copy,
                n_keep,
                feed_m,
                feed_targets,
                criterion,
                moments,
            )
            row["moments_seconds"] = round(time.perf_counter() - t0, 3)
            row["moments_mse"] = reconstruction_mse(fork, flayer, data, targets)
            del fork
            # the official loop on the network itself (it carries on from this selection)
            t0 = time.perf_counter()
            keep_o, _ = select_greedy(
                work,
                layer,
                pretrained,
                dual_copy,
                n_keep,
                feed_o,
                feed_targets,
                criterion,
                official,
            )
            row["official_seconds"] = round(time.perf_counter() - t0, 3)
            row["official_mse"] = reconstruction_mse(work, layer, data, targets)
            overlap = len(set(keep_o) & set(keep_m))
            row.update(
                same=keep_o == keep_m,
                overlap=overlap,
                official=keep_o,
                moments=keep_m,
                skipped=False,
            )
            rows.append(row)
            if log:
                print(
                    f"layer {layer.index:3d} {layer.name:<24} {layer.width:4d} -> {n_keep:4d}  "
                    f"same {'yes' if row['same'] else 'no ':<3}  overlap {overlap}/{n_keep}  "
                    f"mse official {row['official_mse']:.4g} moments {row['moments_mse']:.4g}  "
                    f"{row['official_seconds']:.1f}s / {row['moments_seconds']:.1f}s",
                    flush=True,
                )
    return rows


def summary(rows: Sequence[dict]) -> dict:
    """Counts over the compared (not full-width) layers."""
    compared = [r for r in rows if not r["skipped"]]
    kept = sum(r["kept"] for r in compared)
    return {
        "layers": len(rows),
        "compared": len(compared),
        "identical": sum(r["same"] for r in compared),
        "overlap": sum(r["overlap"] for r in compared),
        "kept": kept,
        "overlap_fraction": sum(r["overlap"] for r in compared) / kept if kept else 1.0,
        "official_seconds": round(sum(r["official_seconds"] for r in compared), 2),
        "moments_seconds": round(sum(r["moments_seconds"] for r in compared), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", "-m", required=True, help="checkpoint or shipped model name")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="HR training images")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--config", type=Path, help="channel configuration file")
    which.add_argument("--rate", type=float, default=0.3, help="channel rate (default 0.3)")
    p.add_argument("--rate-rounding", default=DEFAULT_RATE_ROUNDING, choices=list(RATE_ROUNDINGS))
    p.add_argument("--method", default="drc", choices=["drc", "dcp"])
    p.add_argument("--gamma", type=float, default=1.0, help="(default 1)")
    p.add_argument("--score", default=DEFAULT_SCORE, choices=list(GRADIENT_SCORES))
    p.add_argument("--local-bias", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--images", type=int, default=64, help="HR patches (default 64)")
    p.add_argument("--patch-size", type=int, default=128, help="(default 128)")
    p.add_argument("--batch-size", type=int, default=16, help="(default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--crops",
        default="fixed",
        choices=["fixed", "fresh"],
        help="fixed: every pass reads the same crops (default); fresh: new crops per pass",
    )
    p.add_argument("--layers", type=int, default=None, help="compare only the first N layers")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", type=Path, help="JSON file for the per-layer results")
    args = p.parse_args(argv)

    ckpt = load_checkpoint(resolve_checkpoint_path(args.model), map_location=args.device)
    model = ckpt.model.eval()
    if args.method == "drc" and ckpt.duals is None and args.gamma > 0:
        print("error: --method drc needs dual models; this checkpoint has none", file=sys.stderr)
        return 1
    if args.config is not None:
        config = read_channel_config(args.config)
        source = str(args.config)
    else:
        config = rate_config(model.channel_widths(), args.rate, args.rate_rounding)
        source = f"rate {args.rate:g} ({args.rate_rounding})"
    batches = pruning_batches(
        args.data, model.scale, args.images, args.patch_size, args.batch_size, args.seed
    )
    print(f"{args.model}: {len(config)} layers to {source}; {len(batches)} pruning batches")
    rows = compare(
        model,
        ckpt.duals,
        config,
        batches,
        args.method,
        args.gamma,
        args.score,
        args.local_bias,
        args.layers,
        fresh=pruning_source(
            args.data, model.scale, args.images, args.patch_size, args.batch_size, args.seed
        )
        if args.crops == "fresh"
        else None,
    )
    result = {
        "model": str(args.model),
        "config_source": source,
        "channel_config": list(config),
        "settings": {
            k: getattr(args, k)
            for k in (
                "method",
                "gamma",
                "score",
                "local_bias",
                "images",
                "patch_size",
                "batch_size",
                "seed",
                "crops",
            )
        },
        "data": list(args.data),
        "summary": summary(rows),
        "layers": rows,
    }
    s = result["summary"]
    print(
        f"identical selections in {s['identical']} of {s['compared']} compared layers; "
        f"overlap {s['overlap']}/{s['kept']} channels ({s['overlap_fraction']:.1%}); "
        f"{s['official_seconds']:.0f} s official loop, {s['moments_seconds']:.0f} s moments"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
