"""``dualsr download``: fetch released weights (by name or URL) into the local cache."""

from __future__ import annotations

import argparse
import sys

from .. import hub
from ..models.drn import count_parameters
from ..models.registry import PRESETS, create_model


def add_parser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    """Register the subcommand."""
    p = sub.add_parser(
        name,
        help="download released weights by name (or URL) into the cache",
        description="Download a released checkpoint by name or alias (see --list) or any http(s) "
        "URL of a checkpoint into the cache ($DUALSR_HOME/weights, default "
        "~/.cache/dualsr/weights), check it (size, sha256 when pinned, a weights-only load, the "
        "preset's exact architecture) and print its path. A cached file is used without the "
        "network; the --model of upscale, eval, demo and export accepts the same names.",
    )
    p.add_argument("model", nargs="?", metavar="NAME|URL", help="release name, alias or URL")
    p.add_argument("--force", action="store_true", help="download again even when cached")
    p.add_argument("--list", action="store_true", help="list the released models and exit")
    return p


def preset_params(release: hub.Release) -> int:
    """The parameter count of a release's preset (from the registry data when recorded)."""
    if release.params is not None:
        return release.params
    return count_parameters(create_model(release.preset))


def print_list() -> None:
    """One line per release: name, preset, parameters, the paper's Set5 PSNR, cached or not."""
    print(f"{'name':<18} {'preset':<12} {'params':>11} {'Set5 PSNR':>9}  cached")
    for release in hub.RELEASES.values():
        set5 = release.paper.get("Set5")
        psnr = f"{set5[0]:.2f}" if set5 else "-"
        cached = "yes" if hub.is_cached(release.name) else "no"
        print(
            f"{release.name:<18} {release.preset:<12} {preset_params(release):>11,} {psnr:>9}"
            f"  {cached}"
        )
    print(f"cache: {hub.weights_dir()}  (set ${hub.HOME_ENV} to move it)")


def run(args: argparse.Namespace) -> int:
    """Download (or find in the cache) the weights and print their path."""
    if args.list:
        print_list()
        return 0
    if not args.model:
        print("error: give a release name or URL (see `dualsr download --list`)", file=sys.stderr)
        return 2
    spec = args.model
    if hub.find_release(spec) is None and not hub.is_url(spec) and spec.lower() in PRESETS:
        released = hub.releases_for_preset(spec)
        advice = (
            f"its released weights: dualsr download {released[0].name}"
            if released
            else "no weights of it are released"
        )
        print(f"error: {spec} is a preset, not a release; {advice}", file=sys.stderr)
        return 1
    print(hub.fetch(spec, force=args.force))
    return 0
