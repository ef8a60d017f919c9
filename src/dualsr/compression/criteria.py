"""Channel-selection criteria for pruning one searched layer.

A criterion decides which *units* of a searched layer (see :mod:`dualsr.compression.layers`:
the consumer conv's input channels; for the upsampler, PixelShuffle groups) survive. Each one is a
plain function of what it needs, registered in :data:`CRITERIA` by name:

=========  ============  ==================================================================
name       needs         what it does
=========  ============  ==================================================================
l1         weights       score = L1 norm of the unit's producer filters (Li et al. 2017)
uniform    weights       the same rate in every layer (a configuration, :func:`rate_config`);
                         selection as l1
thinet     features      greedy removal of the units whose summed contribution to the consumer
                         output stays smallest in absolute value on sampled (position, output
                         channel) pairs, then least-squares per-unit scales, then (in the
                         pruning loop) local SGD on the SR loss (Luo et al. 2017)
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

(``thinet_targets`` is applied where the statistics are gathered,
:func:`dualsr.compression.prune.collect_feature_stats`'s caller; CP always uses the original
model's outputs, as the released code.) Deliberate differences from the released code: our
targets (for ThiNet's scales, CP's LASSO and re-fit) have the consumer's bias subtracted, the right
target for the weights; the released least-squares fits target the output *with* its bias and no
intercept, and its LASSO (scikit-learn's ``Lasso``, ``fit_intercept=True`` by default) centres the
design and the target instead. Our LASSO penalty is bisected on a log scale for at most ``n_keep``
non-zeros (completed from the next solution); the released code bisects linearly for exactly that
many.

Gradient criteria score a unit ``j`` from the slice ``g = grad[:, j]`` (``O x kh x kw``) by one of
:data:`GRADIENT_SCORES`: ``official`` (the default; the released DRC code,
``channel_selection.py``): ``sum_o sqrt(sum_k g[o, k]^2)``, the sum over output channels of the
per-filter gradient norms; ``dcp-paper`` (the DCP paper's Frobenius norm):
``sqrt(sum_o sum_k g[o, k]^2)``.

Without a configuration file, a channel rate ``r`` gives every searched layer of width ``C`` the
width ``C - floor(C * r)`` (:func:`floor_config`, as the released code cuts ``floor(C * r)``
channels); :func:`uniform_config` (multiples of 4) is the other rounding (:func:`rate_config`).

Criteria are stateless: ``weights`` criteria take the :class:`SearchedLayer` and return one score
per unit; ``gradients`` criteria take the accumulated gradient of the consumer weight and return
one score per unit; ``features`` criteria take :class:`FeatureStats` (sampled consumer inputs and
target outputs) and the number of units to keep, and return a :class:`Selection` (kept units and,
optionally, re-fitted consumer weights). The pruning loop that gathers these inputs, and runs
ThiNet's local SGD after its selection, lives in :mod:`dualsr.compression.prune`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from ..errors import ConfigError
from .layers import SearchedLayer
from .search_space import round_to_multiple

Needs = Literal["weights", "gradients", "features"]


# ----------------------------------------------------------------------------------------------
# Inputs and outputs
# ----------------------------------------------------------------------------------------------
@dataclass
class FeatureStats:
    """Sampled statistics of one searched layer's consumer conv, for feature-based criteria.

    ``S`` positions ``(image, y, x)`` are sampled; at each one we keep the consumer's input patch
    (as computed by the network being pruned) and the consumer's target output there: the
    original model's (CP; ThiNet with ``thinet_targets="original"``) or the network being
    pruned's own, all its input units present (ThiNet's default, as the released code).

    Attributes:
        patches: ``S x C x (kh*kw)`` consumer input patches, in the weight's (kh, kw) order.
        targets: ``S x O`` target consumer outputs at those positions, bias subtracted.
        out_channel: ``S`` a random output channel per sample, for per-unit contributions
            (ThiNet's sampling of (location, channel) pairs).
        weight: ``O x C x kh x kw`` the pretrained consumer weight.
        positions: ``S x 4`` (batch, image, y, x) of each sample, or None (hand-built stats).
    """

    patches: torch.Tensor
    targets: torch.Tensor
    out_channel: torch.Tensor
    weight: torch.Tensor
    positions: torch.Tensor | None = None

    def contributions(self) -> torch.Tensor:
        """``S x C``: unit ``j``'s contribution to output ``out_channel[s]`` at sample ``s``."""
        w = self.weight.flatten(2)[self.out_channel]  # S x C x kk
        return (self.patches * w).sum(-1)

    def sampled_targets(self) -> torch.Tensor:
        """``S``: the target output at each sample's ``out_channel``."""
        return self.targets.gather(1, self.out_channel[:, None]).squeeze(1)

    def output_contributions(self) -> torch.Tensor:
        """``S x O x C``: unit ``c``'s contribution to output ``o`` at sample ``s`` (explicit)."""
        return torch.einsum("sck,ock->soc", self.patches, self.weight.flatten(2))

    def all_outputs_design(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The all-outputs regression, explicitly: ``z`` (``S*O x C``, rows sample-major) and
        ``y`` (``S*O``), ``z[s*O + o, c]`` = unit ``c``'s contribution to output ``o`` at
        sample ``s`` (the released ``LassoFilterPrune``'s design). Float64."""
        z = torch.einsum("sck,ock->soc", self.patches.double(), self.weight.double().flatten(2))
        return z.reshape(-1, z.shape[-1]), self.targets.double().reshape(-1)

    def all_outputs_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z^T z / n, z^T y / n)`` of :meth:`all_outputs_design` (``n = S*O``) in float64,
        computed without ``z``: with ``P`` the ``S x (C kk)`` patches and ``W`` the
        ``O x (C kk)`` weight, ``z^T z[c, c'] = sum_{k, k'} (P^T P)[ck, c'k'] (W^T W)[ck, c'k']``
        and ``z^T y[c] = sum_{o, k} (y^T P)[o, ck] W[o, ck]``."""
        s, c, kk = self.patches.shape
        o = self.weight.shape[0]
        p = self.patches.double().reshape(s, c * kk)
        w = self.weight.double().reshape(o, c * kk)
        y = self.targets.double()
        n = s * o
        gram = ((p.T @ p) * (w.T @ w)).view(c, kk, c, kk).sum(dim=(1, 3)) / n
        q = ((y.T @ p) * w).view(o, c, kk).sum(dim=(0, 2)) / n
        return gram, q


@dataclass
class Selection:
    """The outcome of a features criterion: kept units (sorted) and an optional new weight.

    ``weight`` (``O x len(keep) x kh x kw``) replaces the consumer weight's kept slices;
    ``scales`` (``len(keep)``, ThiNet) are the per-unit factors it applied to the pretrained
    slices (the released code's ``beta``).
    """

    keep: list[int]
    weight: torch.Tensor | None = None
    scales: torch.Tensor | None = None  # ThiNet: ``weight = pretrained[:, keep] * scales``


#: ThiNet's greedy removal error: ``abs`` (released code, default) or ``squared`` (ours before).
THINET_ERRORS = ("abs", "squared")
DEFAULT_THINET_ERROR = "abs"
#: Whose consumer output ThiNet reconstructs: ``pruned`` (the network being pruned, released code,
#: default) or ``original`` (the original model, ours before).
THINET_TARGETS = ("pruned", "original")
DEFAULT_THINET_TARGETS = "pruned"
#: CP's LASSO design: ``all`` output channels per position (released code, default) or one
#: ``sampled`` output channel per position (ours before).
CP_DESIGNS = ("all", "sampled")
DEFAULT_CP_DESIGN = "all"


def check_choice(option: str, value: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else ConfigError naming ``option``."""
    if value not in choices:
        raise ConfigError(f"{option} must be one of: {', '.join(choices)} (got {value!r})")
    return value


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def top_units(scores: torch.Tensor, n_keep: int) -> list[int]:
    """The ``n_keep`` highest-scoring units, sorted by index; ties go to the lower index."""
    order = torch.sort(-scores.detach().double().cpu(), stable=True).indices
    return sorted(int(i) for i in order[:n_keep])


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"pruning rate must be in [0, 1), got {rate}")


def uniform_config(widths: Sequence[int], rate: float, multiple: int = 4) -> list[int]:
    """Every layer keeps ``(1 - rate)`` of its units, rounded to a multiple of ``multiple``.

    ``rate`` is the fraction of units removed in each searched layer; each width is rounded to a
    multiple of ``multiple`` and clipped to ``[min(multiple, width), width]``. This is the
    ``multiple4`` rounding of :func:`rate_config` (not the default: see :func:`floor_config`).
    """
    _check_rate(rate)
    return [
        min(max(round_to_multiple(w * (1 - rate), multiple, ties="even"), min(multiple, w)), w)
        for w in widths
    ]


def floor_config(widths: Sequence[int], rate: float) -> list[int]:
    """Every layer of width ``C`` keeps ``C - floor(C * rate)`` units (the released code's rule).

    The released DRC code removes ``math.floor(in_channels * pruning_rate)`` channels of a layer
    when no configuration file is given (DCP/DRC, ``channel_selection.py``), and always for ThiNet
    (``thinet_prune.py``) and LASSO/CP (``lasso_prune.py``); the same float expression is used
    here, so e.g. ``C = 10, rate = 0.3`` removes 3 and ``C = 4, rate = 0.5`` keeps 2. At least one
    unit is always kept (``floor(C * rate) < C`` for ``rate < 1``).
    """
    _check_rate(rate)
    return [int(w) - math.floor(w * rate) for w in widths]


#: How a channel rate becomes a configuration: ``floor`` (released code, the default) or
#: ``multiple4`` (:func:`uniform_config`).
RATE_ROUNDINGS: dict[str, Callable[[Sequence[int], float], list[int]]] = {
    "floor": floor_config,
    "multiple4": uniform_config,
}
DEFAULT_RATE_ROUNDING = "floor"


def rate_config(
    widths: Sequence[int], rate: float, rounding: str = DEFAULT_RATE_ROUNDING
) -> list[int]:
    """The configuration of a channel ``rate`` (the same in every layer), by ``rounding``.

    ``floor`` (default): ``C - floor(C * rate)`` per layer (:func:`floor_config`); ``multiple4``:
    ``C * (1 - rate)`` rounded to a multiple of 4 within ``[min(4, C), C]``
    (:func:`uniform_config`).
    """
    try:
        fn = RATE_ROUNDINGS[rounding]
    except KeyError:
        raise ConfigError(
            f"unknown rate rounding {rounding!r}; choose from: {', '.join(RATE_ROUNDINGS)}"
        ) from None
    return fn(widths, rate)


# ----------------------------------------------------------------------------------------------
# Weight criteria
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Gradient criteria (DCP, DRC)
# ----------------------------------------------------------------------------------------------
def gradient_norm_scores(grad: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of each input slice ``grad[:, j]`` of a consumer-weight gradient.

    The DCP paper's score (``dcp-paper``): ``sqrt(sum_{o, k} grad[o, j, k]^2)``.
    """
    return grad.detach().double().pow(2).sum(dim=(0, 2, 3)).sqrt()


def summed_gradient_norm_scores(grad: torch.Tensor) -> torch.Tensor:
    """Sum over output channels of the gradient norm of each filter slice ``grad[o, j]``.

    The released DRC code's score (``official``; ``channel_selection.py``,
    ``find_most_violated``): ``sum_o sqrt(sum_k grad[o, j, k]^2)``. It is at least the Frobenius
    norm of the slice and at most ``sqrt(O)`` times it.
    """
    return grad.detach().double().pow(2).sum(dim=(2, 3)).sqrt().sum(0)


#: The scores of a unit from its consumer-weight gradient slice, by name (``--score``).
GRADIENT_SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "official": summed_gradient_norm_scores,
    "dcp-paper": gradient_norm_scores,
}
DEFAULT_SCORE = "official"


def check_score(score: str) -> str:
    """``score`` if it names a gradient score, else ConfigError listing the valid names."""
    if score not in GRADIENT_SCORES:
        raise ConfigError(
            f"unknown gradient score {score!r}; choose from: {', '.join(GRADIENT_SCORES)}"
        )
    return score


def gradient_scores(grad: torch.Tensor, score: str = DEFAULT_SCORE) -> torch.Tensor:
    """One score per input unit of a consumer-weight gradient, by the rule ``score``.

    ``official`` (default): :func:`summed_gradient_norm_scores`; ``dcp-paper``:
    :func:`gradient_norm_scores`. Float64.
    """
    return GRADIENT_SCORES[check_score(score)](grad)


# ----------------------------------------------------------------------------------------------
# Feature criteria (ThiNet, CP)
# ----------------------------------------------------------------------------------------------
def least_squares(a: torch.Tensor, b: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """argmin_x ||a x - b||^2 + ridge * tr(a^T a)/n * ||x||^2, solved in float64.

    ``a``: ``S x n``, ``b``: ``S`` or ``S x m``. The tiny relative ridge keeps rank-deficient
    systems (dead units, few samples) solvable without visibly biasing well-posed ones.
    """
    a64, b64 = a.double(), b.double()
    gram = a64.T @ a64
    n = gram.shape[0]
    reg = ridge * (float(gram.diagonal().mean()) if n else 0.0) + 1e-12
    rhs = a64.T @ b64
    eye = torch.eye(n, dtype=gram.dtype, device=gram.device)
    x = torch.linalg.solve(gram + reg * eye, rhs)
    return x.to(a.dtype)


def lasso(
    z: torch.Tensor, y: torch.Tensor, alpha: float, iters: int = 500, tol: float = 1e-10
) -> torch.Tensor:
    """argmin_b 1/(2S) ||y - z b||^2 + alpha ||b||_1 by FISTA (float64), ``z``: ``S x C``.

    For an orthonormal design (``z^T z / S = I``) the solution is the soft threshold
    ``sign(q) max(|q| - alpha, 0)`` with ``q = z^T y / S``.
    """
    z64, y64 = z.double(), y.double()
    s = z64.shape[0]
    return lasso_moments(z64.T @ z64 / s, z64.T @ y64 / s, alpha, iters, tol)


def lasso_moments(
    gram: torch.Tensor, q: torch.Tensor, alpha: float, iters: int = 500, tol: float = 1e-10
) -> torch.Tensor:
    """:func:`lasso` from the design's moments ``gram = z^T z / S`` and ``q = z^T y / S``.

    The objective is ``1/2 b^T gram b - q^T b + alpha ||b||_1`` (the LASSO's up to a constant),
    so ``z`` itself is never needed. FISTA in float64.
    """
    gram, q = gram.double(), q.double()
    lipschitz = float(torch.linalg.eigvalsh(gram).max()) if gram.numel() else 1.0
    step = 1.0 / max(lipschitz, 1e-30)
    b = torch.zeros_like(q)
    v, t = b.clone(), 1.0
    for _ in range(iters):
        u = v - step * (gram @ v - q)
        b_new = torch.sign(u) * torch.clamp(u.abs() - step * alpha, min=0.0)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        v = b_new + (t - 1) / t_new * (b_new - b)
        done = float((b_new - b).abs().max()) <= tol * (1 + float(b_new.abs().max()))
        b, t = b_new, t_new
        if done:
            break
    return b


def lasso_select(
    z: torch.Tensor, y: torch.Tensor, n_keep: int, search_steps: int = 30, iters: int = 500
) -> tuple[list[int], torch.Tensor]:
    """CP's channel selection: the support of the LASSO solution with at most ``n_keep`` units.

    Bisects the penalty (log scale) for the smallest one whose solution has at most ``n_keep``
    non-zeros; the kept units are that support, completed (when it is smaller) by the largest
    coefficients of the solution just below it. Returns (sorted kept units, coefficients).
    ``z``: ``S x C``, ``y``: ``S`` (:func:`lasso_select_moments` without forming them).
    """
    z64, y64 = z.double(), y.double()
    s = z64.shape[0]
    return lasso_select_moments(z64.T @ z64 / s, z64.T @ y64 / s, n_keep, search_steps, iters)


def lasso_select_moments(
    gram: torch.Tensor, q: torch.Tensor, n_keep: int, search_steps: int = 30, iters: int = 500
) -> tuple[list[int], torch.Tensor]:
    """:func:`lasso_select` from the design's moments ``gram = z^T z / n``, ``q = z^T y / n``."""
    gram, q = gram.double(), q.double()
    c = q.shape[0]
    if n_keep >= c:
        return list(range(c)), lasso_moments(gram, q, 0.0, iters)
    hi = float(q.abs().max()) + 1e-12  # at alpha >= max|q| the solution is 0
    lo = hi * 1e-6
    b_hi = torch.zeros(c, dtype=torch.float64, device=q.device)
    b_lo = lasso_moments(gram, q, lo, iters)
    if int((b_lo != 0).sum()) <= n_keep:
        b_hi = b_lo
    else:
        for _ in range(search_steps):
            mid = math.sqrt(lo * hi)
            b = lasso_moments(gram, q, mid, iters)
            nnz = int((b != 0).sum())
            if nnz <= n_keep:
                hi, b_hi = mid, b
            else:
                lo, b_lo = mid, b
            if nnz == n_keep:
                break
    # rank: support at hi first (by |b_hi|), then by |b_lo|, then by |q|
    key = torch.stack([(b_hi != 0).double(), b_hi.abs(), b_lo.abs(), q.abs()], 1)
    order = sorted(range(c), key=lambda j: tuple(-float(v) for v in key[j]) + (j,))
    return sorted(order[:n_keep]), b_hi


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


def thinet_select(
    stats: FeatureStats, n_keep: int, ridge: float = 1e-6, error: str = DEFAULT_THINET_ERROR
) -> Selection:
    """ThiNet (Luo et al. 2017): greedily remove the units whose summed contribution stays
    smallest, then re-scale each kept unit's weight slice by least squares.

    With ``z`` the ``S x C`` contributions (each sample a position and a random output channel),
    the removed set ``T`` grows one unit at a time, taking the ``j`` (the first on ties)
    minimising ``sum_s |sum_{t in T + j} z[s, t]|`` (``error="abs"``, default, the released
    ``ThinetFilterPrune.channel_select``) or ``sum_s (sum_{t in T + j} z[s, t])^2``
    (``error="squared"``, our earlier variant, the ThiNet paper's). The scales minimise
    ``sum_s (sampled_target[s] - sum_{j kept} scale_j z[s, j])^2``; the targets have the bias
    subtracted (the released code fits the output with its bias, without an intercept).
    The local SGD that follows in the released code is run by the pruning loop
    (:func:`dualsr.compression.prune.prune_masked`).
    """
    check_choice("thinet_error", error, THINET_ERRORS)
    z = stats.contributions().double()
    c = z.shape[1]
    acc = torch.zeros(z.shape[0], dtype=torch.float64, device=z.device)
    alive = torch.ones(c, dtype=torch.bool, device=z.device)
    for _ in range(c - n_keep):
        total = acc[:, None] + z
        cost = total.abs().sum(0) if error == "abs" else total.pow(2).sum(0)
        cost[~alive] = math.inf
        j = int(torch.argmin(cost))  # first minimum on ties
        alive[j] = False
        acc += z[:, j]
    keep = [j for j in range(c) if alive[j]]
    scales = least_squares(z[:, keep], stats.sampled_targets().double(), ridge)
    w = stats.weight[:, keep] * scales.to(stats.weight.dtype).view(1, -1, 1, 1)
    return Selection(keep, w, scales.to(stats.weight.dtype))


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Criterion:
    """A registered pruning method.

    Attributes:
        name: the ``--method`` value.
        needs: what the function takes: ``weights`` (a SearchedLayer -> scores), ``gradients``
            (the accumulated consumer-weight gradient and, as the keyword ``score``, the name of
            a :data:`GRADIENT_SCORES` rule -> scores) or ``features``
            (FeatureStats, n_keep -> Selection; ``thinet`` also takes ``error=``, ``cp``
            ``design=``).
        fn: the function.
        description: one line for ``--help`` and the docs.
        dual: gradient criteria only: the loss includes the dual regression term.
        local_sgd: features criteria only: the pruning loop follows the selection with local
            SGD of the kept slices on the SR loss (``thinet``, as the released code).
        configure: for configuration criteria (``uniform``): widths, rate -> channel config
            (:func:`rate_config`, whose ``rounding`` defaults to ``floor``).
    """

    name: str
    needs: Needs
    fn: Callable
    description: str
    dual: bool = False
    configure: Callable[[Sequence[int], float], list[int]] | None = None
    local_sgd: bool = False

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        return self.fn(*args, **kwargs)


CRITERIA: dict[str, Criterion] = {}


def register_criterion(criterion: Criterion) -> None:
    """Add a criterion; a duplicate name is an error."""
    if criterion.name in CRITERIA:
        raise KeyError(f"pruning criterion {criterion.name!r} is already registered")
    CRITERIA[criterion.name] = criterion


def get_criterion(name: str) -> Criterion:
    """Look up a criterion; ConfigError lists the valid names."""
    try:
        return CRITERIA[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown pruning method {name!r}; choose from: {', '.join(CRITERIA)}"
        ) from None


register_criterion(
    Criterion(
        "drc",
        "gradients",
        gradient_scores,
        "dual regression channel pruning: greedy by gradient norm of MSE + gamma (primal + "
        "lambda dual)",
        dual=True,
    )
)
register_criterion(
    Criterion(
        "dcp",
        "gradients",
        gradient_scores,
        "discrimination-aware channel pruning: greedy by gradient norm of MSE + gamma primal",
    )
)
register_criterion(
    Criterion(
        "thinet",
        "features",
        thinet_select,
        "ThiNet: greedy removal by least change of the consumer output, least-squares scales, "
        "local SGD on the SR loss",
        local_sgd=True,
    )
)
register_criterion(
    Criterion(
        "cp",
        "features",
        cp_select,
        "channel pruning: LASSO selection (all output channels), least-squares reconstruction of "
        "the consumer weight",
    )
)
register_criterion(
    Criterion("l1", "weights", l1_scores, "L1 norm of the producer filters (no data needed)")
)
register_criterion(
    Criterion(
        "uniform",
        "weights",
        l1_scores,
        "the same rate in every layer (C - floor(C rate) channels kept), selection by l1 (no "
        "data needed)",
        configure=rate_config,
    )
)
