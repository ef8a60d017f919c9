"""``dualsr upscale``: super-resolve image files, folders or globs."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.image_io import IMAGE_SUFFIXES, is_image_file, list_images, read_image, write_image
from ..errors import DualSRError
from ..inference import BicubicUpscaler
from ..pretrained import default_model_name
from .common import add_inference_options, build_upscaler

# LR tile size used by default: bounds memory on large photos (see docs/inference.md)
DEFAULT_TILE = 256


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="upscale images with a DRN model",
        description="Super-resolve images. INPUT may be files, folders (their images) or glob "
        "patterns. Grayscale stays grayscale, alpha is upscaled with bicubic, 16-bit grayscale "
        "keeps 16 bits, EXIF orientation is applied. Inputs are never overwritten.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT",
        help="output folder, or an output file when there is a single input",
    )
    p.add_argument(
        "--suffix",
        default=None,
        help="appended to output file names in a folder (default: _x<scale>)",
    )
    p.add_argument(
        "--format",
        default=None,
        choices=[s.lstrip(".") for s in IMAGE_SUFFIXES],
        help="output format (default: same as the input)",
    )
    add_inference_options(p, default_model=default_model_name(), default_tile=DEFAULT_TILE)
    return p


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files from files, folders and globs (deduplicated, order kept), plus problems found."""
    files: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = list_images(path)
            if not found:
                problems.append(f"{path}: folder has no images")
            files += found
        elif path.is_file():
            files.append(path)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item) if is_image_file(Path(m)))
            if not matches:
                problems.append(f"{item}: pattern matches no image")
            files += matches
        else:
            problems.append(f"{item}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def plan_outputs(
    files: list[Path], output: Path, scale: int, suffix: str | None, fmt: str | None
) -> dict[Path, Path]:
    """Map each input to its output path; refuses to overwrite an input."""
    single_file = (
        len(files) == 1 and output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir()
    )
    suffix = f"_x{scale}" if suffix is None else suffix
    plan: dict[Path, Path] = {}
    taken: dict[Path, Path] = {}
    inputs = {f.resolve() for f in files}
    for f in files:
        if single_file:
            dst = output
        else:
            ext = f".{fmt}" if fmt else f.suffix
            dst = output / f"{f.stem}{suffix}{ext}"
        key = dst.resolve()
        if key in inputs:
            raise DualSRError(
                f"output {dst} would overwrite an input image; choose another "
                "output folder or --suffix"
            )
        if key in taken:
            raise DualSRError(
                f"inputs {taken[key]} and {f} would both be written to {dst}; "
                "upscale them into different folders"
            )
        taken[key] = f
        plan[f] = dst
    return plan


def upscale_file(upscaler, src: Path, dst: Path) -> tuple[int, int]:
    """Upscale one file to ``dst``; returns the output (width, height)."""
    image = read_image(src)
    if image.bits == 16:
        image.pixels = upscaler(image.pixels, out_dtype=np.float32)
    else:
        image.pixels = upscaler(image.pixels)
    if image.alpha is not None:
        alpha = BicubicUpscaler(upscaler.scale)(image.alpha[..., None], out_dtype=np.float32)
        image.alpha = np.clip(alpha[..., 0], 0, 255)
    write_image(dst, image)
    return image.pixels.shape[1], image.pixels.shape[0]


def run(args: argparse.Namespace) -> int:
    """Upscale every input; report failures and exit non-zero if any."""
    files, problems = expand_inputs(args.inputs)
    for msg in problems:
        print(f"error: {msg}", file=sys.stderr)
    if not files:
        raise DualSRError("no input images found")
    tile_bar: list[tqdm] = []  # created on the first multi-tile image

    def on_tile(done: int, total: int) -> None:
        if total <= 1:
            return
        if not tile_bar:
            tile_bar.append(tqdm(total=total, unit="tile", leave=False))
        bar = tile_bar[0]
        bar.total, bar.n = total, done
        bar.refresh()

    upscaler = build_upscaler(args, progress=on_tile)
    plan = plan_outputs(files, args.output, upscaler.scale, args.suffix, args.format)
    failed = len(problems)
    with tqdm(plan.items(), unit="img", desc=f"x{upscaler.scale}") as bar:
        for src, dst in bar:
            bar.set_postfix_str(src.name)
            try:
                upscale_file(upscaler, src, dst)
            except DualSRError as exc:
                failed += 1
                tqdm.write(f"error: {exc}", file=sys.stderr)
    for bar in tile_bar:
        bar.close()
    done = len(plan) - (failed - len(problems))
    print(f"wrote {done} image(s) to {args.output}")
    if failed:
        print(f"error: {failed} input(s) failed; see the messages above", file=sys.stderr)
        return 1
    return 0
