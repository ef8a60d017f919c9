"""Channel-selection criteria for pruning one searched layer, and their registry.

A criterion decides which *units* of a searched layer (see :mod:`dualsr.compression.layers`:
the consumer conv's input channels; for the upsampler, PixelShuffle groups) survive. Each one is
a dataclass subclass of :class:`~dualsr.compression.criteria.base.Criterion` in its own module,
its options its fields, registered in :data:`CRITERIA` by name (``--method``):

=========  ============  ==================================================================
name       needs         what it does
=========  ============  ==================================================================
l1         weights       score = L1 norm of the unit's producer filters (Li et al. 2017)
uniform    weights       the same rate in every layer (a configuration, :func:`rate_config`);
                         selection as l1
thinet     features      greedy removal of the units whose summed contribution to the consumer
                         output stays smallest in absolute value on sampled (position, output
                         channel) pairs, then least-squares per-unit scales, then local SGD on
                         the SR loss (Luo et al. 2017)
cp         features      LASSO on the per-unit contributions to all output channels at sampled
                         positions, then a least-squares re-fit of the consumer weight (He et
                         al. 2017)
dcp        gradients     score of the gradient of reconstruction MSE + gamma x primal loss
                         w.r.t. the unit's consumer weight slice (Zhuang et al. 2018)
drc        gradients     the same with the dual regression term: MSE + gamma (primal + lambda
                         dual) (Guo et al. 2024)
=========  ============  ==================================================================

ThiNet and CP follow the released DRC code (``DRN/channel_pruning/thinet_prune.py``,
``lasso_prune.py``, ``channel_selection.py``) by default, with our earlier variants as options:

==================  ==========================================  ==============================
option              default (released code)                     other value (our earlier one)
==================  ==========================================  ==============================
``thinet_error``    ``abs``: remove the ``j`` minimising        ``squared``: ``sum_s (...)^2``
                    ``sum_s |sum_{t in T + j} z[s, t]|``
``thinet_targets``  ``pruned``: targets are the network being   ``original``: the original
                    pruned's own consumer output (all input     model's consumer output
                    units present) at the sampled positions
``cp_design``       ``all``: the LASSO design has one row per   ``sampled``: one random output
                    (position, output channel), ``S*O x C``     channel per position, ``S x C``
==================  ==========================================  ==============================

(CP always uses the original model's outputs, as the released code.) Deliberate differences from
the released code: our targets (for ThiNet's scales, CP's LASSO and re-fit) have the consumer's
bias subtracted, the right target for the weights; the released least-squares fits target the
output *with* its bias and no intercept, and its LASSO (scikit-learn's ``Lasso``,
``fit_intercept=True`` by default) centres the design and the target instead. Our LASSO penalty
is bisected on a log scale for at most ``n_keep`` non-zeros (completed from the next solution);
the released code bisects linearly for exactly that many.

Gradient criteria score a unit from its consumer-weight gradient slice by their ``score`` option
(:data:`~dualsr.compression.pruning.scores.GRADIENT_SCORES`: ``official``, the released code's,
by default; ``dcp-paper``).

The pruning loop (:func:`dualsr.compression.prune.prune_masked`) looks a criterion up here by
name, builds it from its :class:`~dualsr.compression.prune.PruneOptions` (each option from the
field of the same name, :meth:`Criterion.from_options`) or takes an instance, and calls its
``select(context, n_keep)`` per layer. A new criterion is one class in one module, registered with
:func:`register_criterion` (docs/compression-prune.md, "Writing a criterion").

The building blocks the criteria share live in :mod:`dualsr.compression.pruning` (scores, width
rules, solvers, sampled statistics, the layer objective); the names this module had before it
became a package (``rate_config``, ``GRADIENT_SCORES``, ``least_squares``, ``FeatureStats``, ...)
stay importable from here.
"""

from __future__ import annotations

from ...errors import ConfigError
from ..pruning.features import FeatureStats, Selection
from ..pruning.scores import (
    DEFAULT_SCORE,
    GRADIENT_SCORES,
    check_score,
    gradient_norm_scores,
    gradient_scores,
    summed_gradient_norm_scores,
    top_units,
)
from ..pruning.solvers import (
    lasso,
    lasso_moments,
    lasso_select,
    lasso_select_moments,
    least_squares,
)
from ..pruning.widths import (
    DEFAULT_RATE_ROUNDING,
    RATE_ROUNDINGS,
    floor_config,
    rate_config,
    uniform_config,
)
from .base import Criterion, LayerContext, Needs, check_choice
from .cp import CP, CP_DESIGNS, DEFAULT_CP_DESIGN, cp_select
from .dcp import DCP
from .drc import DRC
from .feature_based import FeatureCriterion
from .l1 import L1, l1_scores
from .thinet import (
    DEFAULT_THINET_ERROR,
    DEFAULT_THINET_TARGETS,
    THINET_ERRORS,
    THINET_TARGETS,
    ThiNet,
    thinet_select,
)
from .uniform import Uniform

__all__ = [
    "CP",
    "CP_DESIGNS",
    "CRITERIA",
    "DCP",
    "DEFAULT_CP_DESIGN",
    "DEFAULT_RATE_ROUNDING",
    "DEFAULT_SCORE",
    "DEFAULT_THINET_ERROR",
    "DEFAULT_THINET_TARGETS",
    "DRC",
    "GRADIENT_SCORES",
    "L1",
    "RATE_ROUNDINGS",
    "THINET_ERRORS",
    "THINET_TARGETS",
    "Criterion",
    "FeatureCriterion",
    "FeatureStats",
    "LayerContext",
    "Needs",
    "Selection",
    "ThiNet",
    "Uniform",
    "check_choice",
    "check_score",
    "cp_select",
    "criterion_class",
    "floor_config",
    "get_criterion",
    "gradient_norm_scores",
    "gradient_scores",
    "l1_scores",
    "lasso",
    "lasso_moments",
    "lasso_select",
    "lasso_select_moments",
    "least_squares",
    "rate_config",
    "register_criterion",
    "summed_gradient_norm_scores",
    "thinet_select",
    "top_units",
    "uniform_config",
]

#: The registered criteria by name (``--method``), in the order ``--help`` lists them.
CRITERIA: dict[str, type[Criterion]] = {}


def register_criterion(cls: type[Criterion]) -> type[Criterion]:
    """Add a criterion class under its ``name`` (usable as a class decorator); a duplicate name
    is an error."""
    if not (isinstance(cls, type) and issubclass(cls, Criterion)):
        raise TypeError(f"a pruning criterion must be a Criterion subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name != name.lower():
        raise ValueError(f"{cls.__name__}.name must be a non-empty lower-case string, got {name!r}")
    if name in CRITERIA:
        raise KeyError(f"pruning criterion {name!r} is already registered")
    CRITERIA[name] = cls
    return cls


def criterion_class(name: str) -> type[Criterion]:
    """The registered criterion class ``name`` (any case); ConfigError lists the valid names."""
    try:
        return CRITERIA[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown pruning method {name!r}; choose from: {', '.join(CRITERIA)}"
        ) from None


def get_criterion(name: str, **options: object) -> Criterion:
    """The criterion ``name`` with ``options`` (its fields; the others keep their defaults)."""
    return criterion_class(name)(**options)


for _cls in (DRC, DCP, ThiNet, CP, L1, Uniform):
    register_criterion(_cls)
del _cls
