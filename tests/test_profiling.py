"""MAC counting: hand-computed values and the published DRN-S figure."""

from __future__ import annotations

import torch
from torch import nn

import dualsr
from dualsr.profiling import count_macs


def test_macs_of_a_single_conv_by_hand() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, (10, 12)) == 10 * 12 * 8 * 3 * 9
    strided = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    assert count_macs(strided, (10, 12), in_channels=4) == 5 * 6 * 6 * 2 * 9


def test_drn_s_x4_matches_the_published_figure() -> None:
    # the release quotes 109.9 G for DRN-S x4, which equals MACs at a 96 x 96 LR input
    macs = count_macs(dualsr.create_model("drn-s-x4"), (96, 96))
    assert abs(macs / 1e9 - 109.9) / 109.9 < 0.01


def test_counting_does_not_touch_the_model() -> None:
    model = dualsr.DRN(4, 4, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (8, 8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).device.type == "cpu"
