"""experiments/greedy_vs_official.py: each side runs the greedy it names; fresh crops are drawn."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

import dualsr
from dualsr.compression.pruning_data import CropSource
from dualsr.data.image_io import write_image

from .conftest import random_image


def _script() -> ModuleType:
    return importlib.import_module("experiments.greedy_vs_official")


def _inputs(tmp_path: Path) -> list[str]:
    torch.manual_seed(0)
    model, duals = dualsr.DRN(4, 4, 1).eval(), dualsr.DualModels(4, 4).eval()
    ckpt = dualsr.save_model(tmp_path / "tiny.safetensors", model, duals)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        write_image(data / f"{i}.png", random_image(24, 24, seed=i))
    args = ["--model", str(ckpt), "--data", str(data), "--rate", "0.5", "--images", "4"]
    return args + ["--patch-size", "16", "--batch-size", "2", "--gamma", "10"]


def test_the_moments_side_runs_the_moments_greedy(tmp_path, monkeypatch) -> None:
    script = _script()
    seen: list[str] = []
    real = script.select_greedy

    def spy(*args, **kwargs):
        seen.append(args[-1].greedy)  # the options, last positional argument
        return real(*args, **kwargs)

    monkeypatch.setattr(script, "select_greedy", spy)
    out = tmp_path / "cmp.json"
    assert script.main([*_inputs(tmp_path), "--layers", "2", "--out", str(out)]) == 0
    # per layer: the moments greedy on a copy, then the released loop (PruneOptions' default)
    assert seen == ["moments", "passes"] * 2
    assert json.loads(out.read_text())["settings"]["crops"] == "fixed"


def test_fresh_crops_give_the_released_loop_new_crops_every_pass(
    tmp_path, monkeypatch, capsys
) -> None:
    script = _script()
    passes: list[int] = []
    real = CropSource.batches_for_pass

    def spy(self, k):
        passes.append(k)
        return real(self, k)

    monkeypatch.setattr(CropSource, "batches_for_pass", spy)
    out = tmp_path / "cmp.json"
    args = [*_inputs(tmp_path), "--crops", "fresh", "--layers", "1", "--out", str(out)]
    assert script.main(args) == 0
    assert "identical selections in" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["settings"]["crops"] == "fresh" and result["summary"]["compared"] == 1
    # the first layer keeps 2 of 4 units: the released loop makes a gradient pass and a
    # local-SGD epoch per unit, each on a new draw; the moments greedy one draw for the layer
    assert max(passes) >= 3 and len(set(passes)) >= 4
    row = result["layers"][0]
    assert len(row["official"]) == len(row["moments"]) == row["kept"] == 2


def test_crops_must_be_fixed_or_fresh(tmp_path) -> None:
    with pytest.raises(SystemExit):
        _script().main([*_inputs(tmp_path), "--crops", "random"])
