"""PNG write time and size at each zlib level, for the SR outputs ``dualsr upscale`` writes.

Why ``dualsr upscale`` writes PNGs at level 1 (``--png-compression``, default
:data:`dualsr.data.image_io.DEFAULT_PNG_COMPRESSION`) rather than Pillow's 6: the encode is a
fixed cost of every upscaled image, as large as the model's time for a small model. The pixels
are the same at every level; only the time and the file size change.

The images: the shipped drn-t-x4's outputs for the bicubic x4 LR of every HR image in
``<data>/Set14/HR`` (real SR outputs, smoother than photos), and the synthetic 1280x720 output
of benchmarks/bench_upscale_process.py. Each save is to memory, the median of ``--repeats``.

    python benchmarks/bench_png_write.py --data ../shared/datasets [--repeats 3]

Writes benchmarks/results/bench_png_write_<cpu kind>.json and .txt.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _machine import machine
from PIL import Image

RESULTS = Path(__file__).parent / "results"
LEVELS = range(10)


def encode(pixels: np.ndarray, level: int, repeats: int) -> tuple[float, int]:
    """Median seconds and bytes of saving ``pixels`` as a PNG at zlib ``level``."""
    image = Image.fromarray(pixels)
    times, size = [], 0
    for _ in range(repeats):
        buf = io.BytesIO()
        start = time.perf_counter()
        image.save(buf, format="PNG", compress_level=level)
        times.append(time.perf_counter() - start)
        size = buf.tell()
    return statistics.median(times), size


def sr_outputs(data: Path) -> list[tuple[str, np.ndarray]]:
    """The shipped drn-t-x4's outputs for Set14's bicubic x4 LR images, as uint8 arrays."""
    from dualsr.data.image_io import list_images, load_rgb_uint8
    from dualsr.data.imresize import imresize
    from dualsr.inference import TorchUpscaler
    from dualsr.pretrained import resolve_model

    upscaler = TorchUpscaler(resolve_model("drn-t-x4"), tile=None)
    out = []
    for path in list_images(data / "Set14" / "HR"):
        hr = load_rgb_uint8(path)
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        lr = imresize(hr.astype(np.float32), 1 / 4)
        out.append((path.name, upscaler(lr, out_dtype=np.uint8)))
    return out


def synthetic() -> np.ndarray:
    """The 1280x720 output of bench_upscale_process.py's input, upscaled with bicubic."""
    from dualsr.data.imresize import imresize

    h, w = 180, 320
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 127 + 80 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 13.0)[..., None]
    img = np.clip(img + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.float32)
    return np.clip(imresize(img, 4.0), 0, 255).round().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding Set14/HR")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    info = machine()
    load_start = os.getloadavg()
    sets = {"Set14 SR outputs (drn-t-x4)": sr_outputs(args.data)}
    sets["synthetic 1280x720 (bicubic x4)"] = [("synthetic", synthetic())]
    rows = {}
    for name, images in sets.items():
        per_level = {}
        for level in LEVELS:
            results = [encode(pixels, level, args.repeats) for _, pixels in images]
            per_level[level] = {
                "seconds": sum(t for t, _ in results),
                "bytes": sum(b for _, b in results),
            }
        rows[name] = {
            "images": len(images),
            "megapixels": sum(p.shape[0] * p.shape[1] for _, p in images) / 1e6,
            "levels": per_level,
        }
    load_end = os.getloadavg()
    lines = [
        f"# PNG encode (Pillow, to memory, median of {args.repeats}) per zlib level: "
        f"python {' '.join(sys.argv)}",
        f"# cpu {info['cpu_model']}; kind {info['cpu_kind']}; flags {' '.join(info['cpu_flags'])}",
        f"# {info['platform']}, Pillow {Image.__version__}; load average "
        f"{tuple(round(v, 2) for v in load_start)} at start, "
        f"{tuple(round(v, 2) for v in load_end)} at end",
    ]
    for name, row in rows.items():
        six = row["levels"][6]
        lines.append(f"{name}: {row['images']} image(s), {row['megapixels']:.2f} MP")
        lines.append(f"  {'level':>5} {'seconds':>8} {'MB':>7} {'time vs 6':>10} {'size vs 6':>10}")
        for level, r in row["levels"].items():
            lines.append(
                f"  {level:>5} {r['seconds']:>8.3f} {r['bytes'] / 1e6:>7.2f} "
                f"{r['seconds'] / six['seconds']:>9.2f}x {r['bytes'] / six['bytes']:>9.2f}x"
            )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stem = f"bench_png_write_{info['cpu_kind']}"
    (RESULTS / f"{stem}.txt").write_text(text + "\n")
    doc = {"machine": info, "loadavg_start": load_start, "loadavg_end": load_end, "sets": rows}
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
