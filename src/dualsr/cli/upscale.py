"""``dualsr upscale``: super-resolve image files, folders (or folder trees) and globs."""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..data.image_io import (
    DEFAULT_PNG_COMPRESSION,
    DEFAULT_QUALITY,
    IMAGE_SUFFIXES,
    allow_huge_images,
    can_write,
    is_image_file,
    is_unwritable_image_suffix,
    list_images,
    read_image,
    writable_formats,
    write_image,
)
from ..errors import DualSRError
from ..pretrained import DEFAULT_PRESETS, DEFAULT_SCALE, require_default_model, shipped_weights
from ..tiling import upscale_within_memory
from .common import (
    add_inference_options,
    build_upscaler,
    ensure_writable_folder,
    interactive_stderr,
)

#: Output formats that cannot hold an alpha channel.
_NO_ALPHA = {".jpg", ".jpeg", ".bmp"}
#: The output format of an input whose own format cannot be written (GIF, ...): lossless, alpha.
FALLBACK_SUFFIX = ".png"


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="upscale images with a DRN model",
        description="Super-resolve images. INPUT may be files, folders (their images; with "
        "--recursive, their whole trees) or glob patterns. Grayscale stays grayscale, alpha is "
        "upscaled with bicubic, 16-bit grayscale keeps 16 bits, EXIF orientation is applied; "
        "the ICC profile, EXIF and DPI are kept where the output format holds them. "
        "Inputs are never overwritten; one failing file does not stop the others.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or globs")
    p.add_argument(
        "-i",
        "--input",
        dest="more_inputs",
        action="append",
        default=[],
        metavar="INPUT",
        help="another input (repeatable; the same as a positional INPUT)",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT",
        help="output folder, or an output file when there is a single input (with --recursive, "
        "an output folder inside an input folder is left out of the input scan)",
    )
    p.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="take the images of input folders' subfolders too, and mirror the tree in OUT "
        "(IN/a/b/x.png -> OUT/a/b/x_x4.png)",
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave outputs that already exist untouched (resume an interrupted batch)",
    )
    p.add_argument(
        "-s",
        "--outscale",
        type=_positive_float,
        default=None,
        metavar="S",
        help="final scale: the model runs at its own scale, then the result is resized (MATLAB "
        "bicubic, antialiased when shrinking) to exactly round(S x input size); e.g. 2 or 1.5 "
        "with a x4 model (default: the model's scale)",
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
        help="output format (default: same as the input; PNG for inputs whose format cannot be "
        "written, e.g. GIF)",
    )
    p.add_argument(
        "--quality",
        type=_quality,
        default=DEFAULT_QUALITY,
        metavar="Q",
        help=f"JPEG and WebP output quality, 1-100 (default: {DEFAULT_QUALITY})",
    )
    p.add_argument(
        "--png-compression",
        type=_png_level,
        default=DEFAULT_PNG_COMPRESSION,
        metavar="N",
        help="zlib level of PNG outputs, 0-9: higher is smaller and slower, the pixels are the "
        f"same (default: {DEFAULT_PNG_COMPRESSION}, fast; 6, Pillow's default, writes files "
        "about 12%% smaller in about 5x the time)",
    )
    p.add_argument(
        "--allow-huge",
        action="store_true",
        help="read images above Pillow's decompression-bomb limit (about 179 M pixels); only "
        "for files you trust",
    )
    p.add_argument(
        "--scale",
        type=int,
        choices=sorted(DEFAULT_PRESETS),
        default=None,
        help="the model's scale: without --model it picks the shipped model of that scale ("
        + ", ".join(
            f"x{s}: {n}" + ("" if shipped_weights(n) else " (not shipped yet)")
            for s, n in sorted(DEFAULT_PRESETS.items())
        )
        + f"; default x{DEFAULT_SCALE}); with --model it must match the model",
    )
    add_inference_options(
        p,
        default_model=None,
        tile_by_default=True,
        model_help="default: the shipped model of --scale",
    )
    return p


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _quality(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number 1-100, got {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be from 1 to 100, got {value}")
    return value


def _png_level(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number 0-9, got {text!r}") from None
    if not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"must be from 0 to 9, got {value}")
    return value


@dataclass
class InputFile:
    """An image to upscale; ``relative`` is its folder below the input folder it was found in
    (mirrored under the output folder with --recursive)."""

    path: Path
    relative: Path = Path()


def expand_inputs(
    inputs: list[str], recursive: bool = False, exclude: Path | None = None
) -> tuple[list[InputFile], list[str]]:
    """Files from files, folders and globs (deduplicated, order kept), plus problems found.

    ``exclude`` (the output folder) is left out when scanning folder trees, so that a rerun
    with the outputs inside an input tree does not take them as inputs.
    """
    files: list[InputFile] = []
    problems: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = _folder_images(path, recursive, exclude)
            if not found:
                more = "" if recursive else " (add --recursive for its subfolders)"
                problems.append(f"{path}: folder has no images{more}")
            files += found
        elif path.is_file():
            files.append(InputFile(path))
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item) if is_image_file(Path(m)))
            if not matches:
                problems.append(f"{item}: pattern matches no image")
            files += [InputFile(m) for m in matches]
        else:
            problems.append(f"{item}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


def _folder_images(folder: Path, recursive: bool, exclude: Path | None = None) -> list[InputFile]:
    if not recursive:
        return [InputFile(p) for p in list_images(folder)]
    skip = exclude.resolve() if exclude is not None else None
    found = []
    for root, dirs, names in os.walk(folder):
        if skip is not None:
            dirs[:] = [d for d in dirs if (Path(root) / d).resolve() != skip]
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if is_image_file(path):
                found.append(InputFile(path, path.parent.relative_to(folder)))
    return found


def scale_suffix(scale: float) -> str:
    """``_x4``, ``_x1.5``: the default output-name suffix for a final scale."""
    return f"_x{scale:g}"


def check_output(output: Path, n_inputs: int) -> bool:
    """Validate ``-o`` before any work; True when it names a single output file."""
    if is_unwritable_image_suffix(output.suffix) and not output.is_dir():
        raise DualSRError(
            f"-o {output}: {output.suffix.lstrip('.').upper()} images cannot be written; name an "
            f"output file ending in one of {writable_formats()}, or a folder"
        )
    as_file = output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir()
    if n_inputs > 1 and output.is_file():
        raise DualSRError(
            f"-o {output} is an existing file, but there are {n_inputs} inputs: give a folder"
        )
    if n_inputs > 1 and as_file:
        raise DualSRError(
            f"-o {output} looks like a file name, but there are {n_inputs} inputs: give a "
            f"folder (e.g. -o {output.with_suffix('')}/), or upscale one image"
        )
    if output.exists() and not output.is_dir() and not as_file:
        raise DualSRError(f"-o {output} is an existing file, not a folder: give a folder")
    folder = output.parent if as_file else output
    ensure_writable_folder(folder, "-o")
    return as_file


def plan_outputs(
    files: list[InputFile],
    output: Path,
    suffix: str,
    fmt: str | None,
    single_file: bool = False,
) -> dict[Path, Path]:
    """Map each input to its output path; refuses to overwrite an input. Without ``fmt`` an
    output keeps its input's format, or is PNG when that format cannot be written (GIF, ...)."""
    plan: dict[Path, Path] = {}
    taken: dict[Path, Path] = {}
    inputs = {f.path.resolve() for f in files}
    for f in files:
        if single_file:
            dst = output
        else:
            ext = f".{fmt}" if fmt else output_suffix(f.path)
            dst = output / f.relative / f"{f.path.stem}{suffix}{ext}"
        key = dst.resolve()
        if key in inputs:
            raise DualSRError(
                f"output {dst} would overwrite an input image; choose another "
                "output folder or --suffix"
            )
        if key in taken:
            raise DualSRError(
                f"inputs {taken[key]} and {f.path} would both be written to {dst}; "
                "upscale them into different folders (or use --recursive to mirror the tree)"
            )
        taken[key] = f.path
        plan[f.path] = dst
    return plan


def output_suffix(src: Path) -> str:
    """The output suffix of ``src`` without --format: its own, or PNG if it cannot be written."""
    return src.suffix if can_write(src.suffix) else FALLBACK_SUFFIX


def resize_to(pixels: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Resize H x W (x C) pixels to ``out_hw`` with MATLAB bicubic (antialiased when shrinking),
    keeping uint8 or float."""
    if pixels.shape[:2] == tuple(out_hw):
        return pixels
    from ..data.imresize import imresize

    return imresize(pixels, output_shape=out_hw)


def upscale_file(
    upscaler,
    src: Path,
    dst: Path,
    outscale: float | None = None,
    status: Callable[[str], None] | None = None,
    quality: int = DEFAULT_QUALITY,
    png_compression: int = DEFAULT_PNG_COMPRESSION,
) -> tuple[int, int]:
    """Upscale one file to ``dst``; returns the output (width, height).

    With ``outscale`` the result is resized to exactly ``round(outscale * size)``. A forward
    that runs out of memory is retried with smaller tiles (a warning says so). ``status`` is
    told what is happening (the PNG encoding of a huge output takes tens of seconds).
    ``quality`` applies to JPEG and WebP outputs, ``png_compression`` to PNG ones; the input's
    ICC profile, EXIF and DPI are written where the output format holds them.
    """
    image = read_image(src)
    h, w = image.pixels.shape[:2]
    out_dtype = np.float32 if image.bits == 16 else np.uint8
    image.pixels = upscale_within_memory(upscaler, image.pixels, out_dtype, src)
    if image.alpha is not None:
        from ..inference import BicubicUpscaler

        alpha = BicubicUpscaler(upscaler.scale)(image.alpha[..., None], out_dtype=np.float32)
        image.alpha = np.clip(alpha[..., 0], 0, 255)
    if outscale is not None and outscale != upscaler.scale:
        out_hw = (max(1, round(outscale * h)), max(1, round(outscale * w)))
        image.pixels = resize_to(image.pixels, out_hw)
        if image.alpha is not None:
            image.alpha = np.clip(resize_to(image.alpha, out_hw), 0, 255)
    if image.alpha is not None and dst.suffix.lower() in _NO_ALPHA:
        warnings.warn(
            f"{dst}: {dst.suffix.lstrip('.').upper()} has no alpha channel, so the "
            f"transparency of {src.name} is dropped; use --format png to keep it",
            stacklevel=2,
        )
    out_h, out_w = image.pixels.shape[:2]
    if status is not None:
        status(f"{src.name}: writing {out_w}x{out_h}")
    write_image(dst, image, quality=quality, png_compression=png_compression)
    return out_w, out_h


def run(args: argparse.Namespace) -> int:
    """Upscale every input; report failures and exit non-zero if any."""
    inputs = [*args.inputs, *args.more_inputs]
    if not inputs:
        raise DualSRError("no input given: name image files, folders or globs (or -i INPUT)")
    if args.model is None:
        args.model = require_default_model(args.scale or DEFAULT_SCALE)
    if args.allow_huge:
        allow_huge_images()
    files, problems = expand_inputs(inputs, args.recursive, exclude=args.output)
    for msg in problems:
        print(f"error: {msg}", file=sys.stderr)
    if not files:
        raise DualSRError("no input images found")
    single_file = check_output(args.output, len(files))
    interactive = interactive_stderr()
    tile_bar: list[tqdm] = []  # created on the first multi-tile image

    def on_tile(done: int, total: int) -> None:
        if total <= 1 or not interactive:  # no nested bar in logs
            return
        if not tile_bar:
            tile_bar.append(tqdm(total=total, unit="tile", leave=False))
        bar = tile_bar[0]
        bar.total, bar.n = total, done
        bar.refresh()

    upscaler = _upscaler(args, [f.path for f in files], on_tile)
    final_scale = args.outscale or upscaler.scale
    suffix = scale_suffix(final_scale) if args.suffix is None else args.suffix
    plan = plan_outputs(files, args.output, suffix, args.format, single_file)
    _say_format_fallbacks(plan, args.format, single_file)
    counts = {"done": 0, "skipped": 0, "failed": 0}
    shown = warnings.showwarning
    warnings.showwarning = _warning_through_tqdm  # warning lines do not break the bars
    try:
        _upscale_all(upscaler, plan, args, final_scale, interactive, counts)
        _measure_start_up(args, upscaler)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (cli.Terminated): main sets the status
        remaining = len(plan) - sum(counts.values())
        tqdm.write(
            f"stopped: wrote {counts['done']} image(s) to {args.output}, {remaining} of "
            f"{len(plan)} not done; rerun the same command with --skip-existing to continue "
            "(finished outputs are complete, no half-written file is left)",
            file=sys.stderr,
        )
        raise
    finally:
        warnings.showwarning = shown
        for tb in tile_bar:
            tb.close()
    failed = counts["failed"] + len(problems)
    parts = [f"wrote {counts['done']} image(s) to {args.output}"]
    if counts["skipped"]:
        parts.append(f"skipped {counts['skipped']} existing")
    if failed:
        parts.append(f"{failed} failed")
    print(", ".join(parts))
    if failed:
        print(f"error: {failed} input(s) failed; see the messages above", file=sys.stderr)
        return 1
    return 0


def _upscaler(args: argparse.Namespace, inputs: list[Path], progress: Callable) -> Any:
    """What runs the model: ONNX Runtime without importing PyTorch where a measurement says it
    finishes this job first (:mod:`dualsr.deploy.launch`), else :func:`build_upscaler` (after
    the images, :func:`_measure_start_up` then takes that measurement, once)."""
    from ..deploy.launch import launch_without_torch

    fast = launch_without_torch(args, inputs, progress)
    if fast is not None:
        return fast
    return build_upscaler(args, scale=args.scale, progress=progress)


def _measure_start_up(args: argparse.Namespace, upscaler: Any) -> None:
    """Once per machine and model file, after a PyTorch run's images are written: what this
    model costs to start and per pixel with and without PyTorch (``record_launch``), for the
    next runs' choice. A failure only warns: the images are done."""
    from ..deploy.launch import OrtLaunchUpscaler, eligible, model_file_for

    if isinstance(upscaler, OrtLaunchUpscaler):
        return  # this run skipped PyTorch: measured already
    model_file = model_file_for(args.model) if eligible(args) else None
    if model_file is None:
        return
    from ..deploy.autoselect import record_launch

    try:
        record_launch(upscaler, model_file, args.precision)
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"could not measure the start-up without PyTorch ({exc})", stacklevel=2)


def _upscale_all(
    upscaler,  # noqa: ANN001
    plan: dict[Path, Path],
    args: argparse.Namespace,
    final_scale: float,
    interactive: bool,
    counts: dict[str, int],
) -> None:
    """The loop of :func:`run`: one file after the other, counting into ``counts``. With a
    terminal on stderr, a progress bar; otherwise (a log file, CI) one plain line per file."""
    total = len(plan)
    with tqdm(plan.items(), unit="img", desc=f"x{final_scale:g}", disable=not interactive) as bar:
        for i, (src, dst) in enumerate(bar, 1):
            if args.skip_existing and dst.is_file() and dst.stat().st_size > 0:
                counts["skipped"] += 1
                continue
            bar.set_postfix_str(src.name)
            status = bar.set_postfix_str if interactive else None
            start = time.perf_counter()
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                out_w, out_h = upscale_file(
                    upscaler,
                    src,
                    dst,
                    args.outscale,
                    status,
                    quality=args.quality,
                    png_compression=args.png_compression,
                )
                counts["done"] += 1
            except (DualSRError, OSError) as exc:
                counts["failed"] += 1
                text = exc if isinstance(exc, DualSRError) else f"{dst}: {exc}"
                tqdm.write(f"error: {text}", file=sys.stderr)
                continue
            if not interactive:
                seconds = time.perf_counter() - start
                print(
                    f"[{i}/{total}] {src} -> {dst} ({out_w}x{out_h}, {seconds:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )


def _say_format_fallbacks(plan: dict[Path, Path], fmt: str | None, single_file: bool) -> None:
    """One note when inputs in formats that cannot be written (GIF, ...) get PNG outputs."""
    if fmt or single_file:
        return
    kinds = sorted({src.suffix.lower() for src in plan if not can_write(src.suffix)})
    if kinds:
        names = ", ".join(k.lstrip(".").upper() for k in kinds)
        n = sum(1 for src in plan if not can_write(src.suffix))
        print(
            f"note: {n} input(s) in {names}, which cannot be written: their outputs are "
            f"{FALLBACK_SUFFIX.lstrip('.').upper()} (--format chooses another)",
            file=sys.stderr,
        )


def _warning_through_tqdm(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    tqdm.write(f"warning: {message}", file=sys.stderr)
