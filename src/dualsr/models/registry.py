"""Model presets as data, and ``create_model``.

Each preset is one row of :data:`PRESETS`: scale, base width, RCABs per stage and, for the
compressed models, the name of a released channel-configuration file shipped in
``dualsr/models/configs`` (one integer a line, the official format).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .drn import DRN, DualModels


@dataclass(frozen=True)
class Preset:
    """A named DRN variant."""

    scale: int
    n_feats: int
    n_blocks: int
    channel_config: str | None = None  # name of a file in dualsr/models/configs
    description: str = ""


PRESETS: dict[str, Preset] = {}


def register_preset(name: str, preset: Preset) -> None:
    """Add a preset; a duplicate name is an error."""
    if name in PRESETS:
        raise KeyError(f"preset {name!r} is already registered")
    PRESETS[name] = preset


for _scale, _s_feats, _l_feats, _l_blocks in ((4, 16, 20, 40), (8, 8, 10, 36)):
    register_preset(f"drn-s-x{_scale}", Preset(_scale, _s_feats, 30, description="DRN-S"))
    register_preset(f"drn-l-x{_scale}", Preset(_scale, _l_feats, _l_blocks, description="DRN-L"))
    for _rate in (30, 50, 70):
        register_preset(
            f"drn-s{_rate}-x{_scale}",
            Preset(
                _scale,
                _s_feats,
                30,
                f"drn-s{_rate}-x{_scale}.txt",
                description=f"DRN-S with {_rate}% of parameters removed (released DRC search)",
            ),
        )


# Small models trained and compressed on a 2-core CPU (T91 + BSD200; docs/RESULTS.md); their
# weights ship in dualsr/weights. drn-t50-x4 is drn-t-x4 compressed by DRC to the parameter
# budget of a uniform 50% channel cut. Each width was chosen by equal-CPU-time runs.
register_preset(
    "drn-t-x4", Preset(4, 8, 10, description="small DRN x4 trained on a CPU (shipped weights)")
)
register_preset(
    "drn-t-x8", Preset(8, 4, 10, description="small DRN x8 trained on a CPU (shipped weights)")
)
register_preset(
    "drn-t50-x4",
    Preset(4, 8, 10, "drn-t50-x4.txt", description="drn-t-x4 compressed by DRC (shipped weights)"),
)


def read_channel_config(path: str | Path) -> list[int]:
    """Read a channel-configuration file: one positive integer a line (blank lines ignored)."""
    text = Path(path).read_text()
    return parse_channel_config(text, source=str(path))


def parse_channel_config(text: str, source: str = "<text>") -> list[int]:
    """Parse the official channel-configuration format; ValueError names the bad line."""
    widths = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            widths.append(int(line))
        except ValueError:
            raise ValueError(
                f"{source}, line {lineno}: expected an integer, got {line!r}"
            ) from None
    return widths


def preset_channel_config(name: str) -> list[int] | None:
    """The released channel configuration of a preset (None for full models)."""
    preset = get_preset(name)
    if preset.channel_config is None:
        return None
    text = resources.files("dualsr.models").joinpath("configs", preset.channel_config).read_text()
    return parse_channel_config(text, source=preset.channel_config)


def get_preset(name: str) -> Preset:
    """Look up a preset by name (case-insensitive); KeyError lists the valid names."""
    key = name.lower()
    if key not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; choose from: {', '.join(PRESETS)}")
    return PRESETS[key]


def create_model(name: str, rgb_range: float = 255.0) -> DRN:
    """Build the preset ``name`` (e.g. ``"drn-s-x4"``, ``"drn-s30-x4"``) with fresh weights."""
    preset = get_preset(name)
    return DRN(
        preset.scale,
        preset.n_feats,
        preset.n_blocks,
        channel_config=preset_channel_config(name),
        rgb_range=rgb_range,
    )


def create_duals(name: str) -> DualModels:
    """Build the dual models that go with preset ``name``."""
    preset = get_preset(name)
    return DualModels(preset.scale, preset.n_feats)
