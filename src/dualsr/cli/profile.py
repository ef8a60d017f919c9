"""``dualsr profile``: parameters, multiply-adds, activations and peak memory at a stated size."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..checkpoint import load_model
from ..errors import DualSRError
from ..fileio import atomic_write_bytes
from ..models.drn import DRN
from ..models.registry import PRESETS, create_model, get_preset, read_channel_config
from ..profiling import (
    DEFAULT_OUTPUT_HW,
    NTIRE_INPUT_HW,
    input_for_output,
    parse_hw,
    profile_model,
)
from .common import positive_int


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="count parameters, multiply-adds, activations and peak memory",
        description="The cost of one forward pass at a stated size. Multiply-adds (MACs) and "
        "activations (conv output elements) are counted exactly on the meta device; peak "
        "memory is measured (RSS high-water mark of a real forward in a fresh process). The "
        "default size is a 1280x720 output (720x1280 as HxW), the convention of lightweight SR "
        "papers; the DRN releases' cost figures are for a 96x96 input (--input 96x96).",
    )
    add_model_argument(p)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--input", metavar="HxW", help="LR input size, e.g. 180x320")
    size.add_argument(
        "--output",
        metavar="HxW",
        help=f"SR output size (default: {DEFAULT_OUTPUT_HW[0]}x{DEFAULT_OUTPUT_HW[1]})",
    )
    size.add_argument(
        "--ntire",
        action="store_true",
        help=f"the NTIRE efficient-SR convention: a {NTIRE_INPUT_HW[0]}x{NTIRE_INPUT_HW[1]} input",
    )
    p.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory measurement (a real forward)"
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="threads for the measured forward"
    )
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write JSON here")
    return p


def add_model_argument(p: argparse.ArgumentParser, nargs: str | None = None) -> None:
    """The MODEL positional and --channel-config (shared with ``dualsr bench``)."""
    p.add_argument(
        "model",
        nargs=nargs,
        metavar="MODEL",
        help=f"a preset ({', '.join(PRESETS)}) or a checkpoint file; presets are built with "
        "random weights, which do not change any cost",
    )
    p.add_argument(
        "--channel-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a channel-configuration file (one width a line) applied to the preset's "
        "architecture: profile any width configuration",
    )


def model_for_costs(spec: str, channel_config: Path | None = None) -> DRN:
    """A preset (random weights: costs do not depend on them) or a checkpoint, in eval mode."""
    from .. import hub
    from ..pretrained import resolve_model

    path = Path(spec).expanduser()
    is_weights = path.is_file() or hub.find_release(spec) is not None or hub.is_url(spec)
    if is_weights and channel_config is not None:
        raise DualSRError("--channel-config applies to a preset, not to a checkpoint")
    if path.is_file():
        return load_model(path)
    if is_weights:  # a released model (fetched once into the cache) or a URL
        return resolve_model(spec).eval()
    preset = get_preset(spec)  # KeyError lists the presets
    if channel_config is None:
        return create_model(spec).eval()
    return DRN(
        preset.scale, preset.n_feats, preset.n_blocks, read_channel_config(channel_config)
    ).eval()


def resolve_input_hw(args: argparse.Namespace, scale: int) -> tuple[int, int]:
    """The LR input size that --input/--output/--ntire describe (default: a 720x1280 output)."""
    if args.input:
        return parse_hw(args.input)
    if getattr(args, "ntire", False):
        return NTIRE_INPUT_HW
    output = parse_hw(args.output) if args.output else DEFAULT_OUTPUT_HW
    return input_for_output(output, scale)


def check_forward_fits(model: DRN, input_hw: tuple[int, int], what: str, advice: str) -> None:
    """Refuse, before running, a plain (eager fp32) forward whose estimated memory exceeds what
    the machine has available now; the message gives the estimate and what helps."""
    from ..tiling import available_memory_bytes, forward_bytes_per_lr_pixel

    free = available_memory_bytes()
    # eager keeps every pyramid output and allocates each activation afresh: about twice the
    # fused path's estimate
    need = 2 * forward_bytes_per_lr_pixel(model, "fp32") * input_hw[0] * input_hw[1]
    if free is not None and need > free:
        raise DualSRError(
            f"{what} at {input_hw[0]}x{input_hw[1]} needs about {need / 2**30:.1f} GiB "
            f"(estimated), but {free / 2**30:.1f} GiB are available; {advice}"
        )


def run(args: argparse.Namespace) -> int:
    """Print the profile (and write JSON when asked)."""
    model = model_for_costs(args.model, args.channel_config)
    input_hw = resolve_input_hw(args, model.scale)
    if not args.no_memory:
        check_forward_fits(
            model,
            input_hw,
            "the peak-memory measurement",
            "use a smaller --input/--output, or --no-memory for the counts alone",
        )
    title = args.model + (f" with {args.channel_config}" if args.channel_config else "")
    prof = profile_model(model, input_hw, memory=not args.no_memory, threads=args.threads)
    print(prof.format(title))
    if args.json:
        doc = {
            "model": args.model,
            "channel_config": str(args.channel_config or ""),
            **prof.to_dict(),
        }
        atomic_write_bytes(args.json, json.dumps(doc, indent=2).encode())
        print(f"wrote {args.json}")
    return 0
