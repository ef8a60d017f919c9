"""What a new user hit with ``upscale``, ``eval`` and ``export`` (issue 26, inference side)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualsr.cli import main
from dualsr.cli import upscale as upscale_cli
from dualsr.data.image_io import read_image, write_image
from dualsr.errors import CheckpointError, DualSRError
from dualsr.inference import check_device
from dualsr.models.registry import PRESETS, Preset
from dualsr.pretrained import resolve_model

from .conftest import random_image

TINY_PRESET = "tiny-untrained-x4"


@pytest.fixture
def tiny_preset(monkeypatch: pytest.MonkeyPatch) -> str:
    """A preset without trained weights, small enough to run."""
    monkeypatch.setitem(PRESETS, TINY_PRESET, Preset(4, 4, 1))
    return TINY_PRESET


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    write_image(path, random_image(10, 12, seed=5))
    return path


# ----------------------------------------------------------------------------------------------
# 1. eval: an image too small to score is named, listed under failed, and the rest are scored
# ----------------------------------------------------------------------------------------------
def test_eval_lists_images_too_small_to_score_and_scores_the_rest(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "Mixed"
    data.mkdir()
    write_image(data / "a.png", random_image(40, 44, seed=1))
    write_image(data / "b.png", random_image(36, 40, seed=2))
    write_image(data / "four.png", random_image(4, 4, seed=3))
    write_image(data / "twelve.png", random_image(12, 12, seed=4))
    out = tmp_path / "res"
    args = ["eval", "-m", str(tiny_checkpoint), "--data", str(data), "--out", str(out)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "four.png" in captured.err and "twelve.png" in captured.err
    assert "too small to score at x4" in captured.err and "at least 19x19" in captured.err
    assert "failed: Mixed/four.png" in captured.out and "failed: Mixed/twelve.png" in captured.out
    doc = json.loads((out / "results.json").read_text())
    assert [r["image"] for r in doc["images"]] == ["a.png", "b.png"]
    assert sorted(f["image"] for f in doc["failed"]) == ["four.png", "twelve.png"]
    assert sorted(doc["datasets"][0]["failed"]) == ["four.png", "twelve.png"]
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert [(r["image"], bool(r["psnr"]), bool(r["error"])) for r in rows] == [
        ("a.png", True, False),
        ("b.png", True, False),
        ("four.png", False, True),
        ("twelve.png", False, True),
    ]


# ----------------------------------------------------------------------------------------------
# 2. upscale -r with the output folder inside the input tree: reruns work
# ----------------------------------------------------------------------------------------------
def test_rerun_with_the_output_folder_inside_the_input_tree(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    tree = tmp_path / "tree2"
    (tree / "sub").mkdir(parents=True)
    write_image(tree / "photo.jpg", random_image(8, 9, seed=1))
    write_image(tree / "sub" / "a.png", random_image(7, 6, seed=2))
    out = tree / "up"
    args = ["upscale", str(tree), "-o", str(out), "-r", "-m", str(tiny_checkpoint)]
    assert main(args) == 0
    assert main(args) == 0  # the outputs of the first run are not inputs now
    assert "wrote 2 image(s)" in capsys.readouterr().out
    assert main([*args, "--skip-existing"]) == 0
    assert "skipped 2 existing" in capsys.readouterr().out
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert made == ["photo_x4.jpg", "sub/a_x4.png"]


# ----------------------------------------------------------------------------------------------
# 3. ICC profile, EXIF and DPI are carried to the output; the orientation becomes 1
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "has_dpi"), [("jpg", True), ("png", True), ("webp", False)])
def test_icc_exif_and_dpi_are_kept(
    tmp_path: Path, tiny_checkpoint: Path, fmt: str, has_dpi: bool
) -> None:
    icc = b"\x00\x00\x02\x0cfake icc profile for the test" + bytes(200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: applied on reading
    exif[0x010F] = "PhoneMaker"
    src = tmp_path / "wide.jpg"
    Image.fromarray(random_image(6, 8)).save(
        src, exif=exif.tobytes(), icc_profile=icc, dpi=(300, 300), quality=95
    )
    out = tmp_path / "out"
    args = ["upscale", str(src), "-o", str(out), "-m", str(tiny_checkpoint), "--format", fmt]
    assert main(args) == 0
    with Image.open(out / f"wide_x4.{fmt}") as im:
        assert im.size == (24, 32)  # 8 x 6 turned upright, then x4
        assert im.info.get("icc_profile") == icc
        kept = im.getexif()
        assert kept.get(0x010F) == "PhoneMaker" and kept.get(0x0112) == 1
        if has_dpi:
            assert im.info["dpi"] == pytest.approx((300, 300), abs=0.01)


# ----------------------------------------------------------------------------------------------
# 4. a preset without trained weights is refused unless --random-weights
# ----------------------------------------------------------------------------------------------
def test_a_preset_without_weights_is_refused_with_the_models_that_fit(
    tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "o.png"
    assert main(["upscale", str(photo), "-o", str(out), "--model", "drn-s-x4"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no trained weights" in err
    assert "--model drn-s-x4-paper" in err and "--random-weights" in err
    assert not out.exists()
    assert main(["export", "drn-s30-x4", "-o", str(tmp_path / "m.onnx")]) == 1
    assert "drn-s30-x4-paper" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
    folder = tmp_path / "data"
    folder.mkdir()
    write_image(folder / "a.png", random_image(40, 40))
    assert main(["eval", "-m", "drn-s-x8", "--data", str(folder), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no trained weights" in err and "drn-t-x8" in err  # the shipped x8 model
    with pytest.raises(CheckpointError, match="no trained weights"):
        resolve_model("drn-l-x4")


def test_random_weights_on_purpose_and_speed_tools_keep_presets(
    tmp_path: Path, photo: Path, tiny_preset: str, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "o.png"
    args = ["upscale", str(photo), "-o", str(out), "-m", tiny_preset, "--random-weights"]
    with pytest.warns(UserWarning, match="RANDOM weights"):
        assert main(args) == 0
    assert out.is_file()
    onnx = tmp_path / "m.onnx"
    args = ["export", tiny_preset, "-o", str(onnx), "--random-weights", "--no-check"]
    with pytest.warns(UserWarning, match="RANDOM weights"):
        assert main(args) == 0
    assert onnx.is_file()
    with pytest.warns(UserWarning, match="RANDOM weights"):
        assert resolve_model(tiny_preset, random_weights=True).scale == 4
    assert main(["profile", "drn-s-x4", "--input", "8x8", "--no-memory"]) == 0  # no flag needed


# ----------------------------------------------------------------------------------------------
# 5. tiles below the useful minimum are refused, saying why and the minimum
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["upscale", "eval"])
def test_tiny_tiles_are_refused(
    tmp_path: Path, photo: Path, command: str, capsys: pytest.CaptureFixture
) -> None:
    where = ["--data", str(tmp_path)] if command == "eval" else [str(photo), "-o", str(tmp_path)]
    with pytest.raises(SystemExit):
        main([command, *where, "-m", "bicubic", "--tile", "1"])
    err = capsys.readouterr().err
    assert "smallest useful tile, 32" in err and "overlap" in err


# ----------------------------------------------------------------------------------------------
# 6. smaller ones
# ----------------------------------------------------------------------------------------------
def test_an_onnx_or_image_file_given_as_a_model_is_one_line(
    tmp_path: Path, photo: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08\x08\x12\x07pytorch\x1a\x032.0" + bytes(64))  # an ONNX header
    assert main(["export", str(onnx), "-o", str(tmp_path / "m2.onnx")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "is an ONNX model, not a model checkpoint" in err
    assert "Weights only" not in err and "dualsr upscale --model" in err
    renamed = tmp_path / "m.bin"
    renamed.write_bytes(onnx.read_bytes())
    assert main(["upscale", str(photo), "-o", str(tmp_path / "o"), "-m", str(renamed)]) == 1
    assert "rename it to *.onnx" in capsys.readouterr().err
    assert main(["upscale", str(photo), "-o", str(tmp_path / "o"), "-m", str(photo)]) == 1
    assert "it is a PNG image, not a model checkpoint" in capsys.readouterr().err
    # a real checkpoint still loads
    assert main(["upscale", str(photo), "-o", str(tmp_path / "o"), "-m", str(tiny_checkpoint)]) == 0


def test_bicubic_defaults_to_x4(tmp_path: Path, photo: Path) -> None:
    out = tmp_path / "o.png"
    assert main(["upscale", str(photo), "-o", str(out), "-m", "bicubic"]) == 0
    with Image.open(out) as im:
        assert im.size == (48, 40)
    data = tmp_path / "data"
    data.mkdir()
    write_image(data / "a.png", random_image(40, 44))
    res = tmp_path / "res"
    assert main(["eval", "-m", "bicubic", "--data", str(data), "--out", str(res)]) == 0
    assert json.loads((res / "results.json").read_text())["scale"] == 4


def test_eval_data_given_a_file_says_so(
    tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["eval", "-m", "bicubic", "--data", str(photo)]) == 1
    err = capsys.readouterr().err
    assert "is a file: --data takes folders" in err and "not found" not in err


def test_an_unwritable_output_extension_is_refused(
    tmp_path: Path, photo: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    for name in ("up.gif", "up.heic"):
        out = tmp_path / name
        assert main(["upscale", str(photo), "-o", str(out), "-m", str(tiny_checkpoint)]) == 1
        err = capsys.readouterr().err
        assert "cannot be written" in err and "png, jpg" in err
        assert not out.exists()
    dotted = tmp_path / "photos.v2"  # a folder name with a dot is still a folder
    assert main(["upscale", str(photo), "-o", str(dotted), "-m", str(tiny_checkpoint)]) == 0
    assert (dotted / "photo_x4.png").is_file()


def test_gif_input_is_written_as_png(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    gif = folder / "anim.gif"
    Image.fromarray(random_image(8, 8)).convert("P").save(gif)
    write_image(folder / "b.png", random_image(8, 8, seed=2))
    out = tmp_path / "out"
    args = ["upscale", str(gif), str(folder / "b.png"), "-o", str(out), "-m", str(tiny_checkpoint)]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["anim_x4.png", "b_x4.png"]
    assert "1 input(s) in GIF, which cannot be written: their outputs are PNG" in (
        capsys.readouterr().err
    )


def test_no_dynamic_bars_when_stderr_is_not_a_terminal(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", random_image(40, 36, seed=1))  # 4 tiles of 32
    write_image(folder / "b.png", random_image(20, 20, seed=2))
    out = tmp_path / "out"
    args = ["upscale", str(folder), "-o", str(out), "-m", str(tiny_checkpoint), "-t", "32"]
    assert main(args) == 0  # capsys: stderr is not a TTY
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b[" not in err
    lines = err.splitlines()
    assert lines[0].startswith("[1/2] ") and "a_x4.png (144x160" in lines[0]
    assert lines[1].startswith("[2/2] ")
    assert main(["eval", "-m", "bicubic", "--data", str(folder), "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "in: 2 image(s) scored, 0 failed" in err


def test_a_terminal_still_gets_progress_bars(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    src = tmp_path / "a.png"
    write_image(src, random_image(100, 90))  # more than one 32x32 tile's worth of pixels
    args = ["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", str(tiny_checkpoint)]
    assert main([*args, "-t", "32"]) == 0
    assert "\r" in term.getvalue() and "tile" in term.getvalue()


def test_ctrl_c_says_what_was_done_and_how_to_continue(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # noqa: ANN001
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"{i}.png", random_image(8, 8, seed=i))
    real = upscale_cli.upscale_file
    calls: list[Path] = []

    def interrupted_on_the_second(upscaler, src, dst, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(upscaler, src, dst, *args, **kwargs)

    monkeypatch.setattr(upscale_cli, "upscale_file", interrupted_on_the_second)
    out = tmp_path / "out"
    args = ["upscale", str(folder), "-o", str(out), "-m", str(tiny_checkpoint)]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "stopped: wrote 1 image(s)" in err and "2 of 3 not done" in err
    assert "--skip-existing" in err
    monkeypatch.setattr(upscale_cli, "upscale_file", real)
    assert main([*args, "--skip-existing"]) == 0
    assert "wrote 2 image(s)" in (text := capsys.readouterr().out) and "skipped 1" in text


def test_quality_is_validated_and_used(tmp_path: Path, photo: Path, tiny_checkpoint: Path) -> None:
    base = ["upscale", str(photo), "-m", str(tiny_checkpoint)]
    low, high = tmp_path / "low.jpg", tmp_path / "high.jpg"
    assert main([*base, "-o", str(low), "--quality", "5"]) == 0
    assert main([*base, "-o", str(high)]) == 0  # default 95
    assert low.stat().st_size < high.stat().st_size
    for bad in ("0", "101", "high"):
        with pytest.raises(SystemExit):
            main([*base, "-o", str(low), "--quality", bad])


def test_png_compression_changes_the_size_not_the_pixels(
    tmp_path: Path, photo: Path, tiny_checkpoint: Path
) -> None:
    base = ["upscale", str(photo), "-m", str(tiny_checkpoint)]
    outs = {level: tmp_path / f"l{level}.png" for level in ("0", "9")}
    for level, out in outs.items():
        assert main([*base, "-o", str(out), "--png-compression", level]) == 0
    assert main([*base, "-o", str(tmp_path / "default.png")]) == 0  # level 1
    sizes = {k: v.stat().st_size for k, v in outs.items()}
    assert sizes["9"] < (tmp_path / "default.png").stat().st_size < sizes["0"]
    pixels = [read_image(p).rgb_uint8() for p in [*outs.values(), tmp_path / "default.png"]]
    assert all(np.array_equal(pixels[0], other) for other in pixels[1:])
    for bad in ("-1", "10", "fast"):
        with pytest.raises(SystemExit):
            main([*base, "-o", str(tmp_path / "x.png"), "--png-compression", bad])


def test_device_names_are_checked_before_any_work(
    tmp_path: Path, photo: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    base = ["upscale", str(photo), "-o", str(tmp_path / "o.png"), "-m", str(tiny_checkpoint)]
    with pytest.raises(SystemExit):
        main([*base, "--device", "gpu0"])
    assert "expected cpu, cuda, cuda:N or mps" in capsys.readouterr().err
    missing = "cuda:99" if torch.cuda.is_available() else "cuda"
    assert main([*base, "--device", missing]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and missing in err
    assert ("only" in err) if torch.cuda.is_available() else ("CUDA is not available" in err)
    assert not (tmp_path / "o.png").exists()
    data = tmp_path / "data"
    data.mkdir()
    write_image(data / "a.png", random_image(40, 40))
    assert main(["eval", "-m", str(tiny_checkpoint), "--data", str(data), "--device", "CPU"]) == 0
    with pytest.raises(DualSRError, match="cuda:N or mps"):
        check_device("tpu")
    assert check_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert main([*base, "--device", "cuda:0"]) == 0


def test_mps_is_refused_where_it_is_missing() -> None:
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        pytest.skip("MPS is available here")
    with pytest.raises(DualSRError, match="MPS backend is not available"):
        check_device("mps")


def test_the_tree_scan_leaves_the_output_folder_out(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "out").mkdir(parents=True)
    write_image(root / "x.png", random_image(6, 6))
    write_image(root / "out" / "x_x4.png", random_image(6, 6))
    files, _ = upscale_cli.expand_inputs([str(root)], recursive=True, exclude=root / "out")
    assert [f.path.name for f in files] == ["x.png"]
    files, _ = upscale_cli.expand_inputs([str(root)], recursive=True)
    assert sorted(f.path.name for f in files) == ["x.png", "x_x4.png"]
