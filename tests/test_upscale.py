"""``dualsr upscale`` on folders of photos: trees, resuming, any output scale, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualsr.cli import main
from dualsr.data import image_io
from dualsr.data.image_io import write_image
from dualsr.data.imresize import imresize
from dualsr.inference import auto_tile, forward_bytes_per_lr_pixel

from .conftest import limit_forward_side, random_image, tiny_model


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """IN/top.png, IN/a/x.png, IN/a/b/y.jpg, IN/a/b/notes.txt."""
    root = tmp_path / "in"
    (root / "a" / "b").mkdir(parents=True)
    write_image(root / "top.png", random_image(8, 9, seed=1))
    write_image(root / "a" / "x.png", random_image(7, 6, seed=2))
    write_image(root / "a" / "b" / "y.jpg", random_image(6, 8, seed=3))
    (root / "a" / "b" / "notes.txt").write_text("not an image")
    return root


def upscale(*args: str) -> int:
    return main(["upscale", *args])


def test_recursive_mirrors_the_tree_and_skip_existing_resumes(
    tree: Path, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert upscale(str(tree), "-o", str(out), "-m", str(tiny_checkpoint), "--recursive") == 0
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert made == ["a/b/y_x4.jpg", "a/x_x4.png", "top_x4.png"]
    with Image.open(out / "a" / "x_x4.png") as im:
        assert im.size == (24, 28)
    assert "wrote 3 image(s)" in capsys.readouterr().out

    # an interrupted batch: one output missing, one present; --skip-existing does only the rest
    (out / "a" / "x_x4.png").unlink()
    before = (out / "top_x4.png").stat().st_mtime_ns
    args = [str(tree), "-o", str(out), "-m", str(tiny_checkpoint), "-r", "--skip-existing"]
    assert upscale(*args) == 0
    assert "wrote 1 image(s)" in (text := capsys.readouterr().out) and "skipped 2 existing" in text
    assert (out / "a" / "x_x4.png").is_file()
    assert (out / "top_x4.png").stat().st_mtime_ns == before

    # without --recursive a folder means its own images only
    flat = tmp_path / "flat"
    assert upscale(str(tree), "-o", str(flat), "-m", str(tiny_checkpoint)) == 0
    assert sorted(p.name for p in flat.iterdir()) == ["top_x4.png"]


@pytest.mark.parametrize("outscale", ["2", "1.5", "3", "4", "5"])
def test_outscale_gives_exactly_round_s_times_the_size(
    tmp_path: Path, tiny_checkpoint: Path, outscale: str
) -> None:
    src = tmp_path / "in.png"
    rgba = np.dstack([random_image(7, 9), np.full((7, 9), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(src)
    out = tmp_path / "out"
    assert upscale(str(src), "-o", str(out), "-m", str(tiny_checkpoint), "-s", outscale) == 0
    s = float(outscale)
    dst = out / f"in_x{s:g}.png"
    with Image.open(dst) as im:
        assert im.size == (round(9 * s), round(7 * s)) and im.mode == "RGBA"
        assert abs(float(np.asarray(im)[..., 3].mean()) - 200) < 2
    with pytest.raises(SystemExit):
        upscale(str(src), "-o", str(out), "-s", "-1")


def test_outscale_is_the_model_output_resized(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = tmp_path / "in.png"
    write_image(src, random_image(10, 12))
    args = ["-m", str(tiny_checkpoint), "--precision", "fp32"]
    assert upscale(str(src), "-o", str(tmp_path / "x4.png"), *args) == 0
    assert upscale(str(src), "-o", str(tmp_path / "x2.png"), *args, "-s", "2") == 0
    x4 = np.asarray(Image.open(tmp_path / "x4.png")).astype(float)
    x2 = np.asarray(Image.open(tmp_path / "x2.png")).astype(float)
    halved = imresize(x4.astype(np.uint8), output_shape=(20, 24)).astype(float)
    assert x2.shape == (20, 24, 3) and np.abs(x2 - halved).max() <= 1


def test_short_aliases_and_tile_auto(tmp_path: Path, tiny_checkpoint: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    write_image(a, random_image(6, 6, seed=1))
    write_image(b, random_image(6, 7, seed=2))
    out = tmp_path / "out"
    assert upscale("-i", str(a), "-i", str(b), "-o", str(out), "-m", str(tiny_checkpoint)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_x4.png", "b_x4.png"]
    assert upscale(str(a), "-o", str(out), "-m", str(tiny_checkpoint), "-t", "auto") == 0
    assert upscale(str(a), "-o", str(out), "-m", str(tiny_checkpoint), "-t", "32") == 0
    with pytest.raises(SystemExit):
        upscale(str(a), "-o", str(out), "-t", "big")
    with pytest.raises(SystemExit):
        upscale(str(a), "-o", str(out), "-t", "-2")
    assert upscale("-o", str(out), "-m", str(tiny_checkpoint)) == 1  # no input at all


def test_auto_tile_follows_the_memory_budget() -> None:
    model = tiny_model()
    per_px = forward_bytes_per_lr_pixel(model, "fp32")
    assert forward_bytes_per_lr_pixel(model, "bf16") < per_px
    tile = auto_tile(model, "fp32", overlap=16, budget_bytes=per_px * 300 * 300)
    assert tile % 16 == 0 and (tile + 32) ** 2 * per_px <= per_px * 300 * 300
    assert tile == 256
    assert auto_tile(model, "fp32", budget_bytes=10) == 32  # never below 32


def test_output_paths_are_checked_before_any_work(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    write_image(a, random_image(6, 6, seed=1))
    write_image(b, random_image(6, 6, seed=2))
    model = ["-m", str(tiny_checkpoint)]
    assert upscale(str(a), str(b), "-o", str(tmp_path / "result.png"), *model) == 1
    assert "looks like a file name, but there are 2 inputs" in capsys.readouterr().err
    assert not (tmp_path / "result.png").exists()
    existing = tmp_path / "taken.txt"
    existing.write_text("x")
    assert upscale(str(a), str(b), "-o", str(existing), *model) == 1
    assert "is an existing file, but there are 2 inputs" in capsys.readouterr().err
    assert upscale(str(a), "-o", str(existing / "sub"), *model) == 1
    assert "cannot create the output folder" in capsys.readouterr().err
    assert existing.read_text() == "x"


def test_a_huge_image_fails_alone_unless_allowed(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:  # noqa: ANN001
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "small.png", random_image(6, 6))
    write_image(folder / "huge.png", random_image(40, 40))
    monkeypatch.setattr(image_io.Image, "MAX_IMAGE_PIXELS", 600)  # 40x40 is a "bomb" now
    monkeypatch.setattr(image_io, "_DEFAULT_MAX_PIXELS", 600)
    out = tmp_path / "out"
    assert upscale(str(folder), "-o", str(out), "-m", str(tiny_checkpoint)) == 1
    err = capsys.readouterr().err
    assert "huge.png" in err and "decompression bombs" in err and "--allow-huge" in err
    assert (out / "small_x4.png").is_file() and not (out / "huge_x4.png").exists()
    assert upscale(str(folder), "-o", str(out), "-m", str(tiny_checkpoint), "--allow-huge") == 0
    assert (out / "huge_x4.png").is_file()


def test_alpha_dropped_by_jpeg_is_said(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    src = tmp_path / "t.png"
    rgba = np.dstack([random_image(6, 6), np.full((6, 6), 90, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(src)
    out = tmp_path / "out"
    assert upscale(str(src), "-o", str(out), "-m", str(tiny_checkpoint), "--format", "jpg") == 0
    err = capsys.readouterr().err
    assert "has no alpha channel" in err and "--format png" in err
    assert (out / "t_x4.jpg").is_file()


def test_out_of_memory_retries_with_smaller_tiles(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:  # noqa: ANN001
    sizes = limit_forward_side(monkeypatch, 60)
    src = tmp_path / "big.png"
    write_image(src, random_image(100, 90))
    dst = tmp_path / "big_x4.png"
    args = [str(src), "-o", str(dst), "-m", str(tiny_checkpoint), "--tile", "0"]
    assert upscale(*args, "--tile-overlap", "4") == 0
    err = capsys.readouterr().err
    assert "out of memory with 100-pixel tiles; retrying with 48" in err
    with Image.open(dst) as im:
        assert im.size == (360, 400)
    assert sizes[0] == 100 and max(sizes[1:]) <= 56


def test_a_forward_too_big_for_memory_is_tiled_first(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:  # noqa: ANN001
    model = tiny_model()
    per_px = forward_bytes_per_lr_pixel(model, "fp32")
    monkeypatch.setattr("dualsr.tiling.available_memory_bytes", lambda: per_px * 2 * 40 * 40)
    src = tmp_path / "p.png"
    write_image(src, random_image(80, 70))
    dst = tmp_path / "p_x4.png"
    args = [str(src), "-o", str(dst), "-m", str(tiny_checkpoint), "-t", "0", "--precision", "fp32"]
    assert upscale(*args) == 0
    assert "whole would need about" in capsys.readouterr().err
    with Image.open(dst) as im:
        assert im.size == (280, 320)
