"""Failure paths as a new user meets them: checked before the work, one line, nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import dualsr
from dualsr.cli import main
from dualsr.data.image_io import write_image

from .conftest import random_image, tiny_model

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# eval
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def bench_sets(tmp_path: Path) -> tuple[Path, Path]:
    """Two benchmark folders; the second holds a corrupt and a too-small image."""
    good, mixed = tmp_path / "good", tmp_path / "mixed"
    good.mkdir()
    mixed.mkdir()
    write_image(good / "a.png", random_image(24, 28, seed=1))
    write_image(mixed / "b.png", random_image(32, 24, seed=2))
    (mixed / "c.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    write_image(mixed / "d.png", random_image(3, 3, seed=3))
    return good, mixed


def test_eval_one_bad_image_does_not_stop_the_rest(
    bench_sets: tuple[Path, Path],
    tmp_path: Path,
    tiny_checkpoint: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    good, mixed = bench_sets
    out = tmp_path / "res"
    args = ["eval", "-m", str(tiny_checkpoint), "--data", str(good), str(mixed), "--out", str(out)]
    assert main(args) == 1  # something failed, but everything else was scored
    err = capsys.readouterr().err
    assert "c.png" in err and "d.png" in err and "smaller than the scale" in err
    doc = json.loads((out / "results.json").read_text())
    assert [r["image"] for r in doc["images"]] == ["a.png", "b.png"]
    assert sorted(doc["datasets"][1]["failed"]) == ["c.png", "d.png"]


def test_eval_checks_folders_and_out_before_any_work(
    bench_sets: tuple[Path, Path],
    tmp_path: Path,
    tiny_checkpoint: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good, _ = bench_sets
    calls: list[int] = []
    monkeypatch.setattr(dualsr.TorchUpscaler, "__call__", lambda *a, **k: calls.append(1))
    base = ["eval", "-m", str(tiny_checkpoint)]
    assert main([*base, "--data", str(good), str(tmp_path / "nope")]) == 1
    assert "data folder not found" in capsys.readouterr().err
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me")
    assert main([*base, "--data", str(good), "--out", str(taken)]) == 1
    assert "is an existing file, not a folder" in capsys.readouterr().err
    assert calls == [] and taken.read_text() == "keep me"


# ----------------------------------------------------------------------------------------------
# search, prune, finetune, train: outputs checked first, results kept
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "0"], "--steps must be at least 1"),
        (["--multiple", "64"], "--multiple 64 is wider than the narrowest searched layer"),
        (["--patch-size", "18"], "--patch-size (18) must be a positive multiple of the scale"),
        (["-o", "FILE"], "is an existing file; the search writes a folder"),
    ],
)
def test_search_refuses_meaningless_or_unwritable_runs(
    tmp_path: Path,
    train_folder: Path,
    tiny_checkpoint: Path,
    capsys: pytest.CaptureFixture,
    extra: list[str],
    message: str,
) -> None:
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    extra = [str(existing) if e == "FILE" else e for e in extra]
    args = ["search", "-m", str(tiny_checkpoint), "--data", str(train_folder), "--rate", "0.5"]
    args += ["--steps", "1", "--patch-size", "16", "--cache", "memory", "-o", str(tmp_path / "o")]
    assert main(args + extra) == 1
    err = capsys.readouterr().err
    assert message in err and "data." not in err and len(err.strip().splitlines()) == 1, err


def test_prune_checks_its_output_first_and_rescues_the_result(
    tmp_path: Path,
    tiny_checkpoint: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = ["prune", "-m", str(tiny_checkpoint), "--rate", "0.5", "--method", "uniform"]
    args += ["--rate-rounding", "multiple4"]
    folder = tmp_path / "existing"
    folder.mkdir()
    assert main([*args, "-o", str(folder)]) == 1
    assert "is an existing folder; give a file name" in capsys.readouterr().err

    # the folder vanishes (or the disk fills) during the work: the result lands elsewhere
    from dualsr.cli import prune as prune_cli

    real = prune_cli.save_model
    target = tmp_path / "gone" / "p.safetensors"

    def flaky(path, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if Path(path) == target:
            raise OSError(28, "No space left on device")
        return real(path, *a, **k)

    monkeypatch.setattr(prune_cli, "save_model", flaky)
    assert main([*args, "-o", str(target)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "the result was saved to" in err
    rescued = Path(err.split("the result was saved to ")[1].split(" instead")[0])
    assert dualsr.load_model(rescued).channel_widths() == [4, 4, 8, 8, 8, 8]
    rescued.unlink()


def test_prune_and_finetune_take_preset_names(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "p.safetensors"
    args = ["prune", "-m", "drn-t-x4", "--rate", "0.5", "--method", "uniform", "-o", str(out)]
    assert main(args) == 0
    assert dualsr.load_model(out).arch.n_feats == 8
    assert (
        main(["prune", "-m", "drn-s-x4", "--rate", "0.5", "--method", "uniform", "-o", str(out)])
        == 1
    )
    assert "has no trained weights in this package" in capsys.readouterr().err


def test_finetune_names_its_own_option_for_an_existing_run(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "ft"
    (run / "checkpoints").mkdir(parents=True)
    dualsr.save_model(run / "checkpoints" / "step-000001.safetensors", tiny_model())
    assert (
        main(["finetune", "-m", str(tiny_checkpoint), "--data", str(tmp_path), "-o", str(run)]) == 1
    )
    err = capsys.readouterr().err
    assert f"-o {run} already holds a fine-tuning run" in err and "run.dir" not in err


def test_train_run_dir_that_cannot_be_written_fails_first(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from .test_training import write_tiny_yaml

    config = write_tiny_yaml(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "--config", str(config), "--run-dir", str(blocker / "run")]) == 1
    err = capsys.readouterr().err
    assert "cannot be created" in err and "--run-dir" in err and "Traceback" not in err


def test_a_new_run_does_not_append_to_a_failed_runs_metrics(tmp_path: Path) -> None:
    from .test_training import tiny_config

    cfg = tiny_config(tmp_path, "train.steps=2")
    run = Path(cfg.run.dir)
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 7, "loss": 1.0}\n')  # no checkpoint was saved
    dualsr.train(cfg)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert "7" in (run / "metrics.previous.jsonl").read_text()


# ----------------------------------------------------------------------------------------------
# checkpoints, small things
# ----------------------------------------------------------------------------------------------
def test_a_missing_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    state = tiny_model().state_dict()
    del state["add_mean.bias"]
    path = tmp_path / "m.pt"
    torch.save(state, path)
    with pytest.raises(dualsr.CheckpointError, match=r"missing add_mean\.bias"):
        dualsr.load_model(path)


def test_version_threads_and_a_closed_pipe(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == "dualsr 0.1.0"
    for cmd in (["bench", "drn-t-x4"], ["profile", "drn-t-x4"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*cmd, "--threads", "-2"])
        assert exit_info.value.code == 2
        assert "--threads: must be at least 1" in capsys.readouterr().err
    proc = subprocess.run(  # unbuffered: every line is written at once, after head has left
        f"{sys.executable} -m dualsr models | head -1",
        shell=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
        timeout=120,
    )
    assert proc.stdout.startswith("preset") and "Traceback" not in proc.stderr, proc.stderr


def test_errors_start_on_their_own_line_after_a_progress_bar(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", random_image(6, 6))
    (folder / "b.png").write_bytes(b"not a png")
    Image.new("RGB", (5, 5)).save(folder / "c.png")
    assert (
        main(["upscale", str(folder), "-o", str(tmp_path / "o"), "-m", str(tiny_checkpoint)]) == 1
    )
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "error:" in line]
    assert lines and all(line.startswith("error:") for line in lines), err


def test_profile_and_bench_refuse_a_forward_that_cannot_fit(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dualsr.tiling.available_memory_bytes", lambda: 1 << 30)
    assert main(["profile", "drn-s-x4", "--input", "2000x2000"]) == 1
    err = capsys.readouterr().err
    assert "GiB (estimated), but 1.0 GiB are available" in err and "--no-memory" in err
    assert main(["bench", "drn-s-x4", "--input", "2000x2000"]) == 1
    assert "time a smaller --input" in capsys.readouterr().err


def test_export_refuses_an_opset_it_cannot_write(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    pytest.importorskip("onnx")
    assert main(["export", "drn-t-x4", "-o", str(tmp_path / "m.onnx"), "--opset", "99"]) == 1
    err = capsys.readouterr().err
    assert "opset 99 is newer than this PyTorch can export" in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()
