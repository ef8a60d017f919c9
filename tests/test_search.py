"""Channel number search: candidates, soft masks, the DARTS gradients, behaviour, and the CLI."""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dualsr
import dualsr.compression.search.channels as search_module
from dualsr.cli import main
from dualsr.compression.budget import Budget
from dualsr.compression.layers import searched_layers
from dualsr.compression.search import ChannelSearch, SearchResult, search_channels
from dualsr.compression.search.bilevel import (
    SearchObjective,
    alpha_gradients,
    finite_difference_hvp,
)
from dualsr.compression.search.checkpoints import (
    SearchCheckpoints,
    load_search_checkpoint,
    search_checkpoints,
)
from dualsr.compression.search.data import split_files
from dualsr.compression.search.options import (
    SearchOptions,
    apply_overrides,
    load_search_options,
    option_names,
    parse_count,
    parse_save_every,
    resume_options,
)
from dualsr.compression.search.space import (
    PAPER_RATIOS,
    candidate_widths,
    rank_units,
    round_to_multiple,
    soft_width_mask,
)
from dualsr.data.image_io import write_image
from dualsr.data.pyramid import make_pyramid
from dualsr.errors import ConfigError, DualSRError
from dualsr.models import preset_channel_config

from .conftest import random_image, tiny_model


@pytest.fixture(autouse=True)
def _one_thread():  # noqa: ANN202
    # these tensors are tiny: one thread is faster, and much faster on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pyramid_batch(seed: int, n: int = 1, hr: int = 16, dtype=torch.float32) -> list[torch.Tensor]:
    """A batch ``[LR, 2x, HR]`` of random x4 pyramids in [0, 255]."""
    levels = [make_pyramid(random_image(hr, hr, seed=seed + i), 4) for i in range(n)]
    return [
        torch.from_numpy(np.stack(lv)).permute(0, 3, 1, 2).to(dtype)
        for lv in zip(*levels, strict=True)
    ]


def objective_and_alphas(rate: float = 0.2, multiple: int = 1):
    """A float64 tiny DRN objective with candidates that differ, and random logits."""
    model = tiny_model().double()
    duals = dualsr.DualModels(4, 4).double()
    cands = [candidate_widths(lay.width, rate, multiple=multiple) for lay in searched_layers(model)]
    obj = SearchObjective(model, duals, cands, dualsr.DualRegressionLoss())
    gen = torch.Generator().manual_seed(1)
    alphas = [
        torch.randn(6, generator=gen, dtype=torch.float64).requires_grad_(True) for _ in cands
    ]
    return obj, alphas


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


# ----------------------------------------------------------------------------------------------
# Candidates, ranking, masks
# ----------------------------------------------------------------------------------------------
def test_candidates_by_hand() -> None:
    # 64 * 0.7 = 44.8; x k = 22.4 26.88 31.36 35.84 40.32 44.8 -> int 22 26 31 35 40 44
    # -> nearest multiple of 4, ties down: 20 24 32 36 40 44
    assert candidate_widths(64, 0.3) == [20, 24, 32, 36, 40, 44]
    assert candidate_widths(16, 0.7) == [4] * 6  # clipped up to the multiple
    assert candidate_widths(4, 0.1) == [4] * 6  # never above the full width
    assert candidate_widths(16, 0.2, multiple=1) == [6, 7, 8, 10, 11, 12]
    assert [round_to_multiple(v, 4) for v in (5, 6, 7, 8)] == [4, 4, 8, 8]
    for bad in (0, 1, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"rate must be in \(0, 1\)"):
            candidate_widths(64, bad)


@pytest.mark.parametrize("scale", [4, 8])
@pytest.mark.parametrize("rate", [30, 50, 70])
def test_released_configurations_use_the_candidates(scale: int, rate: int) -> None:
    full = dualsr.create_model(f"drn-s-x{scale}").channel_widths()
    released = preset_channel_config(f"drn-s{rate}-x{scale}")
    # the one exception in the releases: DRN-S70 x8 keeps 8 and 16 channels in down.1 and
    # down.2, above the r = 0.7 candidates (4 and 8 at most); they are r = 0.5 candidates
    exceptions = {(8, 70): {1: 0.5, 2: 0.5}}.get((scale, rate), {})
    for i, (width, chosen) in enumerate(zip(full, released, strict=True)):
        assert chosen in candidate_widths(width, exceptions.get(i, rate / 100)), i


def test_soft_mask_by_hand() -> None:
    probs = torch.tensor([0.2, 0.3, 0.5])
    cands = torch.tensor([1, 2, 4])
    order = torch.tensor([2, 0, 3, 1])  # channel 2 most important, channel 1 least
    # by rank: r0 in all three (1.0), r1 in the last two (0.8), r2 and r3 in the last (0.5)
    mask = soft_width_mask(probs, cands, order)
    assert torch.allclose(mask, torch.tensor([0.8, 0.5, 1.0, 0.5]))


def test_units_are_ranked_by_the_l1_norm_of_the_consumer_weights() -> None:
    model = tiny_model()
    layer = searched_layers(model)[0]  # down.0: 4 units
    with torch.no_grad():
        layer.consumer.weight.zero_()
        for unit, value in enumerate([0.1, 0.4, -0.3, 0.2]):
            layer.consumer.weight[:, unit] = value
    assert rank_units(layer).tolist() == [1, 2, 3, 0]


def test_objective_masks_follow_the_logits() -> None:
    obj, _ = objective_and_alphas()
    alphas = [torch.tensor([0.0, 0, 0, 0, 0, 50.0], dtype=torch.float64) for _ in obj.layers]
    masks = obj.soft_masks(alphas)
    obj.close()
    for mask, layer, cands in zip(masks, obj.layers, obj.candidates, strict=True):
        widest = int(cands[-1])
        assert mask.sum().item() == pytest.approx(widest)
        kept = mask > 0.5
        assert set(torch.nonzero(kept).flatten().tolist()) == set(
            rank_units(layer)[:widest].tolist()
        )


# ----------------------------------------------------------------------------------------------
# The DARTS gradients
# ----------------------------------------------------------------------------------------------
def test_finite_difference_hvp_matches_exact_double_backward() -> None:
    obj, alphas = objective_and_alphas()
    batch = pyramid_batch(0, dtype=torch.float64)
    weights = obj.weights
    gen = torch.Generator().manual_seed(2)
    v = [torch.randn(w.shape, generator=gen, dtype=torch.float64) for w in weights]
    g = torch.autograd.grad(obj(weights, alphas, batch), weights, create_graph=True)
    exact = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v, strict=True)), alphas)
    exact = flat(list(exact))
    assert exact.abs().max() > 1e-3  # the mixed second derivative is not trivially zero
    norm = float(flat(v).norm())
    for eps_scale, tol in ((1e-5, 1e-6), (0.01, 0.05)):  # tiny eps, and the DARTS eps
        fd = flat(finite_difference_hvp(obj, weights, alphas, batch, v, eps_scale / norm))
        rel = float((fd - exact).norm() / exact.norm())
        assert rel < tol, (eps_scale, rel)
    obj.close()


def test_second_order_gradient_equals_the_exact_unrolled_gradient() -> None:
    obj, alphas = objective_and_alphas()
    tb, vb = pyramid_batch(0, dtype=torch.float64), pyramid_batch(5, dtype=torch.float64)
    weights = obj.weights
    xi = 1e-3
    # exact: differentiate L_val(w - xi grad_w L_train(w, a), a) through the virtual step
    g = torch.autograd.grad(obj(weights, alphas, tb), weights, create_graph=True)
    w_virtual = [w - xi * gi for w, gi in zip(weights, g, strict=True)]
    exact = flat(list(torch.autograd.grad(obj(w_virtual, alphas, vb), alphas)))
    # the first-order part alone (gradient at w' with w' held fixed)
    w_fixed = [w.detach() for w in w_virtual]
    direct = flat(list(torch.autograd.grad(obj(w_fixed, alphas, vb), alphas)))
    assert (exact - direct).norm() > 0.01 * exact.norm()  # the Hessian term matters here
    for eps_scale, tol in ((1e-5, 1e-6), (0.01, 0.05)):
        approx, val = alpha_gradients(
            obj, weights, alphas, tb, vb, order="second", xi=xi, eps_scale=eps_scale
        )
        rel = float((flat(approx) - exact).norm() / exact.norm())
        assert rel < tol, (eps_scale, rel)
    assert val == pytest.approx(float(obj(w_fixed, alphas, vb).detach()))
    obj.close()


def test_second_order_on_a_quadratic_by_hand() -> None:
    # L_train = |w - a|^2 / 2, L_val = |w|^2 / 2: w' = w - xi (w - a), the first-order gradient
    # is 0 and the unrolled gradient is xi * w'.
    def objective(weights, alphas, batch):  # noqa: ANN001, ANN202
        (w,), (a,) = weights, alphas
        return 0.5 * ((w - a) ** 2).sum() if batch == "train" else 0.5 * (w**2).sum() + 0 * a.sum()

    w = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([0.5, 0.5, -1.0], dtype=torch.float64, requires_grad=True)
    xi = 0.1
    (grad,), _ = alpha_gradients(objective, [w], [a], "train", "val", order="second", xi=xi)
    w_virtual = w.detach() - xi * (w.detach() - a.detach())
    assert torch.allclose(grad, xi * w_virtual)
    (first,), _ = alpha_gradients(objective, [w], [a], "train", "val", order="first")
    assert torch.equal(first, torch.zeros(3, dtype=torch.float64))


def test_first_order_equals_the_plain_validation_gradient() -> None:
    obj, alphas = objective_and_alphas()
    tb, vb = pyramid_batch(0, dtype=torch.float64), pyramid_batch(5, dtype=torch.float64)
    plain = torch.autograd.grad(obj(obj.weights, alphas, vb), alphas)
    got, val = alpha_gradients(obj, obj.weights, alphas, tb, vb, order="first")
    assert all(torch.equal(p, q) for p, q in zip(plain, got, strict=True))
    assert val == pytest.approx(float(obj(obj.weights, alphas, vb).detach()))
    obj.close()


# ----------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------
def teacher_batches(model: dualsr.DRN, seeds: list[int]) -> list[list[torch.Tensor]]:
    """Pyramids whose upper levels are the full model's own outputs."""
    batches = []
    for s in seeds:
        lr = pyramid_batch(s)[0]
        with torch.no_grad():
            outputs = model(lr)
        batches.append([lr, *outputs[1:]])
    return batches


def upper_levels_l1(outputs, targets, dual_outputs):  # noqa: ANN001, ANN201
    return sum(F.l1_loss(o, t) for o, t in zip(outputs[1:], targets[1:], strict=True))


@pytest.mark.parametrize("order", ["first", "second"])
def test_logits_move_to_wider_candidates_when_the_loss_needs_channels(order: str) -> None:
    # The target is the unmasked model itself and the widest candidates are the full widths
    # (r = 0.05 rounds 15.2 up to 16), so the loss is zero only at full width: the search must
    # move probability from narrow to wide candidates (a sign error would narrow the layers).
    # The consumer weights are scaled up so that every searched layer clearly matters.
    model = tiny_model()
    with torch.no_grad():
        for layer in searched_layers(model):
            layer.consumer.weight.mul_(5)
    result = search_channels(
        model,
        None,
        teacher_batches(model, [0, 1]),
        teacher_batches(model, [2, 3]),
        target_rate=0.05,
        order=order,
        steps=4,
        weight_lr=0.0,  # weights frozen: only the logits move
        weight_lr_min=0.0,
        xi=1e-4,  # the paper's weight learning rate, as the virtual step
        alpha_lr=0.05,
        alpha_schedule="constant",  # the earlier defaults: a constant lr, the DARTS betas
        alpha_betas=(0.5, 0.999),
        loss=upper_levels_l1,
    )
    searched = [i for i, c in enumerate(result.candidates) if len(set(c)) > 1]
    assert result.candidates[2] == [8, 8, 8, 12, 12, 16] and len(searched) == 5
    for i in searched:
        uniform = sum(result.candidates[i]) / 6
        assert result.expected_widths[i] > uniform + 0.2, i
        assert result.probabilities[i][-1] > 1 / 6, i
    val = [h["val_loss"] for h in result.history]  # two validation batches, alternating
    assert val[2] < val[0] and val[3] < val[1]


def test_search_result_is_consistent_and_leaves_the_model_alone() -> None:
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    result = search_channels(
        model,
        dualsr.DualModels(4, 4),
        [pyramid_batch(0, n=2)],
        [pyramid_batch(1, n=2)],
        target_rate=0.3,
        steps=2,
        progress=calls.append,
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [c["step"] for c in calls] == [1, 2] and result.history == calls
    assert result.channel_config == result.argmax_config
    for width, cands in zip(result.channel_config, result.candidates, strict=True):
        assert width in cands
    built = dualsr.DRN(4, 4, 1, channel_config=result.channel_config)
    assert result.params == dualsr.count_parameters(built)
    assert result.full_params == dualsr.count_parameters(model)
    assert result.input_hw == (96, 96)
    doc = json.loads(json.dumps(result.to_dict()))
    assert len(doc["layers"]) == 6 and doc["layers"][0]["name"] == "down.0"
    # the searched weights changed (they are trained with the logits)
    assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items())


def test_search_meets_a_budget() -> None:
    model = tiny_model()
    budget = Budget(params=20_000)
    result = search_channels(
        model,
        None,
        [pyramid_batch(0)],
        [pyramid_batch(1)],
        target_rate=0.5,
        multiple=1,
        steps=1,
        order="first",
        select="budget",
        budget=budget,
    )
    assert abs(result.params - 20_000) <= 0.02 * 20_000
    assert result.budget_fit is not None and result.budget_fit.cost == result.params
    with pytest.raises(ConfigError, match="cannot be met"):
        search_channels(
            model, None, [pyramid_batch(0)], [pyramid_batch(1)], target_rate=0.5, steps=1,
            select="budget", budget=Budget(params=10**8),
        )  # fmt: skip


def test_search_argument_errors() -> None:
    model, batches = tiny_model(), [pyramid_batch(0)]
    with pytest.raises(ConfigError, match="rate"):
        search_channels(model, None, batches, batches, target_rate=1.0, steps=1)
    with pytest.raises(ConfigError, match="exactly one of steps or epochs"):
        search_channels(model, None, batches, batches, target_rate=0.3)
    with pytest.raises(ConfigError, match="order"):
        search_channels(model, None, batches, batches, target_rate=0.3, steps=1, order="third")
    with pytest.raises(ConfigError, match="empty"):
        search_channels(model, None, [], batches, target_rate=0.3, steps=1)
    with pytest.raises(DualSRError, match="at least 2"):
        split_files([Path("a.png")])
    assert split_files([1, 2, 3, 4, 5]) == ([1, 3, 5], [2, 4])


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------
def test_cli_search_writes_a_loadable_configuration(
    tmp_path: Path, train_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = dualsr.save_model(tmp_path / "tiny.safetensors", tiny_model(), dualsr.DualModels(4, 4))
    yaml_file = tmp_path / "search.yaml"
    yaml_file.write_text("rate: 0.3\npatch-size: 16\nbatch_size: 2\norder: first\n")
    out = tmp_path / "out"
    args = ["search", "--model", str(ckpt), "--data", str(train_folder), "--config", str(yaml_file)]
    args += ["--steps", "2", "--order", "second", "--cache", "memory", "--save-weights"]
    assert main([*args, "-o", str(out)]) == 0
    config = dualsr.read_channel_config(out / "channel_config.txt")
    model = dualsr.DRN(4, 4, 1, channel_config=config)
    report = json.loads((out / "search.json").read_text())
    assert report["channel_config"] == config
    assert report["params"] == dualsr.count_parameters(model)
    assert report["input_size"] == [96, 96] and report["macs"] > 0
    assert report["order"] == "second"  # the command line beats the file
    assert report["options"]["patch_size"] == 16 and report["target_rate"] == 0.3
    assert report["data"] == {
        "folders": [str(train_folder)],
        "weight_images": 2,
        "architecture_images": 2,
        "steps_per_epoch": 1,
    }
    assert [h["step"] for h in report["history"]] == [1, 2]
    assert report["command"].startswith("dualsr search --model ")
    searched = dualsr.load_checkpoint(out / "searched.safetensors")
    assert searched.duals is not None and searched.metadata["stage"] == "search"
    assert "channel configuration (6 layers)" in capsys.readouterr().out


def test_cli_search_budget(tmp_path: Path, train_folder: Path) -> None:
    ckpt = dualsr.save_model(tmp_path / "tiny.safetensors", tiny_model())
    out = tmp_path / "out"
    args = ["search", "-m", str(ckpt), "--data", str(train_folder), "--rate", "0.5", "-o", str(out)]
    args += ["--steps", "1", "--order", "first", "--patch-size", "16", "--cache", "memory"]
    assert main([*args, "--select", "budget", "--budget-params", "20K", "--multiple", "1"]) == 0
    report = json.loads((out / "search.json").read_text())
    assert abs(report["params"] - 20_000) <= 400
    assert report["budget"] == {
        "kind": "params",
        "target": 20_000,
        "input_hw": [96, 96],
        "tolerance": 0.02,
    }


@pytest.mark.filterwarnings("ignore:.*smaller than the")
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rate", "1.5"], "rate must be in (0, 1)"),
        (["--rate", "0.3", "--model", "missing.safetensors"], "checkpoint not found"),
        (["--rate", "0.3", "--data", "EMPTY"], "holds no images"),
        (["--rate", "0.3", "--select", "budget", "--budget-params", "10"], "cannot be met"),
        (["--rate", "0.3", "--budget-params", "lots"], "expected a count"),
        (["--rate", "0.3", "--patch-size", "64"], "use a smaller --patch-size"),
        ([], "missing --rate"),
    ],
)
def test_cli_search_errors(
    tmp_path: Path,
    train_folder: Path,
    tiny_checkpoint: Path,
    capsys: pytest.CaptureFixture,
    extra: list[str],
    message: str,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    extra = [str(empty) if e == "EMPTY" else e for e in extra]
    args = ["search", "--model", str(tiny_checkpoint), "--data", str(train_folder)]
    args += ["--steps", "1", "--patch-size", "16", "--cache", "memory", "-o", str(tmp_path / "o")]
    assert main(args + extra) == 1
    assert message in capsys.readouterr().err


def test_shipped_search_config_is_valid() -> None:
    path = Path(__file__).parents[1] / "configs" / "search-drn-s30-x4.yaml"
    opts = load_search_options(path)
    assert opts.rate == 0.3 and opts.budget_params == 3_116_637
    assert opts.input_hw == (96, 96) and opts.ratios == list(PAPER_RATIOS)
    assert opts.budget() == Budget(params=3_116_637, input_hw=(96, 96), tolerance=0.02)


# ----------------------------------------------------------------------------------------------
# The options of a search (dualsr.compression.search.options)
# ----------------------------------------------------------------------------------------------
def test_search_options_defaults_are_the_papers() -> None:
    opts = SearchOptions()
    assert opts.ratios == list(PAPER_RATIOS) and opts.order == "second"
    assert (opts.epochs, opts.patch_size, opts.batch_size) == (100.0, 192, 16)
    assert opts.budget() is None and opts.total_steps(7) == 700
    assert SearchOptions.from_dict({}) == opts
    assert list(opts.to_dict()) == option_names()


def test_search_options_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "rate: 0.3\npatch-size: 16\norder: first\nselect: budget\nbudget_macs: 72G\n"
        "lr_alpha: 1e-3\n"
    )
    opts = load_search_options(path, {"order": "second", "seed": None, "batch_size": 4})
    assert opts.order == "second"  # the override beats the file
    assert opts.seed == 0  # None does not override
    assert (opts.patch_size, opts.batch_size, opts.rate) == (16, 4, 0.3)
    assert opts.budget_macs == 72 * 10**9 and opts.lr_alpha == 1e-3  # PyYAML reads 1e-3 as str
    assert opts.budget() == Budget(macs=72 * 10**9, input_hw=(96, 96))
    again = apply_overrides(opts, {"input-size": "48x64", "steps": 3, "ratios": "0.5,1"})
    assert again.input_hw == (48, 64) and again.total_steps(100) == 3
    assert again.ratios == [0.5, 1.0] and again.patch_size == 16 and opts.input_hw == (96, 96)


def test_search_options_unknown_key_names_it(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("rate: 0.3\npatchsize: 16\n")
    with pytest.raises(
        ConfigError, match=r"unknown option\(s\) \['patchsize'\]; valid: .*patch_size"
    ):
        load_search_options(path)
    with pytest.raises(ConfigError, match=r"\['lr'\]"):
        SearchOptions.from_dict({"lr": 1e-4})
    with pytest.raises(ConfigError, match=r"\['bogus'\]"):
        apply_overrides(SearchOptions(), {"bogus": 1})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tolerance", "abc", "--tolerance: not a number: 'abc'"),
        ("patch_size", "big", "--patch-size: not a number"),
        ("budget_params", "lots", "--budget-params: expected a count"),
        ("input_size", "9x", "--input-size: expected HxW"),
        ("ratios", [0.5, 2], "--ratios must be numbers in (0, 1]"),
        ("order", "third", "--order must be 'first' or 'second'"),
        ("steps", -1, "--steps must be at least 1"),
        ("rate", 1.5, "rate must be in (0, 1)"),
        ("data", 5, "--data: expected a folder or a list of folders"),
    ],
)
def test_search_options_bad_value_names_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        SearchOptions.from_dict({key: value})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_search_options_complete_and_budget_errors() -> None:
    with pytest.raises(ConfigError, match="missing --model, --data, -o/--output"):
        SearchOptions.from_dict({"rate": 0.3}, complete=True)
    with pytest.raises(ConfigError, match="only one of --budget-params and --budget-macs"):
        SearchOptions.from_dict({"budget_params": "1M", "budget_macs": "1G"})


@pytest.mark.parametrize(
    ("text", "count"),
    [("3116637", 3_116_637), ("3,116,637", 3_116_637), ("3.1M", 3_100_000), ("72g", 72 * 10**9)],
)
def test_parse_count(text: str, count: int) -> None:
    assert parse_count(text, "--budget-params") == count


def test_equivalent_command_reproduces_the_options(tmp_path: Path) -> None:
    from dualsr.cli import build_parser

    opts = SearchOptions.from_dict(
        {"model": "m.pt", "data": "a b", "rate": 0.3, "output": str(tmp_path), "steps": 5},
        complete=True,
    )
    opts = apply_overrides(opts, {"input_size": [64, 48], "save_weights": True})
    args = build_parser().parse_args(shlex.split(opts.equivalent_command())[1:])
    given = {key: getattr(args, key) for key in option_names()}
    assert load_search_options(None, given, complete=True) == opts


def test_search_result_save(tmp_path: Path) -> None:
    result = search_channels(
        tiny_model(), None, [pyramid_batch(0)], [pyramid_batch(1)], target_rate=0.3, steps=1
    )
    files = result.save(tmp_path / "out", {"command": "x"}, weights=True, metadata={"note": "n"})
    assert dualsr.read_channel_config(files.channel_config) == result.channel_config
    doc = json.loads(files.report.read_text())
    assert list(doc)[:2] == ["command", "channel_config"] and doc["params"] == result.params
    assert doc["files"]["searched_weights"] == str(files.weights)
    meta = dualsr.load_checkpoint(files.weights).metadata
    assert meta["stage"] == "search" and meta["note"] == "n"
    assert result.save(tmp_path / "o2").weights is None


# ----------------------------------------------------------------------------------------------
# Checkpoints and resume
# ----------------------------------------------------------------------------------------------
ROOT = Path(__file__).parents[1]


def search_args(ckpt: Path, folder: Path, out: Path, *extra: str) -> list[str]:
    """A 5-step second-order search of the tiny model, a checkpoint every 2 steps."""
    args = ["search", "-m", str(ckpt), "--data", str(folder), "--rate", "0.3", "-o", str(out)]
    args += ["--steps", "5", "--patch-size", "16", "--batch-size", "2", "--cache", "memory"]
    return [*args, "--save-weights", "--save-every", "2", *extra]


def assert_same_results(a: Path, b: Path) -> None:
    """The result files of two searches hold the same configuration, logits, history and
    weights (bit for bit; only paths, options' output and timing may differ)."""
    assert (a / "channel_config.txt").read_text() == (b / "channel_config.txt").read_text()
    ra, rb = (json.loads((d / "search.json").read_text()) for d in (a, b))
    for key in ("channel_config", "argmax_config", "params", "macs", "layers", "history"):
        assert ra[key] == rb[key], key  # "layers" holds every logit and softmax value
    assert len(ra["history"]) == 5
    wa, wb = (dualsr.load_checkpoint(d / "searched.safetensors") for d in (a, b))
    for ma, mb in ((wa.model, wb.model), (wa.duals, wb.duals)):
        sa, sb = ma.state_dict(), mb.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def act_in_step(monkeypatch: pytest.MonkeyPatch, step: int, action) -> None:  # noqa: ANN001
    """Run ``action`` when step ``step`` computes its logit gradient (mid-step)."""
    original = search_module.alpha_gradients
    calls = []

    def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == step:
            action()
        return original(*args, **kwargs)

    monkeypatch.setattr(search_module, "alpha_gradients", wrapped)


def disk_on_fire() -> None:
    raise OSError("disk on fire")


@pytest.mark.parametrize(
    ("how", "code"), [("SIGINT", 130), ("SIGTERM", 143), ("error", 1)]
)  # fmt: skip
def test_cli_search_stopped_then_resumed_equals_a_straight_run(
    tmp_path: Path,
    train_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
    how: str,
    code: int,
) -> None:
    ckpt = dualsr.save_model(tmp_path / "tiny.safetensors", tiny_model(), dualsr.DualModels(4, 4))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(search_args(ckpt, train_folder, straight)) == 0
    assert not (straight / "checkpoints").exists()  # deleted once the results are written
    if how == "error":
        act_in_step(monkeypatch, 4, disk_on_fire)
    else:
        act_in_step(monkeypatch, 4, lambda: os.kill(os.getpid(), signal.Signals[how]))
    capsys.readouterr()
    assert main(search_args(ckpt, train_folder, resumed)) == code
    err = capsys.readouterr().err
    # a signal finishes step 4 and saves it; an error inside step 4 saves step 3
    saved = 3 if how == "error" else 4
    assert [p.name for p in search_checkpoints(resumed)] == [
        "search-step-000002.safetensors",  # --save-every 2, the last 2 kept
        f"search-step-{saved:06d}.safetensors",
    ]
    assert f"continue with: dualsr search --resume {resumed}" in caplog.text
    assert not (resumed / "channel_config.txt").exists()
    if how == "error":
        assert f"stopped by an error at step {saved}" in caplog.text
        assert [ln for ln in err.splitlines() if ln.startswith("error")] == ["error: disk on fire"]
    else:
        assert f"{how} received" in caplog.text and f"stopped at step {saved} of 5" in caplog.text
    monkeypatch.undo()
    assert main(["search", "--resume", str(resumed)]) == 0  # no other flag needed
    assert_same_results(straight, resumed)
    assert not (resumed / "checkpoints").exists()
    assert json.loads((resumed / "search.json").read_text())["options"]["output"] == str(resumed)


def lists_search(batches: list, **kwargs):  # noqa: ANN003, ANN201
    """A first-order 5-step search of the tiny model on lists of 3 batches."""
    model = kwargs.pop("model", None) or tiny_model()
    duals = kwargs.pop("duals", None) or dualsr.DualModels(4, 4)
    return search_channels(
        model, duals, batches[:3], batches[3:], target_rate=0.3, order="first", steps=5, **kwargs
    )


class FailingLoss(dualsr.DualRegressionLoss):
    """The dual regression loss, raising at its ``fail_at``-th call."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.calls, self.fail_at = 0, fail_at

    def forward(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("boom")
        return super().forward(*args, **kwargs)


@pytest.mark.parametrize("how", ["callback", "error in the logit step", "error in the weight step"])
def test_search_channels_resumes_bit_exactly(tmp_path: Path, how: str) -> None:
    # first order: the loss is called once for the logits, then once for the weights, per step;
    # an error in step 3's weight step comes after its logit update, which is rolled back
    batches = [pyramid_batch(i, n=2) for i in range(6)]
    straight = lists_search(batches)
    checkpoints = SearchCheckpoints(tmp_path, every=0, options={"note": "library"})
    if how == "callback":
        stopped = lists_search(
            batches, checkpoints=checkpoints, progress=lambda rec: rec["step"] == 2
        )
        assert stopped.stop_reason == "callback" and not stopped.finished
        assert stopped.checkpoint == search_checkpoints(tmp_path)[-1]
    else:
        loss = FailingLoss(5 if how == "error in the logit step" else 6)
        with pytest.raises(RuntimeError, match="boom"):
            lists_search(batches, checkpoints=checkpoints, loss=loss)
    loaded = load_search_checkpoint(tmp_path)
    assert loaded.state.step == 2 and len(loaded.state.history) == 2
    assert loaded.state.options == {"note": "library"}
    assert loaded.metadata["stage"] == "search"
    resumed = lists_search(batches, model=loaded.model, duals=loaded.duals, resume=loaded.state)
    assert resumed.finished and resumed.history == straight.history
    assert resumed.channel_config == straight.channel_config
    assert resumed.alphas == straight.alphas  # exact floats
    for a, b in ((resumed.model, straight.model), (resumed.duals, straight.duals)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(ConfigError, match="saved search runs 5 steps, this one 6"):
        search_channels(
            loaded.model, loaded.duals, batches, batches, target_rate=0.3, steps=6,
            resume=loaded.state,
        )  # fmt: skip


@pytest.mark.slow  # a real subprocess or end-to-end run: `make test` runs it
def test_cli_search_sigint_in_a_real_process_saves_and_exits(
    tmp_path: Path, train_folder: Path
) -> None:
    ckpt = dualsr.save_model(tmp_path / "tiny.safetensors", tiny_model())
    out = tmp_path / "out"
    args = search_args(ckpt, train_folder, out, "--order", "first", "--save-every", "1")
    args[args.index("--steps") + 1] = "100000"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dualsr", *args], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 60
    while time.time() < deadline and not search_checkpoints(out):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "SIGINT received" in err and f"dualsr search --resume {out}" in err
    loaded = load_search_checkpoint(out)
    assert loaded.state.step >= 1 and loaded.state.steps == 100_000
    assert len(search_checkpoints(out)) <= 2


def test_cli_search_resume_falls_back_from_a_corrupt_checkpoint(
    tmp_path: Path, train_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = dualsr.save_model(tmp_path / "tiny.safetensors", tiny_model(), dualsr.DualModels(4, 4))
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(search_args(ckpt, train_folder, straight)) == 0
    act_in_step(monkeypatch, 4, lambda: os.kill(os.getpid(), signal.SIGINT))
    assert main(search_args(ckpt, train_folder, resumed)) == 130
    monkeypatch.undo()
    newest = search_checkpoints(resumed)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    with pytest.warns(UserWarning, match=r"search-step-000004.*falling back to .*000002"):
        assert main(["search", "--resume", str(resumed)]) == 0
    assert_same_results(straight, resumed)


def test_cli_search_resume_errors(
    tmp_path: Path,
    train_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    ckpt = dualsr.save_model(tmp_path / "tiny.safetensors", tiny_model())
    out = tmp_path / "out"
    args = search_args(ckpt, train_folder, out, "--order", "first")
    act_in_step(monkeypatch, 3, lambda: os.kill(os.getpid(), signal.SIGINT))
    assert main(args) == 130
    monkeypatch.undo()
    capsys.readouterr()

    def error(argv: list[str]) -> str:
        assert main(argv) == 1
        return capsys.readouterr().err

    # a new search into a folder with checkpoints
    msg = error(args)
    assert f"`dualsr search --resume {out}`" in msg and "or choose another -o" in msg
    # flags that would change the search name themselves; repeating a saved value is fine
    resume = ["search", "--resume", str(out)]
    msg = error([*resume, "--rate", "0.5", "--data", str(train_folder)])
    assert "--rate 0.5 (saved: 0.3) would change the search; drop it" in msg
    assert "--data" not in msg
    assert "--order second (saved: first)" in error([*resume, "--order", "second"])
    assert "-o/--output" in error([*resume, "-o", str(tmp_path / "elsewhere")])
    assert "holds no search checkpoints" in error(["search", "--resume", str(tmp_path)])
    assert "--save-every: expected" in error([*resume, "--save-every", "soon"])
    # options that do not change the search may change; the checkpoints stay until the end
    assert main([*resume, "--save-every", "1m", "--cache", "memory"]) == 0
    assert dualsr.read_channel_config(out / "channel_config.txt")
    assert "holds no search checkpoints (checkpoints/search-step-*.safetensors) (its " in error(
        resume
    )
    # a new search into the finished one's folder is refused, like `dualsr train` into a run's
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    msg = error(args)
    assert f"-o {out} already holds a finished search (search.json, channel_config.txt)" in msg
    assert "choose another -o" in msg
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_save_every_values() -> None:
    assert parse_save_every("50") == 50 and parse_save_every(0) == 0
    assert [parse_save_every(v) for v in ("30s", "5min", "1.5m", "2H")] == [
        "30s",
        "5m",
        "1.5m",
        "2h",
    ]
    for bad in ("-1", "soon", "0s", "5 days", True):
        with pytest.raises(ConfigError, match="--save-every"):
            parse_save_every(bad)
    assert SearchOptions().save_every == "5m"
    assert SearchOptions.from_dict({"save-every": "10"}).save_every == 10
    ckpts = SearchCheckpoints("x", 3)
    assert [s for s in range(1, 11) if ckpts.due(s, 10)] == [3, 6, 9, 10]
    assert SearchCheckpoints("x", "1h").due(5, 10) is False


# ----------------------------------------------------------------------------------------------
# The released code's defaults (betas, logit schedule, clipping, argmax selection, best epoch)
# ----------------------------------------------------------------------------------------------
def test_search_options_defaults_are_the_released_codes() -> None:
    opts = SearchOptions()
    assert opts.alpha_betas == [0.9, 0.999] and opts.alpha_schedule == "cosine"
    assert opts.grad_clip == 5.0 and opts.select == "argmax" and opts.val is None
    ours = SearchOptions.from_dict({"alpha-betas": "0.5,0.999", "grad_clip": "none"})
    assert ours.alpha_betas == [0.5, 0.999] and ours.grad_clip == 0.0
    assert SearchOptions.from_dict({"grad_clip": 0}).grad_clip == 0.0
    assert SearchOptions.from_dict({"alpha_schedule": "constant"}).alpha_schedule == "constant"
    for key, value, message in [
        ("alpha_betas", "0.5", "--alpha-betas: expected two numbers"),
        ("alpha_betas", "1.0,0.9", "--alpha-betas: expected two numbers"),
        ("grad_clip", "-1", "--grad-clip: expected a positive number"),
        ("alpha_schedule", "linear", "--alpha-schedule must be cosine or constant"),
        ("select", "best", "--select must be argmax or budget"),
    ]:
        with pytest.raises(ConfigError, match=message):
            SearchOptions.from_dict({key: value})


def test_a_budget_needs_select_budget() -> None:
    with pytest.raises(ConfigError, match="--budget-params is not used by --select argmax"):
        SearchOptions.from_dict({"budget_params": "1M"})
    with pytest.raises(ConfigError, match="--select budget needs --budget-params or --budget"):
        SearchOptions.from_dict({"select": "budget"})
    opts = SearchOptions.from_dict({"budget_macs": "1G", "select": "budget"})
    assert opts.budget() is not None
    model, batches = tiny_model(), [pyramid_batch(0)]
    with pytest.raises(ConfigError, match=r"not used by select='argmax' \(--select argmax"):
        search_channels(
            model, None, batches, batches, target_rate=0.3, steps=1, budget=Budget(params=10**4)
        )
    with pytest.raises(ConfigError, match="needs a budget"):
        search_channels(model, None, batches, batches, target_rate=0.3, steps=1, select="budget")


def _saved_alpha_optimizer(tmp_path: Path, **kwargs) -> tuple[SearchResult, dict]:  # noqa: ANN003
    """A 4-step first-order search; its result and the logits' saved optimizer state."""
    ckpts = SearchCheckpoints(tmp_path, every=0)
    result = search_channels(
        tiny_model(), None, [pyramid_batch(0)], [pyramid_batch(1)], target_rate=0.3,
        order="first", steps=4, checkpoints=ckpts, **kwargs,
    )  # fmt: skip
    return result, load_search_checkpoint(tmp_path).state.optimizers["alphas"]


def test_logit_adam_betas_and_cosine_lr_are_the_released_codes(tmp_path: Path) -> None:
    result, a_opt = _saved_alpha_optimizer(tmp_path / "a")
    assert tuple(a_opt["param_groups"][0]["betas"]) == (0.9, 0.999)
    # cosine over the whole search, to 1e-7, like the weights: lr_k = min + (lr0 - min) *
    # (1 + cos(pi k / T)) / 2 at step k + 1
    shape = [(1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    cosine = [1e-7 + (3e-4 - 1e-7) * c for c in shape]
    assert [h["alpha_lr"] for h in result.history] == pytest.approx(cosine, rel=1e-9)
    weights = [1e-7 + (1e-4 - 1e-7) * c for c in shape]
    assert [h["weight_lr"] for h in result.history] == pytest.approx(weights, rel=1e-9)
    assert a_opt["param_groups"][0]["lr"] == pytest.approx(1e-7, rel=1e-6)  # after 4 of 4
    # ours, as options: DARTS betas and a constant lr
    result, a_opt = _saved_alpha_optimizer(
        tmp_path / "b", alpha_betas=(0.5, 0.999), alpha_schedule="constant"
    )
    assert tuple(a_opt["param_groups"][0]["betas"]) == (0.5, 0.999)
    assert [h["alpha_lr"] for h in result.history] == [3e-4] * 4
    assert a_opt["param_groups"][0]["lr"] == 3e-4


def _huge_loss(outputs, targets, dual_outputs):  # noqa: ANN001, ANN202
    return dualsr.DualRegressionLoss()(outputs, targets, dual_outputs).total * 1e6


def _grad_norm(result: SearchResult) -> float:
    params = [*result.model.parameters(), *result.duals.parameters()]
    return float(
        torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params if p.grad is not None))
    )


def test_weight_step_gradients_are_clipped_at_norm_5() -> None:
    def run(**kwargs) -> SearchResult:  # noqa: ANN003
        return search_channels(
            tiny_model(), None, [pyramid_batch(0)], [pyramid_batch(1)], target_rate=0.3,
            order="first", steps=1, loss=_huge_loss, **kwargs,
        )  # fmt: skip

    clipped = run()  # the last weight step's gradients stay on the returned weights
    assert clipped.history[0]["grad_norm"] > 1e3
    assert _grad_norm(clipped) == pytest.approx(5.0, rel=1e-5)
    for off in (0, None):
        free = run(grad_clip=off)
        assert "grad_norm" not in free.history[0]
        assert _grad_norm(free) == pytest.approx(clipped.history[0]["grad_norm"], rel=1e-4)
    assert _grad_norm(run(grad_clip=1e9)) > 1e3


def test_argmax_selection_is_the_most_likely_candidate_of_every_layer() -> None:
    result = search_channels(
        tiny_model(), None, [pyramid_batch(0)], [pyramid_batch(1)], target_rate=0.2,
        multiple=1, order="first", steps=2, alpha_lr=0.05,
    )  # fmt: skip
    expected = [c[int(np.argmax(a))] for a, c in zip(result.alphas, result.candidates, strict=True)]
    assert result.select == "argmax" and result.budget_fit is None
    assert result.channel_config == result.argmax_config == expected
    assert len(set(map(tuple, result.candidates))) > 1  # the candidates differ between layers


def test_budget_selection_meets_the_budget() -> None:
    budget = Budget(params=20_000)
    result = search_channels(
        tiny_model(), None, [pyramid_batch(0)], [pyramid_batch(1)], target_rate=0.5,
        multiple=1, order="first", steps=2, select="budget", budget=budget,
    )  # fmt: skip
    assert result.select == "budget" and result.to_dict()["select"] == "budget"
    assert abs(result.params - 20_000) <= 0.02 * 20_000
    assert result.budget_fit is not None and result.budget_fit.cost == result.params


@pytest.fixture
def val_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "val"
    folder.mkdir()
    for i in range(2):
        write_image(folder / f"v{i}.png", random_image(24, 28, seed=50 + i))
    return folder


def test_argmax_of_every_epoch_is_written_and_the_best_epoch_kept(
    tmp_path: Path, val_folder: Path
) -> None:
    batches = [pyramid_batch(i, n=2) for i in range(4)]
    kwargs = {"target_rate": 0.3, "order": "first", "steps": 5, "alpha_lr": 0.05}
    plain = search_channels(tiny_model(), None, batches[:2], batches[2:], **kwargs)
    out = tmp_path / "out"
    result = search_channels(
        tiny_model(), None, batches[:2], batches[2:], output=out, val_folder=val_folder, **kwargs
    )
    # two steps an epoch: epochs end at steps 2 and 4, and the last (half) epoch at step 5
    files = sorted((out / "epochs").iterdir())
    assert [f.name for f in files] == [f"channel_config-epoch-{e:04d}.txt" for e in (1, 2, 3)]
    ends = [h for h in result.history if "epoch" in h]
    assert [(h["step"], h["epoch"]) for h in ends] == [(2, 1), (4, 2), (5, 3)]
    for f, h in zip(files, ends, strict=True):
        assert dualsr.read_channel_config(f) == h["argmax_config"]
    assert h["argmax_config"] == result.argmax_config
    scores = [h["val_psnr"] for h in ends]
    assert all(math.isfinite(s) and s > 0 for s in scores)
    best = max(range(3), key=lambda i: (scores[i], i))
    assert result.best == {
        "epoch": best + 1,
        "step": ends[best]["step"],
        "val_psnr": scores[best],
        "channel_config": ends[best]["argmax_config"],
    }
    best_file = out / "best_channel_config.txt"
    assert dualsr.read_channel_config(best_file) == result.best["channel_config"]
    # validating changes nothing in the search
    assert result.alphas == plain.alphas and plain.best is None
    assert [h["train_loss"] for h in result.history] == [h["train_loss"] for h in plain.history]
    files = result.save(tmp_path / "saved")
    doc = json.loads(files.report.read_text())
    assert doc["best"] == result.best and doc["files"]["best_channel_config"]
    assert not (tmp_path / "o2" / "best_channel_config.txt").exists()
    search_channels(tiny_model(), None, batches[:2], batches[2:], output=tmp_path / "o2", **kwargs)
    assert (tmp_path / "o2" / "epochs").is_dir()
    assert not (tmp_path / "o2" / "best_channel_config.txt").exists()  # only with --val
    with pytest.raises(DualSRError, match="too small to score"):
        small = tmp_path / "small"
        small.mkdir()
        write_image(small / "s.png", random_image(16, 16))
        search_channels(tiny_model(), None, batches[:2], batches[2:], val_folder=small, **kwargs)


def test_cli_search_new_options_round_trip_through_resume(
    tmp_path: Path,
    train_folder: Path,
    val_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    ckpt = dualsr.save_model(tmp_path / "tiny.safetensors", tiny_model(), dualsr.DualModels(4, 4))
    ours = ["--order", "first", "--alpha-betas", "0.5,0.999", "--alpha-schedule", "constant"]
    ours += ["--grad-clip", "none", "--val", str(val_folder)]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(search_args(ckpt, train_folder, straight, *ours)) == 0
    act_in_step(monkeypatch, 4, lambda: os.kill(os.getpid(), signal.SIGINT))
    assert main(search_args(ckpt, train_folder, resumed, *ours)) == 130
    monkeypatch.undo()
    saved = load_search_checkpoint(resumed).state
    assert saved.options["alpha_betas"] == [0.5, 0.999] and saved.options["grad_clip"] == 0.0
    assert saved.options["alpha_schedule"] == "constant" and saved.alpha_schedule == {}
    assert saved.options["select"] == "argmax" and saved.options["val"] == str(val_folder)
    capsys.readouterr()
    resume = ["search", "--resume", str(resumed)]
    for flags, message in [
        (["--grad-clip", "5"], "--grad-clip 5.0 (saved: 0.0)"),
        (["--alpha-betas", "0.9,0.999"], "--alpha-betas 0.9,0.999 (saved: 0.5,0.999)"),
        (["--alpha-schedule", "cosine"], "--alpha-schedule cosine (saved: constant)"),
        (["--val", str(train_folder)], "--val"),
    ]:
        assert main([*resume, *flags]) == 1
        assert message in capsys.readouterr().err
    assert main([*resume, "--grad-clip", "0", "--val", str(val_folder)]) == 0  # repeats: fine
    assert_same_results(straight, resumed)
    for d in (straight, resumed):
        assert len(list((d / "epochs").iterdir())) == 5  # 1 step an epoch, 5 steps
    a, b = (json.loads((d / "search.json").read_text()) for d in (straight, resumed))
    assert a["best"] == b["best"] and a["best"] is not None
    assert (straight / "best_channel_config.txt").read_text() == (
        resumed / "best_channel_config.txt"
    ).read_text()
    assert {k: v for k, v in a["options"].items() if k != "output"} == {
        k: v for k, v in b["options"].items() if k != "output"
    }
    assert a["options"]["alpha_betas"] == [0.5, 0.999] and "--grad-clip 0" in a["command"]


def test_resume_of_a_checkpoint_from_before_the_new_options_keeps_its_behaviour(
    tmp_path: Path,
) -> None:
    old = SearchOptions.from_dict(
        {"model": "m.pt", "data": ["d"], "rate": 0.3, "output": str(tmp_path)}, complete=True
    ).to_dict()
    for key in ("alpha_betas", "alpha_schedule", "grad_clip", "select", "val"):
        del old[key]
    opts = resume_options(old, tmp_path)
    assert (opts.alpha_betas, opts.alpha_schedule, opts.grad_clip) == (
        [0.5, 0.999],
        "constant",
        0.0,
    )
    assert opts.select == "argmax"
    opts = resume_options({**old, "budget_params": 20_000}, tmp_path)
    assert opts.select == "budget" and opts.budget_params == 20_000


# ----------------------------------------------------------------------------------------------
# The package: imports run one way; the search as an object
# ----------------------------------------------------------------------------------------------
def test_search_package_imports_run_one_way() -> None:
    """The modules of dualsr.compression.search import each other without a cycle (typing-only
    imports included), and never from inside a function (no import dodges a cycle)."""
    import ast

    folder = Path(search_module.__file__).parent
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in modules:
        tree = ast.parse((folder / f"{name}.py").read_text())
        graph[name] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                target = (node.module or "").split(".")[0]
                assert target in modules, (name, target)
                graph[name].add(target)
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(func):
                    assert not (isinstance(node, ast.ImportFrom) and node.level == 1), (
                        f"{name}.{func.name} imports a sibling inside a function"
                    )
    assert graph["options"] == set()  # the bottom: the defaults
    done: list[str] = []
    while len(done) < len(graph):  # peel off modules whose imports are all done
        ready = sorted(m for m in graph if m not in done and graph[m] <= set(done))
        assert ready, f"import cycle among {sorted(set(graph) - set(done))}"
        done += ready


def test_channel_search_step_by_step_equals_search_channels(tmp_path: Path) -> None:
    kwargs = dict(target_rate=0.3, steps=5, output=None, steps_per_epoch=2)
    batches = ([pyramid_batch(0), pyramid_batch(2)], [pyramid_batch(1), pyramid_batch(3)])
    straight = search_channels(tiny_model(), None, *batches, **kwargs)
    search = ChannelSearch(tiny_model(), None, *batches, **kwargs)
    records = search.epoch()
    assert [r["step"] for r in records] == [1, 2] and search.done == 2
    records += [search.step()]
    records += search.epoch()  # steps 4 (end of epoch 2)
    while not search.finished:
        records.append(search.step())
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    result = search.result()
    assert result.finished and result.history == straight.history
    assert result.channel_config == straight.channel_config and result.alphas == straight.alphas
    sa, sb = result.model.state_dict(), straight.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(DualSRError, match="has ended"):
        search.step()
    # a result before the last step says so
    early = ChannelSearch(tiny_model(), None, *batches, **kwargs)
    early.step()
    assert early.result().stop_reason == "caller"
