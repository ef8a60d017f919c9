"""The compression pipeline as a user runs it: search -> prune -> finetune -> eval (tiny, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import dualsr
from dualsr.cli import main
from dualsr.data.image_io import write_image
from dualsr.models.registry import read_channel_config

from .conftest import random_image, tiny_model


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny convolutions: threads only add overhead on a shared machine


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    for i in range(4):
        write_image(train / f"t{i}.png", random_image(40, 44, seed=i))
    write_image(val / "v.png", random_image(36, 40, seed=9))
    return train, val


def test_search_prune_finetune_eval(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    train, val = folders
    model = tiny_model(4, 4, 1)
    ckpt = dualsr.save_model(tmp_path / "full.safetensors", model, dualsr.DualModels(4, 4))
    data = ["--data", str(train)]

    # stage 1: search (the other engineer's command)
    search_dir = tmp_path / "search"
    search_args = ["search", "--model", str(ckpt), *data, "--rate", "0.5", "-o", str(search_dir)]
    search_args += ["--steps", "2", "--patch-size", "32", "--batch-size", "2"]
    search_args += ["--cache", "memory", "--device", "cpu"]
    assert main(search_args) == 0
    config_file = search_dir / "channel_config.txt"
    config = read_channel_config(config_file)
    assert len(config) == len(model.channel_widths())

    # stage 2: prune to the searched configuration
    pruned = tmp_path / "pruned.safetensors"
    prune_args = ["prune", "--model", str(ckpt), "--config", str(config_file), *data]
    prune_args += ["--images", "4", "--patch-size", "32", "--batch-size", "2", "-o", str(pruned)]
    assert main(prune_args) == 0
    loaded = dualsr.load_checkpoint(pruned)
    assert loaded.model.channel_widths() == config
    assert loaded.duals is not None
    assert loaded.metadata["method"] == "drc" and loaded.metadata["passes"] > 0
    kept = loaded.metadata["kept_units"]
    assert [len(k) for k in kept] == loaded.model.channel_widths()

    # stage 3: fine-tune a few steps with distillation from the full model
    run_dir = tmp_path / "finetune"
    finetune_args = ["finetune", "--model", str(pruned), *data, "--teacher", str(ckpt)]
    finetune_args += ["--steps", "3", "-o", str(run_dir)]
    for kv in (
        "data.patch_size=32",
        "data.batch_size=2",
        "data.workers=0",
        "data.cache=memory",
        "train.device=cpu",
        "run.progress=false",
        "run.tensorboard=false",
    ):
        finetune_args += ["--set", kv]
    assert main(finetune_args) == 0
    tuned = run_dir / "latest.safetensors"
    assert dualsr.load_model(tuned).channel_widths() == config

    # evaluate
    eval_dir = tmp_path / "eval"
    assert main(["eval", "--model", str(tuned), "--data", str(val), "--out", str(eval_dir)]) == 0
    results = json.loads((eval_dir / "results.json").read_text())
    assert results["datasets"][0]["images"] == 1
    assert results["datasets"][0]["psnr"] > 0


def test_prune_cli_uniform_without_data_and_errors(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "u.safetensors"
    args = ["prune", "-m", str(tiny_checkpoint), "--rate", "0.5", "--method", "uniform"]
    # the old rounding (multiples of 4), requested explicitly; the default is now floor
    assert main([*args, "--rate-rounding", "multiple4", "-o", str(out)]) == 0
    meta = dualsr.load_checkpoint(out).metadata
    assert meta["method"] == "uniform" and meta["config_source"] == "uniform, rate 0.5"
    assert dualsr.load_model(out).channel_widths() == [4, 4, 8, 8, 8, 8]

    bad = tmp_path / "bad.txt"
    bad.write_text("4\n4\n8\n")
    cases = [
        (["--config", str(bad), "--method", "l1"], "3 entries"),
        (["--rate", "0.5", "--method", "magic"], "unknown pruning method"),
        (["--rate", "0.5", "--method", "cp"], "needs pruning images"),
        (["--rate", "0.5", "--method", "drc", "--data", str(tmp_path)], "dual models"),
        (["--rate", "0.5", "--method", "dcp", "--data", str(tmp_path)], "no images"),
        (
            ["--rate", "0.5", "--method", "dcp", "--data", str(tmp_path / "nothing")],
            "data folder not found",
        ),
    ]
    for extra, message in cases:
        assert main(["prune", "-m", str(tiny_checkpoint), "-o", str(out), *extra]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_finetune_config_is_training_from_the_pruned_checkpoint(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    from dualsr.compression.finetune import finetune_config
    from dualsr.errors import ConfigError

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: {preset: drn-s-x4}\noptim: {lr: 5.0e-5}\ntrain: {steps: 7}\n")
    cfg = finetune_config(
        tiny_checkpoint, tmp_path / "run", [tmp_path], teacher=tiny_checkpoint, recipe=recipe
    )
    assert cfg.model.init == str(tiny_checkpoint) and cfg.model.preset is None
    assert cfg.loss.distill is not None and cfg.loss.distill.weight == 1.0
    assert cfg.optim.lr == 5e-5 and cfg.train.steps == 7
    assert [s.hr for s in cfg.data.train] == [str(tmp_path)]
    cfg = finetune_config(tiny_checkpoint, tmp_path / "run", [tmp_path], steps=3)
    assert cfg.loss.distill is None and cfg.train.steps == 3
    with pytest.raises(ConfigError, match="teacher checkpoint not found"):
        finetune_config(tiny_checkpoint, tmp_path, [tmp_path], teacher=tmp_path / "no.pt")
    with pytest.raises(ConfigError, match="no training images"):
        finetune_config(tiny_checkpoint, tmp_path)
