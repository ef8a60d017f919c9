"""The dual regression loss against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from dualsr.losses import DualRegressionLoss


def test_loss_matches_hand_computation() -> None:
    # pyramid of constants: each L1 term is a known absolute difference
    targets = [torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 8, 8)]
    outputs = [torch.full_like(t, v) for t, v in zip(targets, (1.0, 2.0, 3.0), strict=True)]
    duals = [torch.full_like(targets[0], 4.0), torch.full_like(targets[1], -5.0)]
    terms = DualRegressionLoss(dual_weight=0.1)(outputs, targets, duals)
    assert terms.primal.item() == pytest.approx(1 + 2 + 3)
    assert terms.dual.item() == pytest.approx(4 + 5)
    assert terms.total.item() == pytest.approx(6 + 0.9)


def test_primal_only_ablation_ignores_duals() -> None:
    t = [torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 4, 4)]
    o = [torch.ones(1, 3, 2, 2), torch.ones(1, 3, 4, 4)]
    terms = DualRegressionLoss(use_dual=False)(o, t)
    assert terms.total.item() == pytest.approx(1.0) and terms.dual.item() == 0


def test_loss_checks_its_inputs() -> None:
    t = [torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 4, 4)]
    with pytest.raises(ValueError, match="targets"):
        DualRegressionLoss()(t[:1], t)
    with pytest.raises(ValueError, match="dual output"):
        DualRegressionLoss()(t, t, None)
    with pytest.raises(ValueError, match="dual_weight"):
        DualRegressionLoss(dual_weight=-1)


def test_gradients_reach_primal_and_duals() -> None:
    import dualsr

    model, duals = dualsr.DRN(4, 4, 1), dualsr.DualModels(4, 4)
    hr = torch.rand(1, 3, 16, 16) * 255
    targets = [dualsr.imresize_torch(hr, 1 / 4), dualsr.imresize_torch(hr, 1 / 2), hr]
    outputs = model(targets[0])
    terms = DualRegressionLoss()(outputs, targets, duals(outputs))
    terms.total.backward()
    assert model.head.weight.grad is not None and duals[0].dual_module[1].weight.grad is not None


def test_pyramid_levels_are_direct_bicubic_downscales() -> None:
    import numpy as np

    import dualsr
    from dualsr.data.pyramid import make_pyramid

    from .conftest import random_image

    hr = random_image(32, 24)
    levels = make_pyramid(hr, 8)
    assert [lv.shape[:2] for lv in levels] == [(4, 3), (8, 6), (16, 12), (32, 24)]
    assert np.array_equal(levels[0], dualsr.imresize(hr, 1 / 8))
    assert np.array_equal(levels[2], dualsr.imresize(hr, 1 / 2))
    with pytest.raises(ValueError, match="multiple of the scale"):
        make_pyramid(hr[:30], 8)
