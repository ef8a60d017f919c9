"""Cost of channel configurations and fitting a configuration to a parameter/MAC budget."""

from __future__ import annotations

import json
import random

import pytest

import dualsr
from dualsr.compression.budget import (
    Budget,
    CostModel,
    allowed_widths,
    config_cost,
    fit_to_budget,
)
from dualsr.errors import ConfigError
from dualsr.models import preset_channel_config
from dualsr.profiling import count_macs

from .conftest import FIXTURES

HW = (96, 96)


@pytest.fixture(scope="module")
def drn_s_x4() -> CostModel:
    return CostModel.from_arch(dualsr.create_model("drn-s-x4").arch, HW)


def test_released_configurations_cost_the_published_parameters(drn_s_x4: CostModel) -> None:
    official = json.loads((FIXTURES / "official_keys.json").read_text())
    arch = dualsr.create_model("drn-s-x4").arch
    for rate in (30, 50, 70):
        cfg = preset_channel_config(f"drn-s{rate}-x4")
        expected = official[f"DRN-S{rate}_x4"]["primal_params"]
        assert drn_s_x4.params(cfg) == expected
        assert config_cost(arch, cfg, HW)[0] == expected
    assert drn_s_x4.params(drn_s_x4.full_widths) == 4_804_065
    # the release's "109.9 G" for DRN-S x4 (MACs at a 96 x 96 input)
    assert abs(drn_s_x4.macs(drn_s_x4.full_widths) / 1e9 - 109.9) < 0.5


def test_affine_cost_model_matches_built_models() -> None:
    model = dualsr.DRN(8, 4, 2)
    cm = CostModel.from_arch(model, (10, 14))
    rng = random.Random(0)
    for _ in range(3):
        cfg = [rng.randint(1, w) for w in cm.full_widths]
        built = dualsr.DRN(8, 4, 2, channel_config=cfg)
        assert cm.params(cfg) == dualsr.count_parameters(built)
        assert cm.macs(cfg) == count_macs(built, (10, 14))
        assert config_cost(model.arch, cfg, (10, 14)) == (cm.params(cfg), cm.macs(cfg))


@pytest.mark.parametrize("kind", ["params", "macs"])
@pytest.mark.parametrize("removed", [0.3, 0.5, 0.7])
def test_budget_is_met_within_two_percent_on_drn_s_x4(
    drn_s_x4: CostModel, kind: str, removed: float
) -> None:
    full_cost = drn_s_x4.cost(drn_s_x4.full_widths, kind)
    target = int((1 - removed) * full_cost)
    budget = Budget(**{kind: target}, input_hw=HW)
    rng = random.Random(int(removed * 10))
    preferences = {
        "uniform": [float(w) for w in drn_s_x4.full_widths],
        "random": [rng.uniform(0.2, 1.0) * w for w in drn_s_x4.full_widths],
        "released": [float(w) for w in preset_channel_config("drn-s30-x4")],
    }
    for name, pref in preferences.items():
        fit = fit_to_budget(drn_s_x4, pref, budget)
        exact = config_cost(dualsr.create_model("drn-s-x4").arch, fit.channel_config, HW)
        cost = exact[0] if kind == "params" else exact[1]
        assert cost == fit.cost
        assert abs(cost - target) <= 0.02 * target, (name, fit.relative_error)
        assert all(
            c % 4 == 0 and 4 <= c <= f
            for c, f in zip(fit.channel_config, drn_s_x4.full_widths, strict=True)
        )


def test_fit_keeps_the_order_of_preferences(drn_s_x4: CostModel) -> None:
    rng = random.Random(3)
    pref = [rng.uniform(5, 60) for _ in drn_s_x4.full_widths]
    fit = fit_to_budget(drn_s_x4, pref, Budget(params=2_000_000))
    full = drn_s_x4.full_widths
    for i in range(len(pref)):
        for j in range(len(pref)):
            if full[i] == full[j] and pref[i] > pref[j]:
                assert fit.channel_config[i] >= fit.channel_config[j]


def test_impossible_budgets_are_config_errors(drn_s_x4: CostModel) -> None:
    full = drn_s_x4.full_widths
    with pytest.raises(ConfigError, match="cannot be met.*choose a budget in that range"):
        fit_to_budget(drn_s_x4, full, Budget(params=100_000))
    with pytest.raises(ConfigError, match="cannot be met"):
        fit_to_budget(drn_s_x4, full, Budget(params=6_000_000))
    # a budget inside the range but finer than one width step of a tiny model
    tiny = CostModel.from_arch(dualsr.DRN(4, 4, 1), None)
    lo = tiny.params([allowed_widths(w, 4)[0] for w in tiny.full_widths])
    with pytest.raises(ConfigError, match="too coarse"):
        fit_to_budget(tiny, tiny.full_widths, Budget(params=int(lo) + 40, tolerance=0.001))


def test_budget_validation() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        Budget()
    with pytest.raises(ConfigError, match="exactly one"):
        Budget(params=1, macs=1, input_hw=HW)
    with pytest.raises(ConfigError, match="input size"):
        Budget(macs=10**9)
    with pytest.raises(ConfigError, match="positive"):
        Budget(params=0)
    assert Budget(macs=5, input_hw=HW).to_dict()["kind"] == "macs"
    assert allowed_widths(10, 4) == [4, 8, 10]
    assert allowed_widths(2, 4) == [2]


def test_simd_aligned_refit_of_drn_s70_keeps_its_macs() -> None:
    """DRN-S70's widths refit to multiples of 16 (the CPU-friendly set, docs/deployment.md)."""
    full = dualsr.create_model("drn-s-x4")
    s70 = preset_channel_config("drn-s70-x4")
    macs = config_cost(full.arch, s70, (90, 160))[1]
    fit = fit_to_budget(
        CostModel.from_arch(full.arch, (90, 160)), s70, Budget(macs=macs, input_hw=(90, 160)), 16
    )
    widths = full.channel_widths()
    assert all(w % 16 == 0 or w == f for w, f in zip(fit.channel_config, widths, strict=True))
    assert any(w % 16 for w in s70)  # the released configuration is not aligned
    assert abs(fit.relative_error) <= 0.02
