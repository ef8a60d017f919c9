"""`dualsr upscale` without PyTorch: the one-time measurement, the prediction, the ONNX Runtime
run in a process where `import torch` fails, and what falls back to PyTorch."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import dualsr
from dualsr.cli import main
from dualsr.data.image_io import read_image, write_image
from dualsr.deploy import autoselect, launch
from dualsr.deploy.launch import LaunchRecord, OrtLaunchUpscaler
from dualsr.deploy.onnx import OnnxUpscaler, export_onnx

from .conftest import random_image, tiny_model

pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]


def no_torch_env(tmp_path: Path) -> dict[str, str]:
    """This environment with a fake `torch` first on the path, whose import fails."""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "__init__.py").write_text("raise ImportError('torch must not be imported here')\n")
    path = os.pathsep.join([str(tmp_path / "fake"), str(ROOT / "src")])
    return {**os.environ, "PYTHONPATH": path}


def record_for(graph: Path, **changes: object) -> LaunchRecord:
    """A record for a tiny x4 graph: ONNX Runtime starts 1 s sooner, 2x slower per pixel."""
    base = LaunchRecord(
        onnx=str(graph),
        scale=4,
        n_feats=4,
        threads=2,
        torch_label="fused fp32",
        torch_start_s=1.1,
        torch_s_per_pixel=1e-6,
        ort_start_s=0.1,
        ort_s_per_pixel=2e-6,
    )
    return replace(base, **changes)


def upscale_args(model: Path | str, **changes: object) -> argparse.Namespace:
    """The parsed options of a plain `dualsr upscale -m MODEL`."""
    args = argparse.Namespace(
        model=str(model),
        backend="auto",
        device="cpu",
        precision="auto",
        self_ensemble=False,
        random_weights=False,
        tile=None,
        tile_by_default=True,
        tile_overlap=16,
        scale=None,
    )
    for k, v in changes.items():
        setattr(args, k, v)
    return args


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own $DUALSR_HOME: its records only."""
    monkeypatch.setenv("DUALSR_HOME", str(tmp_path / "cache"))


@pytest.fixture
def graph(tmp_path: Path) -> Path:
    return export_onnx(tiny_model(), tmp_path / "tiny.onnx")


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    write_image(path, random_image(20, 24, seed=3))
    return path


def test_prediction_and_break_even() -> None:
    rec = record_for(Path("g.onnx"))
    ort, torch_s = rec.predicted(100_000)
    assert ort == pytest.approx(0.1 + 0.2) and torch_s == pytest.approx(1.1 + 0.1)
    assert rec.break_even_pixels() == pytest.approx(1e6)  # 1 s saved / 1e-6 s more per pixel
    assert "under 1.00 M LR pixels" in rec.summary()
    assert replace(rec, ort_s_per_pixel=1e-6).break_even_pixels() == float("inf")
    assert "without PyTorch always" in replace(rec, ort_s_per_pixel=5e-7).summary()
    assert replace(rec, ort_start_s=2.0).break_even_pixels() == 0
    assert "without PyTorch never" in replace(rec, ort_start_s=2.0).summary()


def test_the_key_follows_the_file_the_machine_and_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"x" * 10)
    key = launch.launch_key(path, "auto")
    assert launch.launch_key(path, "auto") == key
    assert launch.launch_key(path, "fp32") != key
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert launch.launch_key(path, "auto") != key
    monkeypatch.delenv("OMP_NUM_THREADS")
    os.utime(path, ns=(1, 1))  # the file changed (or was replaced)
    assert launch.launch_key(path, "auto") != key


def test_model_file_for_names_only_local_weights(tmp_path: Path) -> None:
    ckpt = dualsr.save_model(tmp_path / "m.safetensors", tiny_model())
    assert launch.model_file_for(str(ckpt)) == ckpt.resolve()
    assert launch.model_file_for("drn-t-x4") is not None  # shipped weights
    for spec in ("bicubic", "drn-s-x4", str(tmp_path / "nothing.pt"), "https://x/y.pt"):
        assert launch.model_file_for(spec) is None, spec
    (tmp_path / "g.onnx").write_bytes(b"onnx")
    assert launch.model_file_for(str(tmp_path / "g.onnx")) is None


def test_small_jobs_launch_without_torch_large_ones_and_other_options_do_not(
    tmp_path: Path, graph: Path, photo: Path
) -> None:
    ckpt = dualsr.save_model(tmp_path / "m.safetensors", tiny_model())
    args = upscale_args(ckpt)
    assert launch.launch_without_torch(args, [photo]) is None  # no record yet
    key = launch.launch_key(ckpt.resolve(), "auto")
    launch.write_record(key, record_for(graph))
    up = launch.launch_without_torch(args, [photo])
    assert isinstance(up, OrtLaunchUpscaler) and up.scale == 4 and up.tile == 256
    for change in (
        {"precision": "bf16"},
        {"self_ensemble": True},
        {"backend": "fused"},
        {"backend": "onnxruntime"},
        {"device": "cuda"},
        {"random_weights": True},
        {"scale": 8},  # the PyTorch path names the mismatch
    ):
        assert launch.launch_without_torch(upscale_args(ckpt, **change), [photo]) is None, change
    # 20 x 24 pixels: ONNX Runtime; past the break-even (1 M pixels here): PyTorch
    launch.write_record(key, record_for(graph, ort_start_s=1.0999, ort_s_per_pixel=1.1e-6))
    assert launch.launch_without_torch(args, [photo]) is not None
    launch.write_record(key, record_for(graph, ort_start_s=1.0, ort_s_per_pixel=1.5e-3))
    assert launch.launch_without_torch(args, [photo]) is None
    # --precision fp32 has its own record; tiles as asked
    launch.write_record(launch.launch_key(ckpt.resolve(), "fp32"), record_for(graph))
    up = launch.launch_without_torch(upscale_args(ckpt, precision="fp32", tile=0), [photo])
    assert up is not None and up.tile == 0
    up = launch.launch_without_torch(upscale_args(ckpt, precision="fp32", tile="auto"), [photo])
    assert up is not None and up.tile >= 32


def test_the_launch_runs_like_the_onnx_upscaler(graph: Path) -> None:
    image = random_image(40, 70, seed=1).astype(np.float32)
    for tile in (0, 32):
        ours = OrtLaunchUpscaler(record_for(graph), tile=tile, tile_overlap=8)
        theirs = OnnxUpscaler(graph, threads=2, tile=tile, tile_overlap=8)
        assert np.array_equal(ours(image), theirs(image))
        assert np.array_equal(ours(image, out_dtype=np.float32), theirs(image, np.float32))
    calls: list[tuple[int, int]] = []
    OrtLaunchUpscaler(record_for(graph), 32, 8, lambda d, t: calls.append((d, t)))(image)
    assert calls[-1] == (2, 2)  # 1 x 2 tiles (tile_grid)


@pytest.mark.launch_measurement
def test_measured_once_then_upscaled_in_a_process_without_torch(
    tmp_path: Path, photo: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured: list[int] = []

    def imports() -> dict[str, float]:  # as if PyTorch took 5 s to import
        measured.append(1)
        return {"torch": 5.0, "onnxruntime": 0.0}

    monkeypatch.setattr(autoselect, "import_seconds", imports)
    exact = tmp_path / "exact.png"
    base = ["upscale", str(photo), "-m", str(tiny_checkpoint)]
    assert main([*base, "-o", str(exact), "--backend", "eager", "--precision", "fp32"]) == 0
    assert launch.read_records() == {} and not measured  # eager: not auto, nothing measured
    assert main([*base, "-o", str(tmp_path / "first.png")]) == 0
    record = launch.read_records()[launch.launch_key(tiny_checkpoint.resolve(), "auto")]
    assert record.scale == 4 and record.n_feats == 4 and Path(record.onnx).is_file()
    assert record.torch_start_s >= 5.0 and record.ort_start_s < 5.0
    assert record.torch_s_per_pixel > 0 and record.ort_s_per_pixel > 0 and measured == [1]
    assert main([*base, "-o", str(tmp_path / "again.png"), "--precision", "fp32"]) == 0
    assert measured == [1]  # the imports are measured once per machine

    out = tmp_path / "no_torch.png"
    proc = subprocess.run(
        [sys.executable, "-m", "dualsr", *base, "-o", str(out)],
        env=no_torch_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime fp32 without PyTorch" in proc.stderr
    diff = np.abs(read_image(out).pixels - read_image(exact).pixels)
    assert diff.max() <= 1  # exact fp32, up to the rounding of a few pixels


@pytest.mark.launch_measurement
def test_a_damaged_graph_falls_back_to_torch_and_is_measured_again(
    tmp_path: Path,
    photo: Path,
    tiny_checkpoint: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(autoselect, "import_seconds", lambda: {"torch": 5.0, "onnxruntime": 0.0})
    broken = tmp_path / "home" / "broken.onnx"
    broken.parent.mkdir()
    broken.write_bytes(b"not a graph")
    key = launch.launch_key(tiny_checkpoint.resolve(), "auto")
    launch.write_record(key, record_for(broken))
    args = ["upscale", str(photo), "-m", str(tiny_checkpoint), "-o", str(tmp_path / "o.png")]
    with pytest.warns(UserWarning, match="could not load it .*; using PyTorch"):
        assert main(args) == 0
    assert not broken.exists()
    again = launch.read_records()[key]  # measured anew by the PyTorch run
    assert again.onnx != str(broken) and Path(again.onnx).is_file()


def test_clear_cache_removes_the_launch_records(graph: Path) -> None:
    launch.write_record("k", record_for(graph))
    assert launch.launch_path().is_file()
    assert launch.launch_path() in autoselect.clear_cache()
    assert launch.read_records() == {}


def test_an_unreadable_launch_cache_is_ignored_with_a_warning() -> None:
    launch.launch_path().parent.mkdir(parents=True, exist_ok=True)
    launch.launch_path().write_text("{not json")
    with pytest.warns(UserWarning, match="launch cache .* unreadable"):
        assert launch.read_records() == {}
    with pytest.warns(UserWarning, match="unreadable"):
        launch.write_record("k", record_for(Path("g.onnx")))  # rewritten
    assert set(launch.read_records()) == {"k"}


def test_upscale_command_imports_without_torch(tmp_path: Path) -> None:
    code = "import dualsr.cli.upscale, dualsr.deploy.launch, dualsr.tiling, dualsr.pretrained"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=no_torch_env(tmp_path), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_import_seconds_measures_both_imports() -> None:
    found = autoselect.import_seconds()
    assert found["torch"] > found["onnxruntime"] > 0


@pytest.mark.launch_measurement
def test_env_measures_the_default_model_which_then_runs_without_torch(
    tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dualsr.cli.env import describe_launch

    assert "not measured yet for drn-t-x4" in describe_launch()
    monkeypatch.setattr(autoselect, "import_seconds", lambda: {"torch": 1.0, "onnxruntime": 0.1})
    line = describe_launch(measure=True)  # `dualsr env --calibrate`
    assert line.startswith("drn-t-x4: ONNX Runtime fp32 without PyTorch")
    assert describe_launch() == line  # stored
    out = tmp_path / "default.png"  # `dualsr upscale photo` (the default model), no torch
    proc = subprocess.run(
        [sys.executable, "-m", "dualsr", "upscale", str(photo), "-o", str(out)],
        env=no_torch_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "without PyTorch" in proc.stderr and read_image(out).pixels.shape == (80, 96, 3)


@pytest.mark.launch_measurement
def test_a_failed_measurement_only_warns_after_the_images_are_written(
    tmp_path: Path,
    photo: Path,
    tiny_checkpoint: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "o.png"

    def broken(upscaler: object, model_file: Path, precision: str) -> None:
        assert out.is_file()  # measured after the images
        raise RuntimeError("disk full")

    monkeypatch.setattr(autoselect, "record_launch", broken)
    assert main(["upscale", str(photo), "-m", str(tiny_checkpoint), "-o", str(out)]) == 0
    assert "warning: could not measure the start-up without PyTorch (disk full)" in (
        capsys.readouterr().err
    )


@pytest.mark.launch_measurement
def test_a_deleted_graph_is_measured_again(
    tmp_path: Path, photo: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(autoselect, "import_seconds", lambda: {"torch": 5.0, "onnxruntime": 0.0})
    args = ["upscale", str(photo), "-m", str(tiny_checkpoint), "-o", str(tmp_path / "o.png")]
    assert main(args) == 0
    key = launch.launch_key(tiny_checkpoint.resolve(), "auto")
    Path(launch.read_records()[key].onnx).unlink()  # e.g. removed by hand
    assert launch.launch_without_torch(upscale_args(tiny_checkpoint), [photo]) is None
    assert main(args) == 0  # PyTorch, which exports and measures again
    assert Path(launch.read_records()[key].onnx).is_file()


@pytest.mark.launch_measurement
def test_a_read_only_cache_is_not_measured_into(
    tmp_path: Path,
    photo: Path,
    tiny_checkpoint: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    measured: list[int] = []
    monkeypatch.setattr(autoselect, "import_seconds", lambda: measured.append(1) or {})
    monkeypatch.setattr(autoselect, "writable_folder", lambda folder: False)  # as if read-only
    args = ["upscale", str(photo), "-m", str(tiny_checkpoint), "-o", str(tmp_path / "o.png")]
    assert main(args) == 0
    assert not launch.launch_path().exists() and not measured
    assert "warning" not in capsys.readouterr().err  # quietly: every run takes PyTorch
