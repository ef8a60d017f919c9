"""``l1``: keep the units whose producer filters have the largest L1 norm (no data needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..layers import SearchedLayer
from ..pruning.scores import top_units
from .base import Criterion, LayerContext


def l1_scores(
    layer: SearchedLayer, source: Literal["producer", "consumer"] = "producer"
) -> torch.Tensor:
    """L1 norm per unit of the producer's filters (default) or of the consumer's input slice.

    ``producer``: unit ``j`` owns producer output channels ``group*j .. group*j + group-1``; its
    score is the sum of their filters' absolute weights (Li et al., "Pruning Filters for Efficient
    ConvNets"). ``consumer``: the sum of ``|consumer.weight[:, j]|``.
    """
    if source == "producer":
        w = layer.producer.weight.detach().abs().flatten(1).sum(1)
        return w.view(layer.width, layer.group).sum(1)
    if source == "consumer":
        return layer.consumer.weight.detach().abs().sum(dim=(0, 2, 3))
    raise ValueError(f"source must be 'producer' or 'consumer', got {source!r}")


@dataclass
class L1(Criterion):
    """Li et al. 2017: the largest L1 norm of the unit's producer filters (:func:`l1_scores`)."""

    name = "l1"
    description = "L1 norm of the producer filters (no data needed)"
    needs = "weights"

    def select(self, context: LayerContext, n_keep: int) -> list[int]:
        """The ``n_keep`` units of the largest producer-filter L1 norm."""
        return top_units(l1_scores(context.layer), n_keep)
