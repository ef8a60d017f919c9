"""Tiled vs whole-image inference quality: PSNR difference on a benchmark set.

Tiles change the result only near tile borders (bicubic pre-upsampling and convolution context,
plus the channel attention's global pooling over the tile); the overlap hides most of it.

    python benchmarks/tiling_quality.py --model drn-t-x4 --data ../shared/datasets/Set14 \
        | tee benchmarks/results/tiling_quality.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from dualsr.evaluation import evaluate_folder
from dualsr.inference import DEFAULT_TILE_OVERLAP, TorchUpscaler
from dualsr.pretrained import resolve_model

LIMIT_DB = 0.05


def main() -> int:
    """Print whole vs tiled PSNR for several tile sizes; exit 1 if the default overlap exceeds
    the limit for any tile size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="drn-t-x4")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--tiles", default="32,48,64", help="LR tile sizes to try")
    args = parser.parse_args()
    model = resolve_model(args.model)
    print(f"# {' '.join(sys.argv)}")
    print(f"# model {args.model}, {platform.machine()}, load {os.getloadavg()[0]:.1f}")
    whole = evaluate_folder(TorchUpscaler(model), args.data)
    print(f"whole image            PSNR {whole.psnr:.4f}  SSIM {whole.ssim:.4f}")
    ok = True
    for tile in (int(t) for t in args.tiles.split(",")):
        for overlap in (0, 8, DEFAULT_TILE_OVERLAP):
            res = evaluate_folder(TorchUpscaler(model, tile=tile, tile_overlap=overlap), args.data)
            diff = res.psnr - whole.psnr
            flag = ""
            if overlap == DEFAULT_TILE_OVERLAP:
                flag = "ok" if abs(diff) <= LIMIT_DB else "OVER LIMIT"
                ok &= abs(diff) <= LIMIT_DB
            print(
                f"tile {tile:>3} overlap {overlap:>2}  PSNR {res.psnr:.4f}  diff {diff:+.4f} dB  "
                f"{flag}"
            )
    print(f"default overlap {DEFAULT_TILE_OVERLAP}: within {LIMIT_DB} dB: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
