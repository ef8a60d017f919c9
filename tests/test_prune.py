"""Channel pruning: exactness, the greedy loop's gradients and costs, the official layout."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import dualsr
from dualsr.compression import greedy, prune
from dualsr.compression.criteria import (
    CRITERIA,
    Criterion,
    LayerContext,
    feature_based,
    get_criterion,
    register_criterion,
)
from dualsr.compression.criteria.drc import DRC
from dualsr.compression.criteria.l1 import l1_scores
from dualsr.compression.layers import ChannelMasks, SearchedLayer, hard_masks, searched_layers
from dualsr.compression.prune import (
    LayerObjective,
    PruneOptions,
    accumulate_gradient,
    collect_feature_stats,
    collect_moments,
    prune_masked,
    prune_model,
    teacher_features,
)
from dualsr.compression.pruning.features import FeatureStats
from dualsr.compression.pruning.objective import consumer_inputs
from dualsr.compression.pruning.scores import top_units
from dualsr.errors import ConfigError, DualSRError

from .conftest import FIXTURES


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny convolutions: threads only add overhead on a shared machine


def _pyramid(n: int = 2, hr: int = 16, scale: int = 4, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, hr, hr, generator=gen) * 255
    levels = [F.avg_pool2d(x, scale // 2**lvl) for lvl in range(int(math.log2(scale)))]
    return [*levels, x]


def _tiny() -> tuple[dualsr.DRN, dualsr.DualModels]:
    torch.manual_seed(0)
    return dualsr.DRN(4, 4, 1).eval(), dualsr.DualModels(4, 4).eval()


def _half(model: dualsr.DRN) -> list[int]:
    return [max(1, w // 2) for w in model.channel_widths()]


@pytest.mark.parametrize("method", ["drc", "dcp", "thinet", "cp", "l1", "uniform"])
def test_every_method_prunes_exactly_to_the_configuration(method: str) -> None:
    model, duals = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = _half(model)
    batches = [_pyramid(seed=1), _pyramid(seed=2)]
    masked = prune_masked(model, duals, config, batches, PruneOptions(method=method))
    result = prune_model(model, duals, config, batches, method=method)
    assert result.channel_config == config == result.model.channel_widths()
    assert result.keep == masked.keep
    # the slimmed model computes what the full model computes with the removed units masked
    x = _pyramid(n=1, seed=3)[0]
    with torch.no_grad(), ChannelMasks(masked.model, hard_masks(masked.model, masked.keep)):
        reference = masked.model(x)
    with torch.no_grad():
        pruned = result.model(x)
    for a, b in zip(reference, pruned, strict=True):
        assert (a - b).abs().max() < 1e-4
    # the input model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_greedy_pass_counts_and_warm_start() -> None:
    model, duals = _tiny()
    config = _half(model)  # [2, 4, 8, 8, 8, 8]
    batches = [_pyramid()]
    paper = PruneOptions(greedy="passes", channels_per_pass=1)
    one = prune_masked(model, duals, config, batches, paper)
    assert one.stats.gradient_passes == sum(config) == one.stats.local_passes
    assert one.stats.teacher_passes == len(config)
    opts = PruneOptions(greedy="passes", channels_per_pass=4, local_epochs=0)
    four = prune_masked(model, duals, config, batches, opts)
    assert four.stats.gradient_passes == sum(math.ceil(c / 4) for c in config)
    assert four.stats.local_passes == 0
    # without local SGD the kept slices are the pretrained ones, the others zero
    for layer, orig, keep in zip(
        searched_layers(four.model), searched_layers(model), four.keep, strict=True
    ):
        w = layer.consumer.weight
        assert torch.equal(w[:, keep], orig.consumer.weight[:, keep])
        dropped = [j for j in range(layer.width) if j not in keep]
        assert not w[:, dropped].any()
    # the moments greedy: one SR-gradient pass, one final epoch and one statistics pass a layer
    fast = prune_masked(model, duals, config, batches, PruneOptions(greedy="moments"))
    assert fast.stats.gradient_passes == fast.stats.local_passes == len(config)
    assert fast.stats.feature_passes == len(config)


def test_moments_rescoring_reproduces_the_paper_loop_exactly() -> None:
    """Without the SR term, the moments greedy makes the paper's loop's choices and weights."""
    model, duals = _tiny()
    config = _half(model)
    batches = [_pyramid(seed=1), _pyramid(seed=2)]
    paper = PruneOptions(greedy="passes", channels_per_pass=1, gamma=0.0)
    moments = PruneOptions(greedy="moments", gamma=0.0, final_epochs=0)
    a = prune_masked(model, duals, config, batches, paper)
    b = prune_masked(model, duals, config, batches, moments)
    assert a.keep == b.keep
    assert b.stats.passes == 0 and a.stats.passes == 2 * sum(config)
    pairs = zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True)
    for (name, x), y in pairs:
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-5), name


def _consumer_inputs(model: dualsr.DRN, layer: SearchedLayer, batches: list) -> list[torch.Tensor]:
    inputs: list[torch.Tensor] = []
    handle = layer.consumer.register_forward_pre_hook(lambda m, i: inputs.append(i[0]))
    with torch.no_grad():
        for pyramid in batches:
            model(pyramid[0])
    handle.remove()
    return inputs


def test_layer_moments_give_the_exact_reconstruction_gradient_and_mse() -> None:
    model, _ = _tiny()
    batches = [_pyramid(seed=1), _pyramid(n=3, seed=2)]
    for index in (0, 3, 5):  # down, RCAB, upsampler
        layer = searched_layers(model)[index]
        targets = [t + torch.randn_like(t) for t in teacher_features(model, layer, batches)]
        moments = collect_moments(model, layer, targets, batches)
        weight = torch.randn_like(layer.consumer.weight)
        grads, mses = [], []
        for x, target in zip(_consumer_inputs(model, layer, batches), targets, strict=True):
            w = weight.clone().requires_grad_(True)
            conv = layer.consumer
            out = F.conv2d(x, w, conv.bias, padding=conv.padding)
            loss = F.mse_loss(out, target)
            grads.append(torch.autograd.grad(loss, w)[0])
            mses.append(float(loss.detach()))
        assert torch.allclose(moments.gradient(weight), sum(grads), rtol=1e-3, atol=1e-4)
        assert torch.allclose(moments.gradient(weight, 1), grads[1], rtol=1e-3, atol=1e-4)
        assert math.isclose(moments.mse(weight), sum(mses) / 2, rel_tol=1e-4)


def test_first_greedy_gradient_matches_autograd_by_hand() -> None:
    """The score of every unit at the first step equals an autograd computation of the loss."""
    model, duals = _tiny()
    batch = _pyramid(seed=5)
    gamma, lam, index = 0.7, 0.1, 3  # an RCAB layer
    # by hand: teacher output of the consumer; student = model with that consumer's weight zeroed
    teacher_layer = searched_layers(model)[index]
    feats = {}
    handle = teacher_layer.consumer.register_forward_hook(lambda m, i, o: feats.update(t=o))
    with torch.no_grad():
        model(batch[0])
    handle.remove()
    student = dualsr.DRN(4, 4, 1)
    student.load_state_dict(model.state_dict())
    layer = searched_layers(student)[index]
    with torch.no_grad():
        layer.consumer.weight.zero_()
    handle = layer.consumer.register_forward_hook(lambda m, i, o: feats.update(s=o))
    outputs = student(batch[0])
    handle.remove()
    primal = sum(F.l1_loss(o, t) for o, t in zip(outputs, batch, strict=True))
    dual = sum(F.l1_loss(d(outputs[i + 1]), batch[i]) for i, d in enumerate(duals))
    loss = F.mse_loss(feats["s"], feats["t"]) + gamma * (primal + lam * dual)
    (expected,) = torch.autograd.grad(loss, layer.consumer.weight)

    # the pruner's own gradient pass
    work = dualsr.DRN(4, 4, 1).eval().requires_grad_(False)
    work.load_state_dict(model.state_dict())
    wlayer = searched_layers(work)[index]
    with torch.no_grad():
        wlayer.consumer.weight.zero_()
    wlayer.consumer.weight.requires_grad_(True)
    targets = teacher_features(model, searched_layers(model)[index], [batch])
    with LayerObjective(work, wlayer, duals, gamma, lam) as objective:
        grad, _ = accumulate_gradient(objective, [batch], targets)
    assert torch.allclose(grad, expected, rtol=1e-4, atol=1e-6)


def test_pruned_drn_s30_has_the_official_layout_and_loads(tmp_path: Path) -> None:
    official = json.loads((FIXTURES / "official_keys.json").read_text())["DRN-S30_x4"]
    model = dualsr.create_model("drn-s-x4")
    result = prune_model(model, None, official["channel_config"], None, method="l1")
    assert [[k, list(v.shape)] for k, v in result.model.state_dict().items()] == official["primal"]
    path = dualsr.save_model(tmp_path / "s30.safetensors", result.model)
    loaded = dualsr.load_model(path)
    x = torch.rand(1, 3, 6, 6) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x)[-1], result.model.eval()(x)[-1])


def test_user_errors_are_clear() -> None:
    model, duals = _tiny()
    config = _half(model)
    batches = [_pyramid()]
    with pytest.raises(ConfigError, match="5 entries.*6 searched layers"):
        prune_model(model, duals, config[:-1], batches)
    with pytest.raises(ConfigError, match=r"line 2 \(down.1\) asks for 9 channels.*1..8"):
        prune_model(model, duals, [2, 9, 8, 8, 8, 8], batches)
    with pytest.raises(ConfigError, match="unknown pruning method"):
        prune_model(model, duals, config, batches, method="random")
    with pytest.raises(DualSRError, match="no pruning data"):
        prune_model(model, duals, config, [], method="cp")
    with pytest.raises(DualSRError, match="dual models"):
        prune_model(model, None, config, batches, method="drc")
    with pytest.raises(DualSRError, match="pyramid levels"):
        prune_model(model, duals, config, [batches[0][1:]], method="dcp")
    with pytest.raises(ConfigError, match="per pass"):
        prune_model(model, duals, config, batches, channels_per_pass=0)
    with pytest.raises(ConfigError, match="greedy"):
        prune_model(model, duals, config, batches, greedy="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="thinet_error must be one of: abs, squared"):
        prune_model(model, duals, config, batches, method="thinet", thinet_error="cube")
    with pytest.raises(ConfigError, match="thinet_targets must be one of: pruned, original"):
        prune_model(model, duals, config, batches, method="thinet", thinet_targets="teacher")
    with pytest.raises(ConfigError, match="cp_design must be one of: all, sampled"):
        prune_model(model, duals, config, batches, method="cp", cp_design="every")


def test_feature_stats_reproduce_the_consumer_output() -> None:
    """Sampled patches times the consumer weight give the consumer output at those positions."""
    model, _ = _tiny()
    batches = [_pyramid(seed=1), _pyramid(seed=2)]
    gen = torch.Generator().manual_seed(0)
    for layer in searched_layers(model):
        targets = teacher_features(model, layer, batches)
        stats = collect_feature_stats(model, layer, layer, targets, batches, 64, gen)
        pred = stats.patches.flatten(1) @ layer.consumer.weight.detach().flatten(1).T
        assert torch.allclose(pred, stats.targets, rtol=1e-4, atol=1e-3), layer.name
        # each sample's contributions add up to its sampled output
        assert torch.allclose(
            stats.contributions().sum(1), stats.sampled_targets(), rtol=1e-4, atol=1e-3
        )


def _at(
    outputs: list[torch.Tensor], positions: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """The consumer outputs (bias subtracted) at sampled (batch, image, y, x) positions."""
    t = torch.stack([outputs[b][n, :, y, x] for b, n, y, x in positions.tolist()])
    return t - bias.detach() if bias is not None else t


@pytest.mark.parametrize("targets", ["pruned", "original"])
def test_thinet_targets_come_from_the_network_being_pruned(
    monkeypatch: pytest.MonkeyPatch, targets: str
) -> None:
    model, duals = _tiny()
    config = model.channel_widths()
    config[0] //= 2  # down.0 pruned first, then down.1 (its input now differs from the teacher's)
    config[1] //= 2
    batches = [_pyramid(seed=1), _pyramid(seed=2)]
    seen = []
    collect = prune.collect_feature_stats

    def spy(
        work: dualsr.DRN, layer: SearchedLayer, source: SearchedLayer, outputs: list, *args: object
    ) -> FeatureStats:
        own = teacher_features(work, layer, batches)  # the network being pruned, right now
        stats = collect(work, layer, source, outputs, *args)
        seen.append((layer.index, stats, own))
        return stats

    monkeypatch.setattr(feature_based, "collect_feature_stats", spy)
    opts = PruneOptions(method="thinet", thinet_targets=targets)
    result = prune_masked(model, duals, config, batches, opts)
    assert [index for index, _, _ in seen] == [0, 1]
    for index, stats, own in seen:
        tlayer = searched_layers(model)[index]
        teacher = teacher_features(model, tlayer, batches)
        assert stats.positions is not None
        from_teacher = _at(teacher, stats.positions, tlayer.consumer.bias)
        from_work = _at(own, stats.positions, tlayer.consumer.bias)
        expected = from_work if targets == "pruned" else from_teacher
        assert torch.allclose(stats.targets, expected, atol=1e-5)
        if index == 0:  # nothing pruned before the first layer: both are the same
            assert torch.allclose(from_work, from_teacher, atol=1e-4)
        else:
            assert not torch.allclose(from_work, from_teacher, atol=1e-2)
        if targets == "pruned":  # the work network's conv on the sampled input patches
            pred = stats.patches.flatten(1) @ stats.weight.flatten(1).T
            assert torch.allclose(pred, stats.targets, rtol=1e-4, atol=1e-3)
    # pruned targets come from a truncated pass of the network being pruned, not the teacher's
    passes = (result.stats.teacher_passes, result.stats.feature_passes)
    assert passes == ((0, 4) if targets == "pruned" else (2, 2))


def test_thinet_local_sgd_moves_the_kept_weights_and_counts_its_passes() -> None:
    model, duals = _tiny()
    config = model.channel_widths()
    config[3] //= 2  # one RCAB (its consumer has a bias); the other layers stay full
    batches = [_pyramid(seed=1), _pyramid(seed=2)]

    def run(epochs: int, duals: dualsr.DualModels | None = duals, **kw: float) -> prune.PruneResult:
        opts = PruneOptions(method="thinet", local_epochs=epochs, local_lr=1e-2, **kw)
        return prune_masked(model, duals, config, batches, opts)

    plain, tuned = run(0), run(1)
    keep = plain.keep[3]
    assert tuned.keep == plain.keep and len(keep) == config[3]
    assert (plain.stats.local_passes, tuned.stats.local_passes) == (0, 1)
    assert tuned.stats.layers[3].local_passes == 1 and tuned.stats.passes == 1
    orig = searched_layers(model)[3].consumer
    a, b = searched_layers(plain.model)[3].consumer, searched_layers(tuned.model)[3].consumer
    dropped = [j for j in range(orig.in_channels) if j not in keep]
    # without local SGD: each kept slice is the pretrained one times its scale, bias untouched
    w = orig.weight[:, keep]
    scales = (a.weight[:, keep] * w).sum((0, 2, 3)) / w.pow(2).sum((0, 2, 3))
    assert torch.allclose(a.weight[:, keep], w * scales.view(1, -1, 1, 1), atol=1e-6)
    assert torch.equal(a.bias, orig.bias)
    # with it: the kept slices and the bias move, the removed slices stay zero
    assert (b.weight[:, keep] - a.weight[:, keep]).abs().max() > 1e-4
    assert (b.bias - a.bias).abs().max() > 1e-4
    assert not a.weight[:, dropped].any() and not b.weight[:, dropped].any()
    # the SR loss has the dual term when the duals are given (and dual_weight > 0)
    primal_only = searched_layers(run(1, None).model)[3].consumer
    assert (primal_only.weight - b.weight).abs().max() > 1e-6
    no_dual = searched_layers(run(1, dual_weight=0.0).model)[3].consumer
    assert torch.equal(no_dual.weight, primal_only.weight)
    # --no-local-bias keeps the bias
    assert torch.equal(searched_layers(run(1, local_bias=False).model)[3].consumer.bias, orig.bias)


def test_thinet_local_sgd_is_the_released_update_of_pruned_weight_with_beta_fixed() -> None:
    """The released finetune_params steps ``pruned_weight`` (and the bias) of a MaskConv2d whose
    weight is ``pruned_weight * beta``, beta held fixed; ours steps the effective weight with
    the gradient scaled by beta^2: the same trajectory."""
    from torch.nn.utils import parametrize

    model, duals = _tiny()
    config = model.channel_widths()
    config[3] //= 2
    batches = [_pyramid(seed=1), _pyramid(seed=2)]
    lr = 1e-2  # large enough for the moves to stand well above float32 rounding
    opts = {"method": "thinet", "local_lr": lr}
    plain = prune_masked(model, duals, config, batches, PruneOptions(local_epochs=0, **opts))
    tuned = prune_masked(model, duals, config, batches, PruneOptions(local_epochs=1, **opts))
    keep = plain.keep[3]
    orig = searched_layers(model)[3].consumer.weight.detach().clone()
    selected = searched_layers(plain.model)[3].consumer.weight.detach().clone()
    mask = torch.zeros(orig.shape[1])
    mask[keep] = 1
    beta = (selected * orig).sum((0, 2, 3)) / orig.pow(2).sum((0, 2, 3)) * mask
    assert (beta[keep] - 1).abs().max() > 0.05  # the scales matter

    class Scaled(torch.nn.Module):
        def forward(self, pruned_weight: torch.Tensor) -> torch.Tensor:
            return pruned_weight * beta.view(1, -1, 1, 1)

    # the reference: the released MaskConv2d formulation on the network after the selection
    work = plain.model
    layer = searched_layers(work)[3]
    conv = layer.consumer
    parametrize.register_parametrization(conv, "weight", Scaled())
    pruned_weight = conv.parametrizations.weight.original
    with torch.no_grad():
        pruned_weight.copy_(orig * mask.view(1, -1, 1, 1))
    pruned_weight.requires_grad_(True)
    conv.bias.requires_grad_(True)
    sgd = torch.optim.SGD([pruned_weight, conv.bias], lr=lr, momentum=0.9, nesterov=True)
    targets = teacher_features(model, searched_layers(model)[3], batches)
    with LayerObjective(work, layer, duals, gamma=1.0, dual_weight=0.1, mse_weight=0.0) as obj:
        for pyramid, target in zip(batches, targets, strict=True):
            sgd.zero_grad()
            loss, _ = obj(pyramid, target)
            loss.backward()
            pruned_weight.grad.mul_(mask.view(1, -1, 1, 1))
            sgd.step()
    ours = searched_layers(tuned.model)[3].consumer
    with torch.no_grad():
        moved = ours.weight - selected
        assert moved.abs().max() > 1e-4
        assert torch.allclose(conv.weight - selected, moved, rtol=1e-3, atol=1e-6)
        assert torch.allclose(conv.bias, ours.bias, rtol=1e-5, atol=1e-6)


def test_the_greedy_names_stay_importable_from_prune() -> None:
    for name in (
        "LayerObjective",
        "LayerMoments",
        "accumulate_gradient",
        "local_sgd",
        "batch_gradients",
        "collect_moments",
        "DEFAULT_GREEDY",
        "DEFAULT_CHANNELS_PER_PASS",
        "LOCAL_LR",
        "LOCAL_MOMENTUM",
    ):
        assert getattr(prune, name) is getattr(greedy, name), name
    assert set(prune.__all__) <= set(dir(prune))


def _greedy_setup(index: int = 3) -> tuple:
    model, duals = _tiny()
    work = dualsr.DRN(4, 4, 1).eval().requires_grad_(False)
    work.load_state_dict(model.state_dict())
    batches = [_pyramid(seed=1), _pyramid(seed=2)]
    layer = searched_layers(work)[index]
    targets = teacher_features(model, searched_layers(model)[index], batches)
    pretrained = searched_layers(model)[index].consumer.weight.detach()
    return work, duals, layer, pretrained, batches, targets


@pytest.mark.parametrize("variant", ["passes", "moments"])
def test_select_greedy_keeps_warm_started_slices_and_counts_its_passes(variant: str) -> None:
    work, duals, layer, pretrained, batches, targets = _greedy_setup()
    opts = PruneOptions(greedy=variant, channels_per_pass=3, local_epochs=0, final_epochs=0)
    keep, cost = greedy.select_greedy(
        work, layer, pretrained, duals, 5, batches, targets, get_criterion("drc"), opts
    )
    assert len(keep) == 5 and keep == sorted(keep)
    w = layer.consumer.weight
    assert not w.requires_grad and w.grad is None
    assert torch.equal(w[:, keep], pretrained[:, keep])  # no local SGD: the warm start only
    assert not w[:, [j for j in range(layer.width) if j not in keep]].any()
    assert cost.local_passes == 0 and cost.loss is not None
    if variant == "passes":  # steps of 3 and 2 units, one gradient pass each
        assert (cost.gradient_passes, cost.moment_passes) == (2, 0)
    else:  # one SR-gradient pass and one moments pass for the layer
        assert (cost.gradient_passes, cost.moment_passes) == (1, 1)


@pytest.mark.parametrize("variant", ["passes", "moments"])
def test_select_greedy_freezes_the_weight_again_when_it_fails(variant: str) -> None:
    work, duals, layer, pretrained, batches, targets = _greedy_setup()

    class Broken(DRC):
        def scores(self, grad: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("scoring failed")

    criterion = Broken()
    with pytest.raises(RuntimeError, match="scoring failed"):
        greedy.select_greedy(
            work,
            layer,
            pretrained,
            duals,
            2,
            batches,
            targets,
            criterion,
            PruneOptions(greedy=variant),
        )
    w = layer.consumer.weight
    assert not w.requires_grad and w.grad is None
    assert not w.any()  # zeroed at the start, nothing selected
    # the objectives' and the moments' hooks are gone
    assert not layer.consumer._forward_hooks and not layer.consumer._forward_pre_hooks


# ----------------------------------------------------------------------------------------------
# The released code's defaults: channel score, bias in the local SGD, floor(C * rate)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["passes", "moments"])
@pytest.mark.parametrize("score", ["official", "dcp-paper"])
def test_select_greedy_scores_with_the_chosen_rule(variant: str, score: str) -> None:
    work, duals, layer, pretrained, batches, targets = _greedy_setup()
    seen: list[str] = []

    class Spy(DRC):  # records the score rule
        def scores(self, grad: torch.Tensor) -> torch.Tensor:
            seen.append(self.score)
            return super().scores(grad)

    opts = PruneOptions(greedy=variant, score=score, local_epochs=0, final_epochs=0)
    criterion = Spy.from_options(opts)  # the score rule from the options, as the pruning loop
    keep, _ = greedy.select_greedy(
        work, layer, pretrained, duals, 3, batches, targets, criterion, opts
    )
    assert seen == [score] * 3 and len(keep) == 3
    assert PruneOptions().score == "official" and PruneOptions().local_bias is True
    with pytest.raises(ConfigError, match="unknown gradient score"):
        PruneOptions(score="frobenius").check()


def test_the_official_score_can_select_other_channels_than_the_dcp_paper_score() -> None:
    """On the tiny model the two rules disagree somewhere, so the option matters."""
    model, duals = _tiny()
    config = _half(model)
    batches = [_pyramid(seed=1), _pyramid(seed=2)]
    official = prune_masked(model, duals, config, batches, PruneOptions(greedy="passes"))
    paper = prune_masked(
        model, duals, config, batches, PruneOptions(greedy="passes", score="dcp-paper")
    )
    assert official.keep != paper.keep


@pytest.mark.parametrize("score", ["official", "dcp-paper"])
def test_moments_greedy_reproduces_the_paper_loop_with_the_bias_update(score: str) -> None:
    """gamma = 0: the moments greedy (bias included) equals the paper loop for both scores."""
    model, duals = _tiny()
    config = _half(model)
    batches = [_pyramid(seed=1), _pyramid(seed=2)]
    paper = PruneOptions(greedy="passes", gamma=0.0, score=score)
    moments = PruneOptions(greedy="moments", gamma=0.0, final_epochs=0, score=score)
    a = prune_masked(model, duals, config, batches, paper)
    b = prune_masked(model, duals, config, batches, moments)
    assert a.keep == b.keep
    biased = [
        i for i, layer in enumerate(searched_layers(model)) if layer.consumer.bias is not None
    ]
    assert biased  # RCAB and upsampler consumers have a bias
    for i in biased:
        b0 = searched_layers(model)[i].consumer.bias
        da = searched_layers(a.model)[i].consumer.bias - b0
        db = searched_layers(b.model)[i].consumer.bias - b0
        assert da.abs().max() > 0  # the local SGD moved the bias
        assert torch.allclose(da, db, rtol=1e-3, atol=1e-9), i


def _recon_mse(work: dualsr.DRN, layer: SearchedLayer, batches: list, targets: list) -> float:
    """Mean over batches of MSE(layer's consumer output in ``work``, original output)."""
    outputs = teacher_features(work, layer, batches)
    return sum(float(F.mse_loss(o, t)) for o, t in zip(outputs, targets, strict=True)) / len(
        outputs
    )


def test_local_sgd_updates_the_bias_and_lowers_the_reconstruction_loss() -> None:
    work, duals, layer, pretrained, batches, targets = _greedy_setup()
    conv = layer.consumer
    selected = torch.zeros(layer.width, dtype=torch.bool)
    selected[[1, 4, 6]] = True
    with torch.no_grad():  # the state after three selection steps without local SGD
        conv.weight.zero_()
        conv.weight[:, selected] = pretrained[:, selected]
    start = {k: v.clone() for k, v in work.state_dict().items()}
    before = _recon_mse(work, layer, batches, targets)
    losses = {}
    for with_bias in (True, False):
        work.load_state_dict(start)
        bias0 = conv.bias.detach().clone()
        conv.weight.requires_grad_(True)
        with LayerObjective(work, layer, duals, 1.0, 0.1) as objective:
            greedy.local_sgd(objective, batches, targets, selected, epochs=2, bias=with_bias)
        conv.weight.requires_grad_(False)
        assert not conv.bias.requires_grad and conv.bias.grad is None
        assert (conv.bias != bias0).any() == with_bias
        assert not conv.weight[:, ~selected].any()  # unselected slices stay zero
        losses[with_bias] = _recon_mse(work, layer, batches, targets)
    assert losses[True] <= losses[False] <= before


@pytest.mark.parametrize("variant", ["passes", "moments"])
@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_greedy_bias_update_changes_the_bias_and_not_the_choice(variant: str, gamma: float) -> None:
    """The default (bias updated) vs --no-local-bias on a layer: same channels, a moved bias,
    and a reconstruction loss on the pruning data no worse than without the bias update."""
    results = {}
    for local_bias in (True, False):
        work, duals, layer, pretrained, batches, targets = _greedy_setup()
        bias0 = layer.consumer.bias.detach().clone()
        opts = PruneOptions(greedy=variant, gamma=gamma, local_bias=local_bias)
        keep, _ = greedy.select_greedy(
            work, layer, pretrained, duals, 5, batches, targets, get_criterion("drc"), opts
        )
        moved = float((layer.consumer.bias - bias0).abs().max())
        results[local_bias] = (keep, moved, _recon_mse(work, layer, batches, targets))
        assert not layer.consumer.bias.requires_grad and layer.consumer.bias.grad is None
    assert results[True][0] == results[False][0]
    assert results[True][1] > 0 and results[False][1] == 0
    assert results[True][2] <= results[False][2]


def test_layer_moments_are_exact_with_a_moved_bias() -> None:
    model, _ = _tiny()
    batches = [_pyramid(seed=1), _pyramid(n=3, seed=2)]
    layer = searched_layers(model)[3]  # an RCAB consumer (has a bias)
    conv = layer.consumer
    targets = [t + torch.randn_like(t) for t in teacher_features(model, layer, batches)]
    moments = collect_moments(model, layer, targets, batches)
    weight = torch.randn_like(conv.weight)
    bias = conv.bias.detach() + torch.randn_like(conv.bias)
    grads, bias_grads, mses = [], [], []
    for x, target in zip(_consumer_inputs(model, layer, batches), targets, strict=True):
        w = weight.clone().requires_grad_(True)
        b = bias.clone().requires_grad_(True)
        loss = F.mse_loss(F.conv2d(x, w, b, padding=conv.padding), target)
        gw, gb = torch.autograd.grad(loss, (w, b))
        grads.append(gw)
        bias_grads.append(gb)
        mses.append(float(loss.detach()))
    assert torch.allclose(moments.gradient(weight, bias=bias), sum(grads), rtol=1e-3, atol=1e-4)
    assert torch.allclose(moments.gradient(weight, 1, bias), grads[1], rtol=1e-3, atol=1e-4)
    assert torch.allclose(
        moments.bias_gradient(weight, bias), sum(bias_grads), rtol=1e-3, atol=1e-5
    )
    assert torch.allclose(
        moments.bias_gradient(weight, bias, 0), bias_grads[0], rtol=1e-3, atol=1e-5
    )
    assert math.isclose(moments.mse(weight, bias), sum(mses) / 2, rel_tol=1e-4)
    # without a bias argument: the bias the consumer had when the moments were collected
    assert torch.allclose(moments.gradient(weight), moments.gradient(weight, bias=conv.bias))


def test_prune_cli_records_score_bias_and_rate_rounding(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    from dualsr.cli import main
    from dualsr.data.image_io import write_image

    from .conftest import random_image

    # a rate without a configuration: C - floor(C * rate) per layer by default
    out = tmp_path / "u.safetensors"
    base = ["prune", "-m", str(tiny_checkpoint)]
    assert main([*base, "--rate", "0.3", "--method", "uniform", "-o", str(out)]) == 0
    meta = dualsr.load_checkpoint(out).metadata
    widths = dualsr.load_model(tiny_checkpoint).channel_widths()  # [4, 8, 16, 16, 16, 16]
    assert meta["rate_rounding"] == "floor" and meta["score"] == "official" and meta["local_bias"]
    assert meta["channel_config"] == [w - math.floor(w * 0.3) for w in widths]
    assert dualsr.load_model(out).channel_widths() == [3, 6, 12, 12, 12, 12]

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        write_image(data / f"{i}.png", random_image(20, 20, seed=i))
    config = tmp_path / "config.txt"
    config.write_text("2\n4\n8\n8\n8\n8\n")
    out = tmp_path / "d.safetensors"
    args = [*base, "--config", str(config), "--method", "dcp", "--data", str(data)]
    extra = ["--images", "2", "--patch-size", "16", "--batch-size", "2"]
    assert main([*args, *extra, "--score", "dcp-paper", "--no-local-bias", "-o", str(out)]) == 0
    meta = dualsr.load_checkpoint(out).metadata
    assert meta["score"] == "dcp-paper" and meta["local_bias"] is False
    assert meta["rate_rounding"] is None and meta["channel_config"] == [2, 4, 8, 8, 8, 8]


def test_prune_cli_records_thinet_and_cp_options(
    tmp_path: Path, tiny_checkpoint: Path, train_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    from dualsr.cli import main

    base = ["prune", "-m", str(tiny_checkpoint), "--rate", "0.5", "--data", str(train_folder)]
    base += ["--images", "2", "--patch-size", "16", "--batch-size", "2"]
    out = tmp_path / "t.safetensors"
    assert main([*base, "--method", "thinet", "-o", str(out)]) == 0
    meta = dualsr.load_checkpoint(out).metadata
    # the defaults follow the released code; the local SGD epoch of each pruned layer is counted
    assert (meta["thinet_error"], meta["thinet_targets"], meta["cp_design"]) == (
        "abs",
        "pruned",
        "all",
    )
    assert meta["local_passes"] == meta["passes"] == len(meta["channel_config"])
    out = tmp_path / "t2.safetensors"
    extra = ["--thinet-error", "squared", "--thinet-targets", "original", "--local-epochs", "0"]
    assert main([*base, "--method", "thinet", *extra, "-o", str(out)]) == 0
    meta = dualsr.load_checkpoint(out).metadata
    assert (meta["thinet_error"], meta["thinet_targets"]) == ("squared", "original")
    assert meta["passes"] == 0
    out = tmp_path / "c.safetensors"
    assert main([*base, "--method", "cp", "--cp-design", "sampled", "-o", str(out)]) == 0
    assert dualsr.load_checkpoint(out).metadata["cp_design"] == "sampled"
    capsys.readouterr()

    cases = [
        (["--thinet-error", "cube"], "--thinet-error must be one of: abs, squared (got 'cube')"),
        (["--thinet-targets", "teacher"], "--thinet-targets must be one of: pruned, original"),
        (["--cp-design", "every"], "--cp-design must be one of: all, sampled (got 'every')"),
    ]
    for extra, message in cases:
        assert main([*base, "--method", "thinet", *extra, "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_greedy_vs_official_experiment_runs_on_a_tiny_model(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """experiments/greedy_vs_official.py end to end: tiny model, synthetic images, seconds."""
    from experiments import greedy_vs_official as script

    from dualsr.data.image_io import write_image

    from .conftest import random_image

    model, duals = _tiny()
    ckpt = dualsr.save_model(tmp_path / "tiny.safetensors", model, duals)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        write_image(data / f"{i}.png", random_image(24, 24, seed=i))
    out = tmp_path / "cmp.json"
    args = ["--model", str(ckpt), "--data", str(data), "--rate", "0.5", "--images", "4"]
    args += ["--patch-size", "16", "--batch-size", "2", "--out", str(out)]
    assert script.main(args) == 0
    assert "identical selections in" in capsys.readouterr().out
    result = json.loads(out.read_text())
    rows = result["layers"]
    assert [r["kept"] for r in rows] == result["channel_config"] == [2, 4, 8, 8, 8, 8]
    for row in rows:
        assert not row["skipped"] and len(row["official"]) == len(row["moments"]) == row["kept"]
        assert row["overlap"] == len(set(row["official"]) & set(row["moments"]))
        assert row["same"] == (row["official"] == row["moments"])
    assert result["summary"]["compared"] == 6 and result["settings"]["gamma"] == 1.0
    # the official loop's selection of the first layer is what prune_model's loop picks
    batches = script.pruning_batches([str(data)], 4, 4, 16, 2, 0)
    ref = prune_masked(model, duals, [2, 8, 16, 16, 16, 16], batches, PruneOptions(greedy="passes"))
    assert rows[0]["official"] == ref.keep[0]


def test_prune_cli_reports_progress_with_an_eta_and_no_escape_codes_off_a_terminal(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    from dualsr.cli import main

    out = tmp_path / "u.safetensors"
    args = ["prune", "-m", str(tiny_checkpoint), "--rate", "0.5", "--method", "l1", "-o", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    layers = [ln for ln in captured.out.splitlines() if ln.startswith("layer")]
    assert len(layers) == 6  # the tiny model's searched layers
    for i, line in enumerate(layers, 1):
        assert f"[{i}/6, eta " in line, line
    assert "\r" not in captured.err + captured.out and "\x1b" not in captured.err + captured.out


def test_prune_progress_draws_one_bar_on_a_terminal(capsys: pytest.CaptureFixture) -> None:
    import io

    from dualsr.cli.prune import LayerProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    with LayerProgress(3, file=screen) as progress:
        for i in range(3):
            progress(prune.LayerReport(i, f"body.{i}", 16, 8, seconds=0.1))
    drawn = screen.getvalue()
    assert "prune" in drawn and "3/3" in drawn and "layer" in drawn
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[:2] for ln in lines] == [["layer", "0"], ["layer", "1"], ["layer", "2"]]
    assert all("eta" not in ln for ln in lines)  # the bar shows it


# ----------------------------------------------------------------------------------------------
# Criteria are an extension point: a new one is a class, registered, and the loop runs it
# ----------------------------------------------------------------------------------------------
@dataclass
class ReversedL1(Criterion):
    """A test criterion with an option: keeps the units of the *smallest* L1 norm."""

    name = "reversed-l1"
    description = "the smallest L1 norms (a test criterion)"
    needs = "weights"

    source: str = "producer"  # an option: whose weights are measured (l1_scores' source)

    def select(self, context: LayerContext, n_keep: int) -> list[int]:
        return top_units(-l1_scores(context.layer, self.source), n_keep)  # type: ignore[arg-type]


@dataclass
class ActivationMean(Criterion):
    """A test criterion that reads pruning data: keeps the units of the largest mean absolute
    consumer input on one pass."""

    name = "activation-mean"
    description = "the largest mean |input| (a test criterion)"
    needs = "features"

    def select(self, context: LayerContext, n_keep: int) -> list[int]:
        batches, _ = context.feed(None).next_pass()
        conv = context.layer.consumer
        total = sum(
            x.abs().mean(dim=(0, 2, 3)) for x in consumer_inputs(context.model, conv, batches)
        )
        context.feature_passes += 1
        return top_units(total, n_keep)


@pytest.fixture
def reversed_l1() -> Iterator[type[ReversedL1]]:
    register_criterion(ReversedL1)
    try:
        yield ReversedL1
    finally:
        del CRITERIA[ReversedL1.name]


def test_a_registered_criterion_class_prunes_by_name_with_options_and_from_the_cli(
    reversed_l1: type[ReversedL1],
    tmp_path: Path,
    tiny_checkpoint: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    from dualsr.cli import main

    model, _ = _tiny()
    config = _half(model)
    layers = searched_layers(model)
    smallest = [top_units(-l1_scores(layer), n) for layer, n in zip(layers, config, strict=True)]
    by_consumer = [
        top_units(-l1_scores(layer, "consumer"), n) for layer, n in zip(layers, config, strict=True)
    ]
    assert smallest != by_consumer  # the option matters on this model
    # by name (no data: needs="weights"), and as an instance with its option
    result = prune_model(model, None, config, None, method="reversed-l1")
    assert result.keep == smallest and result.model.channel_widths() == config
    assert result.stats.method == "reversed-l1" and result.stats.data_draws == 0
    assert get_criterion("Reversed-L1", source="consumer") == ReversedL1(source="consumer")
    result = prune_model(model, None, config, None, method=ReversedL1(source="consumer"))
    assert result.keep == by_consumer
    # the CLI lists it and runs it
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    assert "reversed-l1" in capsys.readouterr().out
    out = tmp_path / "r.safetensors"
    args = ["prune", "-m", str(tiny_checkpoint), "--rate", "0.5", "--method", "reversed-l1"]
    assert main([*args, "-o", str(out)]) == 0
    assert dualsr.load_checkpoint(out).metadata["method"] == "reversed-l1"


def test_a_criterion_that_reads_pruning_data_gets_it_from_its_context() -> None:
    model, duals = _tiny()
    config = _half(model)
    batches = [_pyramid(seed=1), _pyramid(seed=2)]
    result = prune_masked(model, duals, config, batches, PruneOptions(method=ActivationMean()))
    pruned = [
        i for i, (n, w) in enumerate(zip(config, model.channel_widths(), strict=True)) if n < w
    ]
    assert result.stats.feature_passes == len(pruned) and result.stats.data_draws == 1
    assert result.stats.teacher_passes == 0  # feed(None): no targets computed
    # the first layer's choice is computed from the original model's inputs (nothing pruned yet)
    first = searched_layers(model)[0].consumer
    total = sum(x.abs().mean(dim=(0, 2, 3)) for x in consumer_inputs(model, first, batches))
    assert result.keep[0] == top_units(total, config[0])
    with pytest.raises(DualSRError, match="no pruning data"):
        prune_model(model, duals, config, None, method=ActivationMean())
