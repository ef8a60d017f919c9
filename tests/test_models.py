"""The DRN family: exact official layout, parameter counts, shapes and channel configurations."""

from __future__ import annotations

import json

import pytest
import torch

import dualsr
from dualsr.models import full_widths, split_channel_config
from dualsr.models.registry import PRESETS

from .conftest import FIXTURES

OFFICIAL = json.loads((FIXTURES / "official_keys.json").read_text())
# Published parameter counts (Guo et al., CVPR 2020, "Closed-loop Matters: Dual Regression
# Networks for Single Image Super-Resolution"), primal network
PUBLISHED = {
    "drn-s-x4": 4_804_065,
    "drn-l-x4": 9_825_893,
    "drn-s-x8": 5_403_000,
    "drn-l-x8": 10_004_018,
    "drn-s30-x4": 3_116_637,
    "drn-s50-x4": 2_267_417,
    "drn-s70-x4": 1_427_545,
    "drn-s30-x8": 3_490_832,
    "drn-s50-x8": 2_548_420,
    "drn-s70-x8": 1_572_288,
}
DUAL_PARAMS = {"drn-s-x4": 864, "drn-l-x4": 1080, "drn-s-x8": 432, "drn-l-x8": 540}


def official_name(preset: str) -> str:
    """drn-s30-x4 -> DRN-S30_x4."""
    body, scale = preset.rsplit("-", 1)
    return body.upper() + "_" + scale


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_preset_matches_official_layout_and_count(name: str) -> None:
    model = dualsr.create_model(name)
    layout = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert layout == OFFICIAL[official_name(name)]["primal"]
    assert dualsr.count_parameters(model) == PUBLISHED[name]


@pytest.mark.parametrize("name", list(DUAL_PARAMS))
def test_duals_match_official_layout(name: str) -> None:
    duals = dualsr.create_duals(name)
    official = OFFICIAL[official_name(name)]["dual"]
    assert len(duals) == len(official)
    for dual, keys in zip(duals, official, strict=True):
        assert [[k, list(v.shape)] for k, v in dual.state_dict().items()] == keys
        assert dualsr.count_parameters(dual) == DUAL_PARAMS[name]


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_and_runs(name: str) -> None:
    model = dualsr.create_model(name).eval()
    assert model.channel_widths() == (
        dualsr.models.preset_channel_config(name)
        or dualsr.models.full_widths(model.scale, model.arch.n_feats, model.arch.n_blocks)
    )
    if dualsr.count_parameters(model) < 1_000_000:
        with torch.no_grad():
            assert model(torch.rand(1, 3, 4, 4))[-1].shape == (
                1,
                3,
                4 * model.scale,
                4 * model.scale,
            )


def test_released_configs_are_read_in_official_order() -> None:
    model = dualsr.create_model("drn-s30-x4")
    assert model.channel_widths() == OFFICIAL["DRN-S30_x4"]["channel_config"]
    assert len(model.channel_widths()) == 64
    assert len(dualsr.create_model("drn-s30-x8").channel_widths()) == 96


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_forward_returns_pyramid(scale: int) -> None:
    model = dualsr.DRN(scale, n_feats=4, n_blocks=1).eval()
    lr = torch.rand(2, 3, 6, 5) * 255
    with torch.no_grad():
        outs = model(lr)
    assert len(outs) == model.phases + 1
    for level, out in enumerate(outs):
        assert out.shape == (2, 3, 6 * 2**level, 5 * 2**level)
    duals = dualsr.DualModels(scale, 4)
    with torch.no_grad():
        back = duals(outs)
    assert [b.shape for b in back] == [o.shape for o in outs[:-1]]


def test_width_configured_model_is_smaller_and_runs() -> None:
    full = full_widths(4, 4, 2)
    cfg = [max(1, w // 2) for w in full]
    model = dualsr.DRN(4, 4, 2, channel_config=cfg)
    assert model.channel_widths() == cfg
    assert dualsr.count_parameters(model) < dualsr.count_parameters(dualsr.DRN(4, 4, 2))
    assert model(torch.rand(1, 3, 4, 4))[-1].shape == (1, 3, 16, 16)


def test_bad_channel_config_names_the_problem() -> None:
    with pytest.raises(ValueError, match="needs 8"):
        dualsr.DRN(4, 4, 2, channel_config=[4] * 7)
    bad = full_widths(4, 4, 2)
    bad[3] = 999
    with pytest.raises(ValueError, match="entry 3"):
        split_channel_config(bad, 4, 4, 2)
    with pytest.raises(ValueError, match="power of two"):
        dualsr.DRN(3, 4, 2)


def test_unknown_preset_lists_choices() -> None:
    with pytest.raises(KeyError, match="drn-s-x4"):
        dualsr.create_model("drn-xxl")


def test_mean_shift_is_identity_plus_mean() -> None:
    model = dualsr.DRN(4, 4, 0, rgb_range=255)
    assert torch.equal(model.sub_mean.weight.flatten(), torch.eye(3).flatten())
    assert torch.allclose(model.sub_mean.bias, -255 * torch.tensor([0.4488, 0.4371, 0.4040]))
    assert torch.allclose(model.add_mean.bias, -model.sub_mean.bias)


def test_public_api_names_all_resolve() -> None:
    """Every name in ``dualsr.__all__`` resolves, the lazy pipeline entry points included."""
    for name in dualsr.__all__:
        assert getattr(dualsr, name) is not None, name
    assert dualsr.train is __import__("dualsr.training", fromlist=["train"]).train
    assert "prune_model" in dir(dualsr)
    with pytest.raises(AttributeError, match="no_such_thing"):
        dualsr.no_such_thing  # noqa: B018
