"""``dualsr models``: list the presets with their sizes and whether weights ship, then the
released models (by name) with the paper's scores and whether they are cached."""

from __future__ import annotations

import argparse

from .. import hub
from ..models.drn import count_parameters
from ..models.registry import PRESETS, create_model
from ..pretrained import shipped_weights


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    return sub.add_parser(
        name,
        help="list model presets and released models",
        description="List the model presets, their parameter counts and "
        "whether trained weights ship with this package; then the released models "
        "(usable by name with --model, fetched by `dualsr download`) with the paper's x4 PSNR "
        "and whether they are in the cache.",
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
    print_releases()
    return 0


def print_releases() -> None:
    """The released models: name, preset, the paper's PSNR on Set5/Set14/BSD100, cached."""
    if not hub.RELEASES:
        return
    sets = ("Set5", "Set14", "BSD100")
    print()
    print(f"{'release':<18} {'preset':<12} " + " ".join(f"{s:>6}" for s in sets) + "  cached")
    for release in hub.RELEASES.values():
        scores = " ".join(
            f"{release.paper[s][0]:>6.2f}" if s in release.paper else f"{'-':>6}" for s in sets
        )
        cached = "yes" if hub.is_cached(release.name) else "no"
        print(f"{release.name:<18} {release.preset:<12} {scores}  {cached}")
    print("(paper PSNR in dB, x4; use with --model NAME, or fetch with `dualsr download NAME`)")
