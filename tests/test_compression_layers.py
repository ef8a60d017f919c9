"""Searched layers, masks and slimming: slimming equals masking, and matches official layouts."""

from __future__ import annotations

import json

import pytest
import torch

import dualsr
from dualsr.compression.layers import ChannelMasks, hard_masks, searched_layers, slim

from .conftest import FIXTURES


def test_searched_layers_follow_the_official_order() -> None:
    model = dualsr.DRN(8, 4, 2)
    layers = searched_layers(model)
    assert len(layers) == 3 * (2 + 2)
    assert [lay.kind for lay in layers[:4]] == ["down", "down", "down", "rcab"]
    assert layers[5].kind == "upsampler" and layers[5].group == 4
    assert [lay.width for lay in layers] == model.channel_widths()


def test_slim_equals_masked_full_model() -> None:
    torch.manual_seed(0)
    model = dualsr.DRN(4, 4, 2).eval()
    gen = torch.Generator().manual_seed(1)
    keep = [torch.randperm(w, generator=gen)[: max(1, w // 2)] for w in model.channel_widths()]
    small = slim(model, keep)
    assert small.channel_widths() == [len(k) for k in keep]
    x = torch.rand(1, 3, 6, 7) * 255
    with torch.no_grad(), ChannelMasks(model, hard_masks(model, keep)):
        masked = model(x)
    with torch.no_grad():
        pruned = small(x)
        full = model(x)
    for a, b in zip(masked, pruned, strict=True):
        assert (a - b).abs().max() < 1e-4
    assert (full[-1] - pruned[-1]).abs().max() > 1e-3  # the masks did change the output
    # hooks are gone after the context
    with torch.no_grad():
        assert torch.equal(model(x)[-1], full[-1])


def test_slimmed_drn_s_has_the_released_layout() -> None:
    official = json.loads((FIXTURES / "official_keys.json").read_text())["DRN-S50_x4"]
    model = dualsr.create_model("drn-s-x4")
    keep = [range(w) for w in official["channel_config"]]
    small = slim(model, keep)
    assert [[k, list(v.shape)] for k, v in small.state_dict().items()] == official["primal"]
    assert dualsr.count_parameters(small) == official["primal_params"]


def test_bad_keep_lists_are_rejected() -> None:
    model = dualsr.DRN(4, 4, 0)
    n = len(searched_layers(model))
    with pytest.raises(ValueError, match="keep-lists"):
        slim(model, [[0]] * (n - 1))
    with pytest.raises(ValueError, match="down.0"):
        slim(model, [[99]] + [[0]] * (n - 1))
