"""Winograd F(4x4, 3x3) against direct convolution: PSNR change of the shipped models on
Set5/Set14/BSD100, and how far each path is from a float64 forward.

Both paths are dualsr's PyTorch upscalers on whole images: ``--backend fused --precision fp32``
(oneDNN's direct convolution) and ``--backend winograd``. The PSNR is dualsr eval's (Y channel,
``scale`` pixels shaved, uint8 outputs). Beside it, the largest and the mean absolute difference
(0..255, before rounding) of each path from the model run in float64, on every image of the sets:
how much of the change is Winograd's rounding and how much direct convolution's own.

    python benchmarks/winograd_accuracy.py --data ../shared/datasets

Writes benchmarks/results/winograd_accuracy_<cpu kind>.json and .txt.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch

import dualsr
from dualsr.data.image_io import load_rgb_uint8
from dualsr.evaluation import benchmark_images, evaluate_folder, make_pair
from dualsr.inference import TorchUpscaler, sr_output
from dualsr.pretrained import resolve_checkpoint_path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SHIPPED = ("drn-t-x4", "drn-t50-x4", "drn-t-x8")


def distance_to_fp64(up: TorchUpscaler, model: dualsr.DRN, folder: Path) -> tuple[float, float]:
    """(largest, mean) |output - float64 output| over the folder's LR images (0..255)."""
    m64 = copy.deepcopy(model).double().eval()
    worst, total, count = 0.0, 0.0, 0
    for path in benchmark_images(folder)[1]:
        _, lr = make_pair(load_rgb_uint8(path), model.scale)
        out = up(lr.astype(np.float32), np.float32)
        x = torch.from_numpy(lr.astype(np.float64)).permute(2, 0, 1)[None]
        with torch.inference_mode():
            ref = sr_output(m64, x)[0].clamp(0, 255).permute(1, 2, 0).numpy()
        diff = np.abs(out.astype(np.float64) - ref)
        worst, total, count = (
            max(worst, float(diff.max())),
            total + float(diff.sum()),
            count + diff.size,
        )
    return worst, total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with Set5, Set14, BSD100")
    parser.add_argument("--models", nargs="+", default=list(SHIPPED))
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()
    rows = []
    lines = [
        "# Winograd F(4x4,3x3) vs direct convolution (fused fp32), whole images: "
        f"python {' '.join(sys.argv)}",
        f"# cpu {info['cpu_model']}; kind {info['cpu_kind']}; flags {' '.join(info['cpu_flags'])}",
        f"{'model':<12} {'set':<7} {'PSNR direct':>12} {'PSNR wino':>10} {'change dB':>10} "
        f"{'max|d-f64|':>11} {'max|w-f64|':>11} {'mean|d-f64|':>12} {'mean|w-f64|':>12}",
    ]
    for name in args.models:
        model = dualsr.load_model(resolve_checkpoint_path(name)).eval()
        direct = TorchUpscaler(model, backend="fused", precision="fp32")
        wino = TorchUpscaler(model, backend="winograd")
        if wino.backend != "winograd":
            sys.exit(f"the winograd backend did not build here (it ran as {wino.backend})")
        for s in args.sets:
            folder = args.data / s
            pd = evaluate_folder(direct, folder).psnr
            pw = evaluate_folder(wino, folder).psnr
            dmax, dmean = distance_to_fp64(direct, model, folder)
            wmax, wmean = distance_to_fp64(wino, model, folder)
            row = {
                "model": name,
                "set": s,
                "psnr_direct": pd,
                "psnr_winograd": pw,
                "change_db": pw - pd,
                "direct_vs_fp64": {"max": dmax, "mean": dmean},
                "winograd_vs_fp64": {"max": wmax, "mean": wmean},
            }
            rows.append(row)
            lines.append(
                f"{name:<12} {s:<7} {pd:>12.4f} {pw:>10.4f} {pw - pd:>+10.4f} "
                f"{dmax:>11.2e} {wmax:>11.2e} {dmean:>12.2e} {wmean:>12.2e}"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    RESULTS.mkdir(exist_ok=True)
    stem = f"winograd_accuracy_{info['cpu_kind']}"
    (RESULTS / f"{stem}.txt").write_text(text + "\n")
    (RESULTS / f"{stem}.json").write_text(
        json.dumps({"machine": info, "rows": rows}, indent=2) + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
