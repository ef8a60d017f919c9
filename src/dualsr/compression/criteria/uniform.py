"""``uniform``: the same rate in every layer, selection as ``l1`` (no data needed)."""

from __future__ import annotations

from dataclasses import dataclass

from ..pruning.widths import rate_config
from .l1 import L1


@dataclass
class Uniform(L1):
    """``l1`` on the configuration of a rate
    (:func:`~dualsr.compression.pruning.widths.rate_config`, ``C - floor(C rate)`` kept by
    default): ``dualsr prune --method uniform`` takes ``--rate``."""

    name = "uniform"
    description = (
        "the same rate in every layer (C - floor(C rate) channels kept), selection by l1 (no "
        "data needed)"
    )
    configure = staticmethod(rate_config)
