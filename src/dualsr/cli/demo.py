"""``dualsr demo``: upscale sample images and compare with bicubic and the ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..data.image_io import write_image
from ..data.samples import sample_images
from ..evaluation import make_pair, score
from ..inference import BicubicUpscaler, TorchUpscaler
from ..pretrained import DEFAULT_PRESET, default_model_name, resolve_model


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="upscale sample images and compare with bicubic",
        description="Downscale sample photographs with MATLAB-style bicubic, "
        "super-resolve them, and report PSNR/SSIM of the model and of bicubic "
        "against the originals. Writes the images and a side-by-side comparison.",
    )
    p.add_argument(
        "--model",
        "-m",
        default=default_model_name() or DEFAULT_PRESET,
        help="checkpoint or preset (default: the shipped lightweight x4 model)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("demo_output"),
        metavar="DIR",
        help="where to write the images (default: demo_output)",
    )
    p.add_argument(
        "--max-size",
        type=int,
        default=256,
        metavar="PX",
        help="centre-crop samples to at most PX x PX HR pixels to keep the demo quick "
        "(default: 256)",
    )
    return p


def comparison(
    panels: list[np.ndarray],
    box: tuple[int, int, int],
    labels: list[str] | None = None,
    gap: int = 4,
) -> np.ndarray:
    """Side-by-side panels with, under each, a x2 nearest-neighbour zoom of the same crop box,
    and an optional label in each panel's top-left corner."""
    y, x, size = box
    h, w = panels[0].shape[:2]
    zooms = [
        np.kron(p[y : y + size, x : x + size], np.ones((2, 2, 1), dtype=np.uint8)) for p in panels
    ]
    zh, zw = zooms[0].shape[:2]
    width = len(panels) * (w + gap) - gap
    canvas = np.full((h + gap + zh, width, 3), 255, dtype=np.uint8)
    for i, (p, z) in enumerate(zip(panels, zooms, strict=True)):
        x0 = i * (w + gap)
        canvas[:h, x0 : x0 + w] = p
        canvas[h + gap :, x0 : x0 + min(zw, w)] = z[:, : min(zw, w)]
        # mark the zoomed box in red on the panel
        canvas[y, x0 + x : x0 + x + size] = canvas[y + size - 1, x0 + x : x0 + x + size] = (
            255,
            0,
            0,
        )
        canvas[y : y + size, x0 + x] = canvas[y : y + size, x0 + x + size - 1] = (255, 0, 0)
    if labels:
        from PIL import Image, ImageDraw

        image = Image.fromarray(canvas)
        draw = ImageDraw.Draw(image)
        for i, label in enumerate(labels):
            x0 = i * (w + gap)
            left, top, right, bottom = draw.textbbox((x0 + 3, 2), label)
            draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=(0, 0, 0))
            draw.text((x0 + 3, 2), label, fill=(255, 255, 255))
        canvas = np.asarray(image)
    return canvas


def run(args: argparse.Namespace) -> int:
    """Run the demo and print a PSNR/SSIM table."""
    model = resolve_model(args.model)
    scale = model.scale
    sr_up, bic_up = TorchUpscaler(model), BicubicUpscaler(scale)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"model: {args.model} (x{scale})")
    print(f"{'image':<12} {'bicubic PSNR/SSIM':>18} {'dualsr PSNR/SSIM':>18}")
    for name, img in sample_images().items():
        h, w = img.shape[:2]
        m = min(args.max_size, h, w)
        top, left = (h - m) // 2, (w - m) // 2
        hr, lr = make_pair(img[top : top + m, left : left + m], scale)
        bic, sr = bic_up(lr), sr_up(lr)
        pb, sb = score(bic, hr, scale)
        ps, ss = score(sr, hr, scale)
        print(f"{name:<12} {pb:>10.2f}/{sb:.4f} {ps:>10.2f}/{ss:.4f}")
        write_image(args.out / f"{name}_lr.png", lr)
        write_image(args.out / f"{name}_sr.png", sr)
        size = max(8, hr.shape[0] // 4)
        box = ((hr.shape[0] - size) // 2, (hr.shape[1] - size) // 2, size)
        write_image(
            args.out / f"{name}_compare.png",
            comparison([bic, sr, hr], box, ["bicubic", "dualsr", "ground truth"]),
        )
    print(f"images written to {args.out}/ (*_compare.png: bicubic | dualsr | ground truth)")
    return 0
