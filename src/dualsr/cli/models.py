"""``dualsr models``: list the presets with their sizes and whether weights ship."""

from __future__ import annotations

import argparse

from ..models.drn import count_parameters
from ..models.registry import PRESETS, create_model
from ..pretrained import shipped_weights


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    return sub.add_parser(
        name,
        help="list model presets",
        description="List the model presets, their parameter counts and "
        "whether trained weights ship with this package.",
    )


def run(args: argparse.Namespace) -> int:
    """Print one line per preset."""
    print(f"{'preset':<14} {'scale':>5} {'n_feats':>7} {'RCABs':>5} {'params':>11}  weights")
    for name, p in PRESETS.items():
        params = count_parameters(create_model(name))
        weights = "shipped" if shipped_weights(name) else "-"
        print(
            f"{name:<14} {'x' + str(p.scale):>5} {p.n_feats:>7} {p.n_blocks:>5} {params:>11,}"
            f"  {weights}"
        )
    return 0
