"""How much better than bicubic are the shipped models on photos they never saw?

The benchmark sets (Set5, Set14, BSD100) are what the models were selected on; this measures the
photographs bundled with scikit-image instead (no download; none of them is in T91, BSD200 or the
benchmarks), with the papers' protocol (HR cropped to a multiple of the scale, LR by MATLAB
bicubic, PSNR on the Y channel with ``scale`` border pixels shaved), fp32:

    python experiments/unseen_images.py drn-t-x4 drn-t50-x4 --json benchmarks/results/unseen_x4.json
    python experiments/unseen_images.py drn-t-x8 --scale 8

Prints one row per image (PSNR of bicubic and of each model) and the mean gain over bicubic.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from dualsr.evaluation import evaluate_folder
from dualsr.inference import BicubicUpscaler, TorchUpscaler
from dualsr.pretrained import resolve_model

#: Natural photographs in scikit-image's data folder (colour and grayscale; rocket.jpg is a JPEG).
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "rocket.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
    "page.png",
    "text.png",
    "brick.png",
    "grass.png",
    "gravel.png",
)


def photo_folder(dest: Path) -> Path:
    """A folder of links to the photos (the package's own files stay where they are)."""
    import skimage.data

    src = Path(skimage.data.__file__).parent
    for name in PHOTOS:
        if (src / name).is_file():
            (dest / name).symlink_to(src / name)
    return dest


def main() -> None:
    """Evaluate bicubic and each model on the photos; print and optionally save the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model names or checkpoint files")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = photo_folder(Path(tmp))
        runs = {"bicubic": evaluate_folder(BicubicUpscaler(args.scale), folder, name="unseen")}
        for spec in args.models:
            up = TorchUpscaler(resolve_model(spec), backend="eager", precision="fp32")
            if up.scale != args.scale:
                raise SystemExit(f"{spec} is x{up.scale}, not x{args.scale}")
            runs[spec] = evaluate_folder(up, folder, name="unseen")
    per_image = {
        name: {r.image: round(r.psnr, 3) for r in res.images} for name, res in runs.items()
    }
    images = list(per_image["bicubic"])
    print("| image | " + " | ".join(per_image) + " |")
    print("|---|" + "---:|" * len(per_image))
    for img in images:
        print(f"| {img} | " + " | ".join(f"{per_image[m][img]:.2f}" for m in per_image) + " |")
    summary = {}
    for name in per_image:
        gains = [per_image[name][i] - per_image["bicubic"][i] for i in images]
        summary[name] = {
            "mean_psnr": round(statistics.fmean(per_image[name].values()), 3),
            "mean_gain_over_bicubic": round(statistics.fmean(gains), 3),
            "min_gain": round(min(gains), 3),
        }
    print("| mean | " + " | ".join(f"{summary[m]['mean_psnr']:.2f}" for m in per_image) + " |")
    print(
        "| gain over bicubic | "
        + " | ".join(f"{summary[m]['mean_gain_over_bicubic']:+.2f}" for m in per_image)
        + " |"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"scale": args.scale, "per_image": per_image, "summary": summary}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
