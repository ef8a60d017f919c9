"""``dualsr eval``: PSNR/SSIM of a model on benchmark folders, with the papers' protocol."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from ..data.locate import add_data_root_option, resolve_data_dirs
from ..evaluation import (
    DatasetResult,
    benchmark_images,
    evaluate_folder,
    failed_rows,
    results_rows,
)
from ..fileio import atomic_write_bytes
from .common import (
    add_inference_options,
    build_upscaler,
    ensure_writable_folder,
    interactive_stderr,
)


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="evaluate PSNR/SSIM on benchmark folders",
        description="Evaluate on folders of HR images: each HR image is cropped to a multiple of "
        "the scale, its LR input made with MATLAB-style bicubic, and PSNR/SSIM computed on the Y "
        "channel with `scale` border pixels shaved.",
    )
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="folders of HR images (or with an HR/ subfolder), or data set names such as Set5",
    )
    add_data_root_option(p)
    p.add_argument(
        "--scale",
        type=int,
        default=None,
        help="upscaling factor (default: the model's; x4 for bicubic)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("eval_results"),
        metavar="DIR",
        help="where per-image results.csv and results.json go (default: eval_results)",
    )
    add_inference_options(p, default_model=None)
    return p


def format_table(results: list[DatasetResult], title: str) -> str:
    """A plain-text table: dataset, PSNR, SSIM, images, failed, seconds; then one line per
    image that could not be scored (the means leave it out)."""
    head = f"{'dataset':<12} {'PSNR':>8} {'SSIM':>7} {'images':>7} {'failed':>7} {'seconds':>8}"
    lines = [title, head]
    for r in results:
        lines.append(
            f"{r.dataset:<12} {r.psnr:>8.2f} {r.ssim:>7.4f} {len(r.images):>7d} "
            f"{len(r.failed):>7d} {r.seconds:>8.2f}"
        )
    for row in failed_rows(results):
        reason = row["error"].split(f"{row['image']}: ", 1)[-1]  # the path is in the name
        lines.append(f"failed: {row['dataset']}/{row['image']}: {reason}")
    return "\n".join(lines)


#: Columns of results.csv: scored images, then the failed ones (empty scores, the error).
CSV_FIELDS = ["dataset", "image", "psnr", "ssim", "seconds", "error"]


def write_results(out: Path, results: list[DatasetResult], meta: dict) -> None:
    """Per-image CSV (failed images last, with their error) and a JSON with the scored images,
    the failed ones and per-dataset summaries."""
    rows = results_rows(results)
    failed = failed_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, restval="")
    writer.writeheader()
    writer.writerows(rows)
    writer.writerows(failed)
    atomic_write_bytes(out / "results.csv", buf.getvalue().encode())
    doc = {**meta, "datasets": [r.summary() for r in results], "images": rows, "failed": failed}
    atomic_write_bytes(out / "results.json", json.dumps(doc, indent=2).encode())


def run(args: argparse.Namespace) -> int:
    """Check every folder and --out, then evaluate with progress; a bad image is reported and
    skipped (exit 1 at the end), the others are still scored."""
    import sys

    from tqdm import tqdm

    from ..errors import DualSRError

    args.data = resolve_data_dirs(args.data, args.data_root)  # names -> folders (data/locate.py)
    sets = [benchmark_images(folder) for folder in args.data]  # every folder, before any work
    if args.out.exists() and not args.out.is_dir():
        raise DualSRError(f"--out {args.out} is an existing file, not a folder: give a folder")
    ensure_writable_folder(args.out, "--out")
    upscaler = build_upscaler(args, scale=args.scale)
    scale = upscaler.scale
    total = sum(len(files) for _, files in sets)
    results = []
    interactive = interactive_stderr()  # a bar on a terminal; one line per data set in logs
    with tqdm(total=total, unit="img", desc="eval", leave=False, disable=not interactive) as bar:

        def failed(path: Path, exc: DualSRError) -> None:
            tqdm.write(f"error: {exc}", file=sys.stderr)
            bar.update(1)

        for folder, (name, _) in zip(args.data, sets, strict=True):
            bar.set_postfix_str(name)
            results.append(
                evaluate_folder(
                    upscaler, folder, name, on_image=lambda _r: bar.update(1), on_error=failed
                )
            )
            if not interactive:
                r = results[-1]
                print(
                    f"{r.dataset}: {len(r.images)} image(s) scored, {len(r.failed)} failed, "
                    f"{r.seconds:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    precision = getattr(upscaler, "precision", "fp32")  # bicubic and ONNX Runtime: fp32
    title = f"model: {args.model}  scale: x{scale}  precision: {precision}" + (
        "  (self-ensemble)" if args.self_ensemble else ""
    )
    print(format_table(results, title))
    meta = {
        "model": args.model,
        "scale": scale,
        "self_ensemble": args.self_ensemble,
        "precision": precision,
        "backend": getattr(upscaler, "backend", None),
        "tile": getattr(upscaler, "tile", None),
        "tile_overlap": args.tile_overlap,
        "protocol": "Y channel (BT.601), border shave = scale, MATLAB bicubic LR, uint8 SR",
    }
    write_results(args.out, results, meta)
    print(f"per-image results: {args.out / 'results.csv'}, {args.out / 'results.json'}")
    n_failed = sum(len(r.failed) for r in results)
    if n_failed:
        print(f"error: {n_failed} image(s) could not be evaluated; see above", file=sys.stderr)
        return 1
    return 0
