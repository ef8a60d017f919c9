"""``dualsr models``: list the presets with their sizes and whether weights ship; the shipped
models with their measured PSNR and speed; then the released models (by name) with the paper's
scores and whether they are cached."""

from __future__ import annotations

import argparse

from .. import hub
from ..models.drn import count_parameters
from ..models.registry import PRESETS, create_model
from ..pretrained import DEFAULT_PRESETS, shipped_provenance, shipped_weights


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    return sub.add_parser(
        name,
        help="list model presets and released models",
        description="List the model presets, their parameter counts and "
        "whether trained weights ship with this package; the shipped models with the PSNR and "
        "speed measured when they were packaged; then the released models "
        "(usable by name with --model, fetched by `dualsr download`) with the papers' PSNR at "
        "their scale and whether they are in the cache.",
    )


def run(args: argparse.Namespace) -> int:
    """Print one line per preset, then one line per released model."""
    print(f"{'preset':<14} {'scale':>5} {'n_feats':>7} {'RCABs':>5} {'params':>11}  weights")
    for name, p in PRESETS.items():
        params = count_parameters(create_model(name))
        weights = "shipped" if shipped_weights(name) else "-"
        print(
            f"{name:<14} {'x' + str(p.scale):>5} {p.n_feats:>7} {p.n_blocks:>5} {params:>11,}"
            f"  {weights}"
        )
    print_shipped()
    print_releases()
    return 0


SETS = ("Set5", "Set14", "BSD100")


def print_shipped() -> None:
    """The shipped models: measured PSNR (Y, border = scale) and time for a 1280x720 output."""
    names = [n for n in PRESETS if shipped_weights(n)]
    if not names:
        return
    defaults = {n: s for s, n in DEFAULT_PRESETS.items()}
    print()
    print(
        f"{'shipped':<14} {'scale':>5} "
        + " ".join(f"{s:>6}" for s in SETS)
        + f" {'720p out':>9}  trained"
    )
    for name in names:
        prov = shipped_provenance(name)
        ev = prov.get("eval", {})
        scores = " ".join(
            f"{ev[s]['psnr']:>6.2f}" if isinstance(ev.get(s), dict) else f"{'-':>6}" for s in SETS
        )
        speed = prov.get("speed", {})
        ms = f"{speed['ms']:>7.0f}ms" if isinstance(speed.get("ms"), int | float) else f"{'-':>9}"
        cost = prov.get("cost", {})
        trained = ""
        if "steps" in cost:
            base = prov.get("derived_from")
            trained = f"{base} + " if base else ""  # compressed or fine-tuned from a shipped model
            trained += f"{cost['steps']:,} steps"
            if "cpu_hours" in cost:
                trained += f", {'+' if base else ''}{cost['cpu_hours']:.1f} CPU-h"
        mark = f" (default x{defaults[name]})" if name in defaults else ""
        print(
            f"{name:<14} {'x' + str(PRESETS[name].scale):>5} {scores} {ms}  {trained or '-'}{mark}"
        )
    machine = next((shipped_provenance(n).get("speed", {}).get("machine") for n in names), None)
    print(
        "(measured PSNR in dB, Y channel; 720p out: one 1280x720 output, "
        + (machine or "2 threads")
        + "; docs/RESULTS.md)"
    )


def print_releases() -> None:
    """The released models: name, preset, scale, the paper's PSNR on Set5/Set14/BSD100 (at
    the release's scale; - where none is published), cached."""
    if not hub.RELEASES:
        return
    sets = ("Set5", "Set14", "BSD100")
    print()
    print(
        f"{'release':<18} {'preset':<12} {'scale':>5} "
        + " ".join(f"{s:>6}" for s in sets)
        + "  cached"
    )
    for release in hub.RELEASES.values():
        scores = " ".join(
            f"{release.paper[s][0]:>6.2f}" if s in release.paper else f"{'-':>6}" for s in sets
        )
        preset = PRESETS.get(release.preset)
        scale = f"x{preset.scale}" if preset is not None else "-"
        cached = "yes" if hub.is_cached(release.name) else "no"
        print(f"{release.name:<18} {release.preset:<12} {scale:>5} {scores}  {cached}")
    print(
        "(paper PSNR in dB at the release's scale, - where none is published; use with --model "
        "NAME, or fetch with `dualsr download NAME`)"
    )
