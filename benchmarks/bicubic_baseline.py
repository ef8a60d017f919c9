"""Bicubic baseline on the standard benchmarks: checks our imresize + metrics protocol.

The published bicubic x4 figures (PSNR on Y, border = scale) are 28.42 / 26.10 / 25.96 dB on
Set5 / Set14 / BSD100. Our protocol must land within 0.02 dB of each. For other scales (x8) no
published row is checked here: the script only measures the baseline the x8 models are compared to.

    python benchmarks/bicubic_baseline.py --data ../shared/datasets --scale 4 \
        | tee benchmarks/results/bicubic_x4.txt
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from dualsr.evaluation import evaluate_folder
from dualsr.inference import BicubicUpscaler

PUBLISHED = {4: {"Set5": (28.42, 0.810), "Set14": (26.10, 0.702), "BSD100": (25.96, 0.667)}}
TOLERANCE_DB = 0.02


def main() -> int:
    """Evaluate bicubic and compare with the published rows; exit 1 if any row is off."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding Set5/Set14/...")
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args()
    published = PUBLISHED.get(args.scale, {})
    print(f"# bicubic x{args.scale}; python {platform.python_version()}; {platform.machine()}")
    print(f"# command: {' '.join(sys.argv)}")
    print(f"{'dataset':<8} {'PSNR':>8} {'SSIM':>7} {'paper':>13} {'diff dB':>8}  ok")
    ok = True
    for name in ("Set5", "Set14", "BSD100"):
        start = time.perf_counter()
        res = evaluate_folder(BicubicUpscaler(args.scale), args.data / name, name=name)
        took = f"({len(res.images)} images, {time.perf_counter() - start:.1f} s)"
        if name not in published:
            print(f"{name:<8} {res.psnr:>8.3f} {res.ssim:>7.4f} {'-':>13} {'-':>8}  -     {took}")
            continue
        p_psnr, p_ssim = published[name]
        diff = res.psnr - p_psnr
        row_ok = abs(diff) <= TOLERANCE_DB
        ok &= row_ok
        print(
            f"{name:<8} {res.psnr:>8.3f} {res.ssim:>7.4f} {p_psnr:>6.2f}/{p_ssim:.3f} "
            f"{diff:>+8.3f}  {'yes' if row_ok else 'NO'}   {took}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
