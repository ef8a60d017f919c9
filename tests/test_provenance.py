"""What shipped weights record: a recipe without local paths, the cost, the PSNR curve; the
defaults of ``dualsr upscale`` per scale and the shipped-models table of ``dualsr models``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dualsr import load_model, pretrained
from dualsr.cli import main
from dualsr.errors import CheckpointError
from dualsr.provenance import portable_recipe, psnr_curve, read_metrics, training_cost

from .conftest import random_image


def test_portable_recipe_keeps_data_set_names_and_drops_machine_paths() -> None:
    config = {
        "model": {"n_feats": 8, "init": "/home/me/runs/base/latest.safetensors"},
        "data": {
            "train": [{"hr": "/work/shared/datasets/T91", "lr": None}, "/data/BSD200/"],
            "cache_dir": "/work/main/runs/cache",
            "batch_size": 16,
        },
        "val": {"folders": ["/work/shared/datasets/Set5"], "every": 1000},
        "run": {"dir": "/root/dualsr-runs/long-x4", "keep": 2},
        "loss": {"distill": {"teacher": "/work/main/runs/base.safetensors", "weight": 1.0}},
        "train": {"steps": 16000},
    }
    recipe = portable_recipe(config)
    assert recipe["data"]["train"] == [{"hr": "T91", "lr": None}, "BSD200"]
    assert recipe["val"]["folders"] == ["Set5"]
    assert recipe["model"]["init"] == "latest.safetensors"
    assert "cache_dir" not in recipe["data"] and "dir" not in recipe["run"]
    assert recipe["train"] == {"steps": 16000} and recipe["data"]["batch_size"] == 16
    assert recipe["loss"]["distill"] == {"teacher": "base.safetensors", "weight": 1.0}
    assert "/" not in json.dumps(recipe)
    assert config["run"]["dir"] == "/root/dualsr-runs/long-x4"  # the input is not changed


def test_cost_and_curve_follow_resumes_and_skip_pauses(tmp_path: Path) -> None:
    rows = [
        {"step": 10, "time": 0, "patches_per_s": 16.0},  # 10 steps of 16 patches: 10 s
        {"step": 20, "time": 10, "patches_per_s": 16.0},
        {"step": 20, "time": 11, "val": {"Set5": {"psnr": 30.0}}, "val_psnr": 30.0},
        {"step": 30, "time": 50, "patches_per_s": 8.0},  # interrupted here, re-done below
        {"step": 30, "time": 9000, "patches_per_s": 32.0},  # 5 s; the pause is not counted
        {"step": 40, "time": 9005, "patches_per_s": 32.0},
        {"step": 40, "time": 9006, "val": {"Set5": {"psnr": 31.0}, "Set14": {"psnr": 27.5}}},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 41, "ti')
    kept = read_metrics(path)
    assert [r["step"] for r in kept] == [10, 20, 20, 30, 40, 40]
    cost = training_cost(kept, batch_size=16, threads=2)
    assert cost["steps"] == 40 and cost["threads"] == 2
    assert cost["hours"] == pytest.approx(30 / 3600, abs=1e-3)
    assert cost["cpu_hours"] == pytest.approx(2 * 30 / 3600, abs=1e-3)
    curve = psnr_curve(kept, batch_size=16, threads=2)
    assert [p["step"] for p in curve] == [20, 40]
    assert curve[0]["Set5"] == 30.0 and curve[1]["Set14"] == 27.5
    assert curve[0]["cpu_hours"] == pytest.approx(2 * 20 / 3600, abs=1e-3)
    assert curve[1]["cpu_hours"] == pytest.approx(2 * 30 / 3600, abs=1e-3)


def test_upscale_picks_the_default_of_its_scale(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dualsr.data.image_io import read_image, write_image

    src = tmp_path / "in.png"
    write_image(src, random_image(6, 7, seed=4))
    shipped = {"drn-t-x4": tiny_checkpoint}  # a tiny x4 model stands for the shipped one
    monkeypatch.setattr(pretrained, "shipped_weights", lambda name: shipped.get(name))
    # it is not the recorded file nor drn-t-x4's architecture: skip load_shipped's checks
    monkeypatch.setattr(pretrained, "load_shipped", lambda name: load_model(shipped[name]))
    out = tmp_path / "out.png"
    assert main(["upscale", str(src), "-o", str(out), "-t", "0"]) == 0
    assert read_image(out).pixels.shape[:2] == (24, 28)
    assert main(["upscale", str(src), "-o", str(out), "--scale", "4", "-t", "0"]) == 0
    with pytest.raises(CheckpointError, match=r"no trained x8 model ships.*--model"):
        pretrained.require_default_model(8)
    assert main(["upscale", str(src), "-o", str(tmp_path / "o8.png"), "--scale", "8"]) == 1
    assert not (tmp_path / "o8.png").exists()


def test_scale_must_match_the_given_model(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from dualsr.data.image_io import write_image

    src = tmp_path / "in.png"
    write_image(src, random_image(6, 7, seed=5))
    args = ["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", str(tiny_checkpoint)]
    assert main([*args, "--scale", "8"]) == 1
    assert not (tmp_path / "o.png").exists()
    assert main([*args, "-m", "bicubic", "--scale", "8"]) == 0


def test_models_lists_shipped_scores_speed_and_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    prov = {
        "eval": {"Set5": {"psnr": 31.8}, "Set14": {"psnr": 28.25}, "BSD100": {"psnr": 27.3}},
        "speed": {"ms": 377.4, "machine": "2 threads, x86_64"},
        "cost": {"steps": 16000, "cpu_hours": 4.5},
    }
    small = {**prov, "cost": {"steps": 2000, "cpu_hours": 0.55}, "derived_from": "drn-t-x4"}
    monkeypatch.setattr(
        "dualsr.cli.models.shipped_weights", lambda n: n in ("drn-t-x4", "drn-t50-x4")
    )
    monkeypatch.setattr(
        "dualsr.cli.models.shipped_provenance", lambda n: small if n == "drn-t50-x4" else prov
    )
    assert main(["models"]) == 0
    shipped = capsys.readouterr().out.split("\nshipped ")[1]
    line = next(ln for ln in shipped.splitlines() if ln.startswith("drn-t-x4 "))
    assert line.split()[2:5] == ["31.80", "28.25", "27.30"]
    assert "377ms" in line and "16,000 steps, 4.5 CPU-h" in line and "default x4" in line
    line = next(ln for ln in shipped.splitlines() if ln.startswith("drn-t50-x4 "))
    assert "drn-t-x4 + 2,000 steps, +0.6 CPU-h" in line and "default" not in line


def test_shipped_provenance_reads_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dualsr

    from .conftest import tiny_model

    path = tmp_path / "w.safetensors"
    dualsr.save_model(path, tiny_model(), metadata={"eval": {"Set5": {"psnr": 1.5}}})
    monkeypatch.setattr(pretrained, "shipped_weights", lambda name: path)
    assert pretrained.shipped_provenance("x")["eval"]["Set5"]["psnr"] == 1.5
    monkeypatch.setattr(pretrained, "shipped_weights", lambda name: None)
    assert pretrained.shipped_provenance("x") == {}
