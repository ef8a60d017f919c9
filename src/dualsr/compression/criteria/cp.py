"""``cp``: channel pruning (He et al. 2017), as the released DRC code (``lasso_prune.py``).

LASSO selection on the per-unit contributions to the consumer output at sampled positions, then a
least-squares re-fit of the consumer weight (:func:`cp_select`); no local SGD. Option
``cp_design``: ``all`` (default, released code: every output channel at every sampled position)
or ``sampled`` (one random output channel per position; ours before).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..pruning.features import FeatureStats, Selection
from ..pruning.solvers import lasso_select, lasso_select_moments, least_squares
from .base import check_choice
from .feature_based import FeatureCriterion

#: CP's LASSO design: ``all`` output channels per position (released code, default) or one
#: ``sampled`` output channel per position (ours before).
CP_DESIGNS = ("all", "sampled")
DEFAULT_CP_DESIGN = "all"


def cp_select(
    stats: FeatureStats, n_keep: int, ridge: float = 1e-6, design: str = DEFAULT_CP_DESIGN
) -> Selection:
    """CP (He et al. 2017): LASSO on per-unit contributions, then a least-squares weight re-fit.

    ``design="all"`` (default, the released ``LassoFilterPrune``): the LASSO regresses the
    targets of every output channel at every sampled position on the units' contributions to
    them, an ``S*O x C`` design (:meth:`FeatureStats.all_outputs_design`), solved from its
    ``C x C`` moments (:meth:`FeatureStats.all_outputs_moments`) without forming it.
    ``design="sampled"`` (our earlier variant): one random output channel per position
    (``S x C``, :meth:`FeatureStats.contributions`).

    The re-fit solves ``min ||targets - patches[:, keep] W'^T||`` over all samples and output
    channels, so the kept slices of the consumer weight reconstruct the target output from the
    (already pruned) input.
    """
    check_choice("cp_design", design, CP_DESIGNS)
    if design == "all":
        keep, _ = lasso_select_moments(*stats.all_outputs_moments(), n_keep)
    else:
        keep, _ = lasso_select(stats.contributions(), stats.sampled_targets(), n_keep)
    o, _, kh, kw = stats.weight.shape
    a = stats.patches[:, keep].flatten(1)
    w = least_squares(a, stats.targets, ridge).T.reshape(o, len(keep), kh, kw)
    return Selection(keep, w.to(stats.weight.dtype))


@dataclass
class CP(FeatureCriterion):
    """CP: :func:`cp_select` on sampled statistics of the original model's outputs.

    Attributes:
        cp_design: the LASSO design, ``all`` (default, released code) or ``sampled``.
    """

    name = "cp"
    description = (
        "channel pruning: LASSO selection (all output channels), least-squares reconstruction of "
        "the consumer weight"
    )

    cp_design: str = DEFAULT_CP_DESIGN

    def __post_init__(self) -> None:
        check_choice("cp_design", self.cp_design, CP_DESIGNS)

    def choose(self, stats: FeatureStats, n_keep: int) -> Selection:
        """:func:`cp_select` with ``cp_design``."""
        return cp_select(stats, n_keep, design=self.cp_design)
