"""The shared step of the feature criteria (ThiNet, CP): sample the layer, choose, re-fit.

:class:`FeatureCriterion` draws one pass of the pruning data, samples the consumer's inputs and
target outputs there (:func:`~dualsr.compression.pruning.features.collect_feature_stats`), asks
the subclass to :meth:`~FeatureCriterion.choose` the kept units (and new weights) from those
statistics, writes the new weights, lets the subclass :meth:`~FeatureCriterion.refine` them
(ThiNet's local SGD), and reports the reconstruction MSE on the samples.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch

from ..pruning.features import FeatureStats, Selection, collect_feature_stats, feature_mse
from .base import Criterion, LayerContext


@dataclass
class FeatureCriterion(Criterion):
    """A criterion that chooses from sampled consumer statistics (:class:`FeatureStats`)."""

    needs = "features"

    @property
    def feature_targets(self) -> Literal["original", "pruned"]:
        """Whose consumer output the statistics' targets are (default: the original model's)."""
        return "original"

    @abstractmethod
    def choose(self, stats: FeatureStats, n_keep: int) -> Selection:
        """The kept units and, optionally, re-fitted consumer weights."""

    def refine(self, context: LayerContext, selection: Selection) -> None:
        """After the selection's weights are written: further tuning (default: none)."""

    def select(self, context: LayerContext, n_keep: int) -> list[int]:
        """Sample the layer's statistics, :meth:`choose`, write the weights, :meth:`refine`."""
        targets = self.feature_targets
        feed = context.feed(targets)
        source = context.layer if targets == "pruned" else context.teacher_layer
        drawn, outputs = feed.next_pass()
        feats = collect_feature_stats(
            context.model,
            context.layer,
            source,
            outputs,
            drawn,
            context.options.feature_samples,
            context.generator,
        )
        del drawn, outputs
        context.feature_passes += 1
        selection = self.choose(feats, n_keep)
        kept = selection.keep
        conv = context.layer.consumer
        bias0 = None if conv.bias is None else conv.bias.detach().clone()
        if selection.weight is not None:
            with torch.no_grad():
                conv.weight[:, kept] = selection.weight.to(conv.weight.device)
        self.refine(context, selection)
        shift = None if bias0 is None else (conv.bias.detach() - bias0).cpu()
        context.loss = feature_mse(feats, conv.weight.detach().cpu(), kept, shift)
        return kept
