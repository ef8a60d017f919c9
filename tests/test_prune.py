"""Channel pruning: exactness, the greedy loop's gradients and costs, the official layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import dualsr
from dualsr.compression import greedy, prune
from dualsr.compression.criteria import Criterion, get_criterion
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
    # the default (moments): one SR-gradient pass, one final epoch and one statistics pass a layer
    fast = prune_masked(model, duals, config, batches)
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

    def broken(grad: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("scoring failed")

    criterion = Criterion("broken", "gradients", broken, "raises", dual=True)
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
