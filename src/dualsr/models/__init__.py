"""DRN architectures, presets and channel configurations."""

from .drn import DRN, DRNArch, DualModels, count_parameters, full_widths, split_channel_config
from .registry import (
    PRESETS,
    create_duals,
    create_model,
    get_preset,
    preset_channel_config,
    read_channel_config,
)

__all__ = [
    "DRN",
    "DRNArch",
    "DualModels",
    "PRESETS",
    "count_parameters",
    "create_duals",
    "create_model",
    "full_widths",
    "get_preset",
    "preset_channel_config",
    "read_channel_config",
    "split_channel_config",
]
