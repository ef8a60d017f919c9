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


# ----------------------------------------------------------------------------------------------
# The dual HR term (loss.dual_hr): lambda x L1(P(D(HR))_top, HR)
# ----------------------------------------------------------------------------------------------
def test_dual_hr_term_matches_hand_computation() -> None:
    targets = [torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 8, 8)]
    outputs = [torch.full_like(t, v) for t, v in zip(targets, (1.0, 2.0, 3.0), strict=True)]
    duals = [torch.full_like(targets[0], 4.0), torch.full_like(targets[1], -5.0)]
    cycle = torch.full_like(targets[-1], -7.0)
    terms = DualRegressionLoss(dual_weight=0.1, dual_hr=True)(outputs, targets, duals, cycle)
    assert terms.primal.item() == pytest.approx(1 + 2 + 3)
    assert terms.dual.item() == pytest.approx(4 + 5)
    assert terms.dual_hr.item() == pytest.approx(7)
    assert terms.total.item() == pytest.approx(6 + 0.1 * 9 + 0.1 * 7)
    assert terms.item()["dual_hr"] == pytest.approx(7)


def test_dual_hr_loop_on_a_tiny_model_equals_the_formula() -> None:
    import torch.nn.functional as F

    import dualsr
    from dualsr.losses import hr_loop

    torch.manual_seed(0)
    model, duals = dualsr.DRN(4, 4, 1), dualsr.DualModels(4, 4)
    hr = torch.rand(2, 3, 16, 16) * 255
    targets = [dualsr.imresize_torch(hr, 1 / 4), dualsr.imresize_torch(hr, 1 / 2), hr]
    # HR (16) -> dual 1 -> 8 -> dual 0 -> x_hat (4) -> primal -> 16
    x_half = duals[1](hr)
    x_hat = duals[0](x_half)
    assert x_half.shape[-1] == 8 and x_hat.shape == targets[0].shape
    by_hand = model(x_hat)[-1]
    cycle = hr_loop(model, duals, hr)
    assert torch.equal(cycle, by_hand)
    outputs = model(targets[0])
    terms = DualRegressionLoss(0.1, dual_hr=True)(outputs, targets, duals(outputs), cycle)
    expected_hr = (by_hand - hr).abs().mean()
    assert torch.allclose(terms.dual_hr, expected_hr)
    primal = sum(F.l1_loss(o, t) for o, t in zip(outputs, targets, strict=True))
    dual = F.l1_loss(duals(outputs)[0], targets[0]) + F.l1_loss(duals(outputs)[1], targets[1])
    assert torch.allclose(terms.total, primal + 0.1 * dual + 0.1 * expected_hr)


def test_dual_hr_off_is_exactly_the_old_loss() -> None:
    import dualsr

    torch.manual_seed(1)
    model, duals = dualsr.DRN(4, 4, 1), dualsr.DualModels(4, 4)
    hr = torch.rand(1, 3, 16, 16) * 255
    targets = [dualsr.imresize_torch(hr, 1 / 4), dualsr.imresize_torch(hr, 1 / 2), hr]
    outputs = model(targets[0])
    dual_outputs = duals(outputs)
    old = DualRegressionLoss(0.1)(outputs, targets, dual_outputs)
    off = DualRegressionLoss(0.1, dual_hr=False)(
        outputs,
        targets,
        dual_outputs,
        torch.zeros_like(hr),  # ignored when off
    )
    assert torch.equal(old.total, off.total) and off.dual_hr is None
    assert torch.equal(off.total, old.primal + 0.1 * old.dual)
    assert off.item()["dual_hr"] == 0.0
    on = DualRegressionLoss(0.1, dual_hr=True)(outputs, targets, dual_outputs, hr + 1)
    assert torch.equal(on.primal, old.primal) and torch.equal(on.dual, old.dual)
    assert on.total.item() == pytest.approx(old.total.item() + 0.1)


def test_dual_hr_gradients_reach_primal_and_both_duals() -> None:
    import dualsr
    from dualsr.losses import hr_loop

    torch.manual_seed(2)
    model, duals = dualsr.DRN(4, 4, 1), dualsr.DualModels(4, 4)
    hr = torch.rand(1, 3, 16, 16) * 255
    targets = [dualsr.imresize_torch(hr, 1 / 4), dualsr.imresize_torch(hr, 1 / 2), hr]
    outputs = model(targets[0])
    terms = DualRegressionLoss(dual_hr=True)(
        outputs, targets, duals(outputs), hr_loop(model, duals, hr)
    )
    terms.dual_hr.backward()  # the HR loop alone: no primal or LR-side dual gradient
    assert model.head.weight.grad.abs().sum() > 0
    assert model.tail[-1].weight.grad.abs().sum() > 0
    for dual in duals:  # both halving steps sit on the path HR -> x_hat -> P
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dual.parameters())


def test_dual_hr_checks_its_inputs() -> None:
    t = [torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 4, 4)]
    d = [torch.zeros(1, 3, 2, 2)]
    with pytest.raises(ValueError, match="dual_hr needs use_dual"):
        DualRegressionLoss(use_dual=False, dual_hr=True)
    with pytest.raises(ValueError, match="dual HR term needs"):
        DualRegressionLoss(dual_hr=True)(t, t, d)
    with pytest.raises(ValueError, match="dual HR term needs"):
        DualRegressionLoss(dual_hr=True)(t, t, d, torch.zeros(1, 3, 2, 2))
