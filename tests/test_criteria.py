"""Pruning criteria against hand-computed values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dualsr.compression import criteria
from dualsr.compression.criteria import (
    CRITERIA,
    L1,
    get_criterion,
    register_criterion,
)
from dualsr.compression.criteria.cp import cp_select
from dualsr.compression.criteria.l1 import l1_scores
from dualsr.compression.criteria.thinet import thinet_select
from dualsr.compression.layers import SearchedLayer
from dualsr.compression.pruning.features import FeatureStats
from dualsr.compression.pruning.scores import (
    DEFAULT_SCORE,
    GRADIENT_SCORES,
    gradient_norm_scores,
    gradient_scores,
    summed_gradient_norm_scores,
    top_units,
)
from dualsr.compression.pruning.solvers import (
    lasso,
    lasso_select,
    lasso_select_moments,
    least_squares,
)
from dualsr.compression.pruning.widths import (
    DEFAULT_RATE_ROUNDING,
    floor_config,
    rate_config,
    uniform_config,
)
from dualsr.errors import ConfigError


def _conv(weight: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[-1], bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return conv


def test_l1_scores_of_producer_filters_and_consumer_slices() -> None:
    # producer: 3 output channels (units), 2 inputs, 1x1; consumer: 2 outputs, 3 inputs
    producer = _conv(torch.tensor([[1.0, -2.0], [0.5, 0.5], [-3.0, 0.0]]).view(3, 2, 1, 1))
    consumer = _conv(torch.tensor([[1.0, 0.0, -1.0], [2.0, -4.0, 0.5]]).view(2, 3, 1, 1))
    layer = SearchedLayer(0, "x", "rcab", producer, consumer, 1)
    assert l1_scores(layer).tolist() == [3.0, 1.0, 3.0]
    assert l1_scores(layer, "consumer").tolist() == [3.0, 4.0, 1.5]
    with pytest.raises(ValueError, match="producer"):
        l1_scores(layer, "both")  # type: ignore[arg-type]


def test_l1_scores_of_upsampler_groups() -> None:
    # 2 units = 8 producer channels (4 per PixelShuffle group)
    producer = _conv(torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1) - 2)
    consumer = _conv(torch.ones(1, 2, 1, 1))
    layer = SearchedLayer(0, "up", "upsampler", producer, consumer, 4)
    # |-2| + |-1| + 0 + 1 = 4 ; 2 + 3 + 4 + 5 = 14
    assert l1_scores(layer).tolist() == [4.0, 14.0]


def test_top_units_sorted_with_ties_to_lower_index() -> None:
    assert top_units(torch.tensor([1.0, 5.0, 5.0, 0.0, 5.0]), 2) == [1, 2]
    assert top_units(torch.tensor([3.0, 1.0, 2.0]), 3) == [0, 1, 2]


def test_uniform_config_rounds_to_multiples_of_four() -> None:
    # 8*0.7 = 5.6 -> 4; 16*0.7 = 11.2 -> 12; 32*0.7 = 22.4 -> 24; 4*0.7 -> at least 4
    assert uniform_config([8, 16, 32, 4], 0.3) == [4, 12, 24, 4]
    assert uniform_config([2, 16], 0.9) == [2, 4]  # never above the width, never below 4 or it
    assert uniform_config([16], 0.0) == [16]
    with pytest.raises(ConfigError, match="rate"):
        uniform_config([16], 1.0)


def test_gradient_norm_scores_match_an_autograd_computation() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 2, 1, bias=False)
    x = torch.randn(4, 3, 5, 5)
    target = torch.randn(4, 2, 5, 5)
    loss = F.mse_loss(conv(x), target)
    (grad,) = torch.autograd.grad(loss, conv.weight)
    # by hand: dL/dW[o, j] = 2/numel * sum_{n,h,w} (y - t)[n, o] x[n, j]
    residual = (conv(x) - target).detach()
    by_hand = 2 / residual.numel() * torch.einsum("nohw,njhw->oj", residual, x)
    expected = by_hand.pow(2).sum(0).sqrt()
    assert torch.allclose(gradient_norm_scores(grad).float(), expected, rtol=1e-5)
    assert torch.allclose(
        gradient_norm_scores(grad).float(), torch.linalg.vector_norm(grad, dim=(0, 2, 3)), rtol=1e-5
    )


def test_least_squares_recovers_an_exact_solution() -> None:
    torch.manual_seed(0)
    a = torch.randn(50, 4)
    x = torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0], [-1.0, 2.0]])
    assert torch.allclose(least_squares(a, a @ x), x, atol=1e-4)


def _orthonormal_design(samples: int = 64, columns: int = 4) -> torch.Tensor:
    q, _ = torch.linalg.qr(
        torch.randn(samples, columns, generator=torch.Generator().manual_seed(3))
    )
    return q * samples**0.5  # z^T z / S = I


def test_lasso_is_the_soft_threshold_for_an_orthonormal_design() -> None:
    z = _orthonormal_design()
    y = z @ torch.tensor([3.0, -0.5, 2.0, 0.0])
    b = lasso(z, y, alpha=1.0)
    # q = z^T y / S = (3, -0.5, 2, 0); soft(q, 1) = (2, 0, 1, 0)
    assert torch.allclose(b, torch.tensor([2.0, 0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-6)
    keep, coef = lasso_select(z, y, 2)
    assert keep == [0, 2]
    assert int((coef != 0).sum()) <= 2


def test_cp_selects_the_lasso_support_and_refits_by_least_squares() -> None:
    z = _orthonormal_design()  # per-unit inputs of a 1x1 conv with one output, weight 1
    stats = FeatureStats(
        patches=z[:, :, None],
        targets=(z @ torch.tensor([3.0, 0.5, 2.0, 0.1]))[:, None],
        out_channel=torch.zeros(len(z), dtype=torch.long),
        weight=torch.ones(1, 4, 1, 1),
    )
    sel = cp_select(stats, 2)
    assert sel.keep == [0, 2]
    assert sel.weight is not None and sel.weight.shape == (1, 2, 1, 1)
    # orthogonal columns: the least-squares weights are the true coefficients
    assert torch.allclose(sel.weight.flatten(), torch.tensor([3.0, 2.0]), atol=1e-4)


def test_thinet_squared_greedy_removal_by_hand() -> None:
    # the squared error (our earlier default, now error="squared"; with "abs" all three units
    # tie at step 1 here)
    # two samples; unit contributions z0 = (1, 0), z1 = (-1, 0), z2 = (0.5, 0.5)
    z = torch.tensor([[1.0, -1.0, 0.5], [0.0, 0.0, 0.5]])
    stats = FeatureStats(
        patches=z[:, :, None],
        targets=z.sum(1, keepdim=True),  # (0.5, 0.5)
        out_channel=torch.zeros(2, dtype=torch.long),
        weight=torch.full((1, 3, 1, 1), 2.0),  # contributions are patches x 2
    )
    # contributions 2z: step 1 costs |2z_j|^2 = 4, 4, 2 -> remove 2; step 2: acc = (1, 1):
    # |(3, 1)|^2 = 10 vs |(-1, 1)|^2 = 2 -> remove 1; keep 0
    sel = thinet_select(stats, 1, error="squared")
    assert sel.keep == [0]
    # scale s: min |(2, 0) s - (0.5, 0.5)|^2 -> s = 0.25; new weight = 2 * 0.25
    assert sel.weight is not None
    assert torch.allclose(sel.weight.flatten(), torch.tensor([0.5]), atol=1e-5)


def _unit_stats(z: torch.Tensor) -> FeatureStats:
    """Stats of a 1x1 conv with one output and weight 1: the contributions are ``z``."""
    return FeatureStats(
        patches=z[:, :, None],
        targets=z.sum(1, keepdim=True),
        out_channel=torch.zeros(len(z), dtype=torch.long),
        weight=torch.ones(1, z.shape[1], 1, 1),
    )


def test_thinet_abs_error_greedy_differs_from_the_squared_one_by_hand() -> None:
    # four samples, contributions of units a, b, c, d (columns)
    a, b, c, d = [1.0] * 4, [2.5, 0, 0, 0], [3.0] * 4, [-2.4, 0, 0, 0.2]
    z = torch.tensor([a, b, c, d]).T
    # abs, step 1: |a| = 4, |b| = 2.5, |c| = 12, |d| = 2.6 -> remove b; step 2, acc = b:
    # |a + b| = 3.5 + 3 = 6.5, |c + b| = 5.5 + 9 = 14.5, |d + b| = 0.1 + 0.2 = 0.3 -> remove d
    sel = thinet_select(_unit_stats(z), 2)  # error="abs" is the default (released code)
    assert sel.keep == [0, 2]
    assert thinet_select(_unit_stats(z), 2, error="abs").keep == [0, 2]
    # squared, step 1: a 4, b 6.25, c 36, d 5.8 -> remove a; step 2, acc = a:
    # b 3.5^2 + 3 = 15.25, c 4^2 * 4 = 64, d 1.4^2 + 1 + 1 + 1.2^2 = 5.4 -> remove d
    assert thinet_select(_unit_stats(z), 2, error="squared").keep == [1, 2]
    # the scales are the least-squares fit of the kept contributions to the targets
    assert sel.scales is not None and sel.weight is not None
    expected = torch.linalg.lstsq(z[:, [0, 2]].double(), z.sum(1).double()[:, None]).solution
    assert torch.allclose(sel.scales.double(), expected.flatten(), atol=1e-4)
    assert torch.allclose(sel.weight.flatten(), sel.scales)  # pretrained weight 1 x scales
    with pytest.raises(ConfigError, match="thinet_error must be one of: abs, squared"):
        thinet_select(_unit_stats(z), 2, error="cube")


def test_cp_all_outputs_design_keeps_a_unit_that_matters_only_for_an_unsampled_output() -> None:
    p = _orthonormal_design(64, 3)  # 1x1 conv inputs, p^T p / S = I
    weight = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 3.0]]).view(2, 3, 1, 1)
    stats = FeatureStats(
        patches=p[:, :, None],
        targets=p @ weight.flatten(1).T,
        out_channel=torch.zeros(len(p), dtype=torch.long),  # every sample draws output 0
        weight=weight,
    )
    # unit 2 feeds output 1 only: invisible to the sampled design, which keeps 0 and 1
    assert cp_select(stats, 2, design="sampled").keep == [0, 1]
    # all outputs (the default): q = z^T y / (S O) = (0.5, 0.125, 4.5) with a diagonal Gram,
    # so the LASSO drops unit 1 first
    sel = cp_select(stats, 2)
    assert sel.keep == [0, 2]
    assert cp_select(stats, 2, design="all").keep == [0, 2]
    gram, q = stats.all_outputs_moments()
    assert torch.allclose(q, torch.tensor([0.5, 0.125, 4.5], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(gram, torch.diag(torch.tensor([0.5, 0.125, 4.5])).double(), atol=1e-6)
    # the re-fit over all outputs: output 0 keeps unit 0's weight, output 1 unit 2's
    assert sel.weight is not None
    assert torch.allclose(sel.weight.flatten(1), torch.tensor([[1.0, 0.0], [0.0, 3.0]]), atol=1e-4)
    with pytest.raises(ConfigError, match="cp_design must be one of: all, sampled"):
        cp_select(stats, 2, design="every")


def test_all_outputs_moments_equal_the_explicit_design() -> None:
    gen = torch.Generator().manual_seed(5)
    s, c, kk, o = 40, 5, 9, 4
    stats = FeatureStats(
        patches=torch.randn(s, c, kk, generator=gen),
        targets=torch.randn(s, o, generator=gen),
        out_channel=torch.zeros(s, dtype=torch.long),
        weight=torch.randn(o, c, 3, 3, generator=gen),
    )
    z, y = stats.all_outputs_design()
    assert z.shape == (s * o, c) and y.shape == (s * o,)
    # row s * O + o holds unit c's contribution to output o at sample s
    w = stats.weight.flatten(2)
    for si, oi in [(0, 0), (3, 2), (s - 1, o - 1)]:
        row = (stats.patches[si] * w[oi]).sum(-1).double()
        assert torch.allclose(z[si * o + oi], row, atol=1e-10)
        assert y[si * o + oi] == stats.targets[si, oi].double()
    gram, q = stats.all_outputs_moments()
    assert torch.allclose(gram, z.T @ z / len(y), rtol=1e-10, atol=1e-12)
    assert torch.allclose(q, z.T @ y / len(y), rtol=1e-10, atol=1e-12)
    # and so the selection from the moments is the selection from the explicit design
    assert lasso_select_moments(gram, q, 2)[0] == lasso_select(z, y, 2)[0]


def test_feature_stats_contributions() -> None:
    patches = torch.arange(12, dtype=torch.float32).view(2, 2, 3)  # S=2, C=2, kk=3
    weight = torch.tensor([[[1.0, 0, 0], [0, 1, 0]], [[0, 0, 1], [1, 1, 1]]]).view(2, 2, 1, 3)
    stats = FeatureStats(patches, torch.zeros(2, 2), torch.tensor([0, 1]), weight)
    # sample 0 with output 0: (0, 4); sample 1 with output 1: (8, 9 + 10 + 11)
    assert stats.contributions().tolist() == [[0.0, 4.0], [8.0, 30.0]]


def test_the_names_of_the_former_criteria_module_stay_importable_from_it() -> None:
    # experiments/*.sh and user code import e.g. uniform_config from dualsr.compression.criteria
    for name in (
        "uniform_config",
        "floor_config",
        "rate_config",
        "GRADIENT_SCORES",
        "FeatureStats",
        "least_squares",
        "lasso_select",
        "top_units",
        "cp_select",
        "thinet_select",
        "l1_scores",
        "check_choice",
        "THINET_ERRORS",
        "CP_DESIGNS",
    ):
        assert getattr(criteria, name) is not None, name
    assert criteria.uniform_config is uniform_config and criteria.cp_select is cp_select
    assert set(criteria.__all__) <= set(dir(criteria))


def test_registry_lists_every_method_and_rejects_duplicates() -> None:
    assert set(CRITERIA) == {"drc", "dcp", "thinet", "cp", "l1", "uniform"}
    assert CRITERIA["drc"].dual and not CRITERIA["dcp"].dual
    assert CRITERIA["uniform"].configure is rate_config
    assert type(get_criterion("DRC")) is CRITERIA["drc"]

    class AnotherL1(L1):
        name = "l1"

    with pytest.raises(KeyError, match="already registered"):
        register_criterion(AnotherL1)
    with pytest.raises(ConfigError, match="unknown pruning method 'magic'.*drc"):
        get_criterion("magic")


# ----------------------------------------------------------------------------------------------
# The released code's channel score (default) and the DCP paper's
# ----------------------------------------------------------------------------------------------
def test_official_score_sums_the_per_filter_gradient_norms() -> None:
    # grad: 2 output channels x 2 units x 1 x 2 kernel positions
    grad = torch.zeros(2, 2, 1, 2)
    grad[0, 0, 0] = torch.tensor([3.0, 4.0])  # unit 0: one filter slice of norm 5, one of 0
    grad[0, 1, 0] = torch.tensor([3.0, 0.0])  # unit 1: slices of norm 3 and 4
    grad[1, 1, 0] = torch.tensor([0.0, 4.0])
    # official: sum_o sqrt(sum_k g^2) = 5 + 0, 3 + 4; dcp-paper: sqrt(sum_{o,k} g^2) = 5, 5
    official = summed_gradient_norm_scores(grad)
    assert official.dtype == torch.float64 and official.tolist() == [5.0, 7.0]
    assert gradient_norm_scores(grad).tolist() == [5.0, 5.0]
    assert DEFAULT_SCORE == "official" and set(GRADIENT_SCORES) == {"official", "dcp-paper"}
    assert gradient_scores(grad).tolist() == [5.0, 7.0]
    assert gradient_scores(grad, "dcp-paper").tolist() == [5.0, 5.0]
    # the two rules rank differently: official prefers unit 1, dcp-paper ties (lower index wins)
    assert top_units(gradient_scores(grad), 1) == [1]
    assert top_units(gradient_scores(grad, "dcp-paper"), 1) == [0]
    # the registered gradient criteria score with the official rule unless told otherwise
    for name in ("drc", "dcp"):
        assert get_criterion(name).scores(grad).tolist() == [5.0, 7.0]
        assert get_criterion(name, score="dcp-paper").scores(grad).tolist() == [5.0, 5.0]
    with pytest.raises(ConfigError, match="unknown gradient score 'l2'.*official, dcp-paper"):
        gradient_scores(grad, "l2")


def test_official_score_matches_a_loop_over_filters() -> None:
    grad = torch.randn(5, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    expected = [
        sum(float(torch.linalg.vector_norm(grad[o, j].double())) for o in range(5))
        for j in range(3)
    ]
    assert summed_gradient_norm_scores(grad).tolist() == pytest.approx(expected, rel=1e-12)
    # between the Frobenius norm and sqrt(O) times it
    frob = gradient_norm_scores(grad)
    assert bool((frob <= summed_gradient_norm_scores(grad) + 1e-12).all())
    assert bool((summed_gradient_norm_scores(grad) <= 5**0.5 * frob + 1e-12).all())


# ----------------------------------------------------------------------------------------------
# A rate without a configuration: C - floor(C * rate) per layer (released code)
# ----------------------------------------------------------------------------------------------
def test_floor_config_removes_floor_of_c_times_rate() -> None:
    # 4*0.3 = 1.2 -> 1; 8*0.3 = 2.4 -> 2; 10*0.3 = 3.0000000000000004 -> 3; 16*0.3 = 4.8 -> 4;
    # 64*0.3 = 19.2 -> 19
    assert floor_config([4, 8, 10, 16, 64], 0.3) == [3, 6, 7, 12, 45]
    assert floor_config([4, 8, 16], 0.5) == [2, 4, 8]
    assert floor_config([1, 2, 16], 0.9) == [1, 1, 2]  # at least one unit always stays
    assert floor_config([16, 3], 0.0) == [16, 3]
    with pytest.raises(ConfigError, match="rate"):
        floor_config([16], 1.0)


def test_rate_config_defaults_to_floor_and_keeps_multiples_of_four_as_an_option() -> None:
    widths = [4, 8, 16, 32, 64]
    assert DEFAULT_RATE_ROUNDING == "floor"
    assert rate_config(widths, 0.3) == floor_config(widths, 0.3) == [3, 6, 12, 23, 45]
    assert rate_config(widths, 0.3, "multiple4") == uniform_config(widths, 0.3)
    assert uniform_config(widths, 0.3) == [4, 4, 12, 24, 44]
    with pytest.raises(ConfigError, match="unknown rate rounding 'ceil'.*floor, multiple4"):
        rate_config(widths, 0.3, "ceil")
