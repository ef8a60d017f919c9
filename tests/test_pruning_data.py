"""Pruning data: fixed batches for every pass, or fresh random crops per pass (released code)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dualsr
from dualsr.cli.prune import pruning_batches, pruning_source
from dualsr.compression import greedy
from dualsr.compression.layers import searched_layers
from dualsr.compression.prune import PruneOptions, PruneResult, prune_masked, teacher_features
from dualsr.compression.pruning_data import (
    CropSource,
    FixedBatches,
    FixedFeed,
    PassData,
    as_feed,
    as_pruning_data,
)
from dualsr.errors import DualSRError

from .conftest import random_image
from .test_prune import _half, _pyramid, _tiny


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny convolutions: threads only add overhead on a shared machine


class _Spy:
    """A fresh source: pass ``k`` is two random pyramids seeded by ``k``; records the passes."""

    fresh = True

    def __init__(self) -> None:
        self.asked: list[int] = []

    def batches_for_pass(self, k: int) -> list[list[torch.Tensor]]:
        self.asked.append(k)
        return [_pyramid(seed=100 + 2 * k), _pyramid(seed=101 + 2 * k)]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    from dualsr.data.image_io import write_image

    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"{i}.png", random_image(32 + 4 * i, 36, seed=20 + i))
    return folder


def _same(a: PruneResult, b: PruneResult) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return a.keep == b.keep and all(torch.equal(sa[k], sb[k]) for k in sa)


def _source(folder: Path, fresh: bool, seed: int = 0) -> CropSource:
    return pruning_source([str(folder)], 4, 5, 16, 2, seed, fresh=fresh)


# ----------------------------------------------------------------------------------------------
# Fixed batches: exactly what a plain list of pyramids gives
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "opts",
    [
        PruneOptions(),
        PruneOptions(greedy="passes", local_epochs=2),
        PruneOptions(method="thinet", local_epochs=2),
        PruneOptions(method="cp"),
    ],
    ids=["moments", "passes", "thinet", "cp"],
)
def test_fixed_crops_are_bit_identical_to_a_plain_list(images: Path, opts: PruneOptions) -> None:
    model, duals = _tiny()
    config = _half(model)
    source = _source(images, fresh=False)
    listed = pruning_batches([str(images)], 4, 5, 16, 2, 0)
    assert len(listed) == source.num_batches == 3
    for a, b in zip(source.batches_for_pass(7), listed, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    plain = prune_masked(model, duals, config, listed, opts)
    wrapped = prune_masked(model, duals, config, FixedBatches(listed), opts)
    crops = prune_masked(model, duals, config, source, opts)
    assert _same(plain, wrapped) and _same(plain, crops)
    # the data is loaded once and the targets computed once per pruned layer, as before
    counts = ("gradient_passes", "local_passes", "teacher_passes", "feature_passes", "data_draws")
    for result in (wrapped, crops):
        assert [getattr(result.stats, c) for c in counts] == [
            getattr(plain.stats, c) for c in counts
        ]
    assert plain.stats.data_draws == 1
    pruned = sum(c < w for c, w in zip(config, model.channel_widths(), strict=True))
    if opts.method == "thinet":  # its own targets: a truncated pass of the network being pruned
        assert plain.stats.feature_passes == 2 * pruned and plain.stats.teacher_passes == 0
    else:
        assert plain.stats.teacher_passes == pruned


# ----------------------------------------------------------------------------------------------
# Fresh crops: new data per pass, with its own targets
# ----------------------------------------------------------------------------------------------
def _record_objective(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Record (layer index, LR input, target, mse weight) of every LayerObjective call."""
    calls: list[tuple] = []
    original = greedy.LayerObjective.__call__

    def spy(self: greedy.LayerObjective, pyramid: list, target: torch.Tensor | None) -> tuple:
        calls.append((self.layer.index, pyramid[0].clone(), target, self.mse_weight))
        return original(self, pyramid, target)

    monkeypatch.setattr(greedy.LayerObjective, "__call__", spy)
    return calls


def _check_targets(model: dualsr.DRN, calls: list[tuple]) -> None:
    """Each call's target is the original model's consumer output for that call's batch."""
    layers = searched_layers(model)
    for index, lr, target, mse_weight in calls:
        if target is None:
            assert mse_weight == 0  # SR-only passes
            continue
        expected = teacher_features(model, layers[index], [[lr]])[0]
        assert torch.equal(target, expected), index


def test_fresh_passes_greedy_draws_new_crops_for_every_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, duals = _tiny()
    config = _half(model)
    calls = _record_objective(monkeypatch)
    spy = _Spy()
    opts = PruneOptions(greedy="passes", local_epochs=2)
    result = prune_masked(model, duals, config, spy, opts)
    s = result.stats
    # one gradient pass and two local-SGD epochs per kept unit, each on its own draw
    assert s.gradient_passes == sum(config) and s.local_passes == 2 * sum(config)
    assert s.data_draws == s.passes == 3 * sum(config) == len(spy.asked)
    assert spy.asked == list(range(s.data_draws))  # numbered passes: deterministic given k
    assert s.teacher_passes == s.data_draws  # the targets of every draw, computed once
    # every pass (2 batches a pass) saw different inputs, and the targets of those inputs
    assert len(calls) == 2 * s.passes
    firsts = [calls[i][1] for i in range(0, len(calls), 2)]
    assert all(not torch.equal(a, b) for a, b in zip(firsts, firsts[1:], strict=False))
    _check_targets(model, calls)
    # the same source read once (fixed) gives other weights
    fixed = prune_masked(model, duals, config, spy.batches_for_pass(0), opts)
    assert not _same(result, fixed)
    assert fixed.stats.passes == s.passes and fixed.stats.data_draws == 1


def test_fresh_moments_greedy_draws_once_per_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    model, duals = _tiny()
    config = _half(model)
    calls = _record_objective(monkeypatch)
    spy = _Spy()
    result = prune_masked(
        model, duals, config, spy, PruneOptions(greedy="moments", refresh=2, final_epochs=2)
    )
    s = result.stats
    pruned = [
        i for i, (c, w) in enumerate(zip(config, model.channel_widths(), strict=True)) if c < w
    ]
    assert s.data_draws == s.teacher_passes == len(pruned) == len(spy.asked)
    # within a layer (SR-gradient passes, refreshes, final epochs) the inputs are the layer's draw
    for n, index in enumerate(pruned):
        inputs = [lr for i, lr, _, _ in calls if i == index]
        assert len(inputs) > 2
        draw = spy.batches_for_pass(n)
        assert all(any(torch.equal(x, p[0]) for p in draw) for x in inputs)
    _check_targets(model, calls)
    fixed = prune_masked(
        model, duals, config, spy.batches_for_pass(0), PruneOptions(greedy="moments", refresh=2)
    )
    assert not _same(result, fixed)


def test_fresh_thinet_draws_for_its_statistics_and_each_local_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, duals = _tiny()
    config = _half(model)
    calls = _record_objective(monkeypatch)
    spy = _Spy()
    result = prune_masked(model, duals, config, spy, PruneOptions(method="thinet", local_epochs=2))
    s = result.stats
    layers = sum(c < w for c, w in zip(config, model.channel_widths(), strict=True))
    assert s.data_draws == 3 * layers and s.local_passes == 2 * layers
    assert s.feature_passes == 2 * layers  # its own targets and the statistics, one draw
    assert all(target is None for _, _, target, _ in calls)  # the SR loss alone needs none
    firsts = [calls[i][1] for i in range(0, len(calls), 2)]
    assert all(not torch.equal(a, b) for a, b in zip(firsts, firsts[1:], strict=False))
    cp = prune_masked(model, duals, config, _Spy(), PruneOptions(method="cp"))
    assert cp.stats.data_draws == cp.stats.teacher_passes == layers


def test_fresh_crops_are_reproducible_and_depend_on_the_seed(images: Path) -> None:
    model, duals = _tiny()
    config = _half(model)
    source = _source(images, fresh=True)
    pass0, pass1 = source.batches_for_pass(0), source.batches_for_pass(1)
    # pass 0 is the fixed crops; later passes cut other crops of the same images
    fixed = pruning_batches([str(images)], 4, 5, 16, 2, 0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(pass0, fixed, strict=True))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(pass0, pass1, strict=True))
    assert [len(p[0]) for p in pass1] == [2, 2, 1] and pass1[0][-1].shape[-1] == 16
    again = _source(images, fresh=True).batches_for_pass(1)
    assert all(torch.equal(a[-1], b[-1]) for a, b in zip(pass1, again, strict=True))
    other = _source(images, fresh=True, seed=1).batches_for_pass(1)
    assert not all(torch.equal(a[-1], b[-1]) for a, b in zip(pass1, other, strict=True))
    # no crop repeats across passes, with images recurring within a pass (5 crops, 3 images)
    keys = [key[2:] for k in range(4) for key in source.keys(k)]
    assert len(set(keys)) == len(keys) == 20

    opts = PruneOptions(greedy="passes", channels_per_pass=2)
    a = prune_masked(model, duals, config, _source(images, fresh=True), opts)
    b = prune_masked(model, duals, config, _source(images, fresh=True), opts)
    c = prune_masked(model, duals, config, _source(images, fresh=True, seed=1), opts)
    assert _same(a, b) and not _same(a, c)
    assert a.stats.data_draws == a.stats.passes > 1


def test_pass_data_checks_every_draw_and_feeds_wrap_lists() -> None:
    model, duals = _tiny()

    class Broken(_Spy):
        def batches_for_pass(self, k: int) -> list[list[torch.Tensor]]:
            batches = super().batches_for_pass(k)
            return batches if k == 0 else [batches[0][:-1]]  # pass 1 lacks its HR level

    with pytest.raises(DualSRError, match="pruning batch 0 has 2 pyramid levels"):
        prune_masked(model, duals, _half(model), Broken(), PruneOptions(greedy="passes"))
    listed = [_pyramid()]
    assert as_pruning_data(listed).batches_for_pass(3) == listed
    spy = _Spy()
    assert as_pruning_data(spy) is spy
    data = PassData(FixedBatches(listed), torch.device("cpu"))
    assert data.draw()[0] == data.draw()[0] == 0 and data.draws == 1
    feed = as_feed(listed, None)
    assert isinstance(feed, FixedFeed) and feed.next_pass()[1] == [None]
    with pytest.raises(ValueError, match="through the feed"):
        as_feed(feed, [torch.zeros(1)])
    # the reconstruction term cannot run without its target
    layer = searched_layers(model)[3]
    with greedy.LayerObjective(model, layer, None) as objective, pytest.raises(ValueError):
        objective(listed[0], None)


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------
def test_prune_cli_crops_option_is_recorded(
    tmp_path: Path, images: Path, capsys: pytest.CaptureFixture
) -> None:
    from dualsr.cli import main

    model, duals = _tiny()
    ckpt = dualsr.save_model(tmp_path / "tiny.safetensors", model, duals)
    base = ["prune", "-m", str(ckpt), "--rate", "0.5", "--data", str(images)]
    base += ["--images", "5", "--patch-size", "16", "--batch-size", "2", "--greedy", "passes"]
    out = tmp_path / "fresh.safetensors"
    assert main([*base, "-o", str(out)]) == 0
    assert "new crops every pass" in capsys.readouterr().out
    fresh = dualsr.load_checkpoint(out).metadata
    assert fresh["crops"] == "fresh" and fresh["data_draws"] == fresh["passes"] > 1
    out = tmp_path / "fixed.safetensors"
    assert main([*base, "--crops", "fixed", "-o", str(out)]) == 0
    fixed = dualsr.load_checkpoint(out).metadata
    assert fixed["crops"] == "fixed" and fixed["data_draws"] == 1
    # --crops fixed is the library call on pruning_batches (a plain list), as before
    batches = pruning_batches([str(images)], 4, 5, 16, 2, 0)
    ref = prune_masked(
        model, duals, fixed["channel_config"], batches, PruneOptions(greedy="passes")
    )
    assert ref.keep == fixed["kept_units"]
    capsys.readouterr()
    assert main([*base, "--crops", "random", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "--crops must be one of: fresh, fixed (got 'random')" in err
    assert len(err.strip().splitlines()) == 1, err
