"""The command line as a user runs it: upscale, eval, models, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualsr.cli import main
from dualsr.data.image_io import write_image

from .conftest import random_image


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "a.png", random_image(8, 10, seed=1))
    write_image(folder / "b.jpg", random_image(6, 6, seed=2))
    Image.fromarray(random_image(5, 7, channels=1), "L").save(folder / "gray.png")
    rgba = np.dstack([random_image(6, 5, seed=3), np.full((6, 5), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.webp", lossless=True)
    return folder


def test_upscale_folder(images: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    out = tmp_path / "out"
    assert main(["upscale", str(images), "-o", str(out), "--model", str(tiny_checkpoint)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_x4.png", "alpha_x4.webp", "b_x4.jpg", "gray_x4.png"]
    with Image.open(out / "a_x4.png") as im:
        assert im.size == (40, 32) and im.mode == "RGB"
    with Image.open(out / "gray_x4.png") as im:
        assert im.mode == "L" and im.size == (28, 20)
    with Image.open(out / "alpha_x4.webp") as im:
        assert im.mode == "RGBA"
        assert abs(int(np.asarray(im)[..., 3].mean()) - 128) <= 1


def test_upscale_single_file_glob_and_tiles(
    images: Path, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    dst = tmp_path / "one.png"
    big = tmp_path / "big.png"
    write_image(big, random_image(40, 36, seed=4))  # 2 x 2 tiles of at most 32 pixels
    assert (
        main(
            [
                "upscale",
                str(big),
                "-o",
                str(dst),
                "-m",
                str(tiny_checkpoint),
                "--tile",
                "32",
                "--self-ensemble",
            ]
        )
        == 0
    )
    assert Image.open(dst).size == (144, 160)
    out = tmp_path / "globbed"
    assert (
        main(
            [
                "upscale",
                str(images / "*.png"),
                "-o",
                str(out),
                "-m",
                str(tiny_checkpoint),
                "--format",
                "bmp",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["a_x4.bmp", "gray_x4.bmp"]


def test_one_bad_file_does_not_stop_the_rest(
    images: Path, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    (images / "broken.png").write_bytes(b"garbage")
    out = tmp_path / "out"
    code = main(
        [
            "upscale",
            str(images),
            str(tmp_path / "nope.png"),
            "-o",
            str(out),
            "-m",
            str(tiny_checkpoint),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "nope.png" in err
    assert len(list(out.iterdir())) == 4  # the four good images were still written


def test_never_overwrites_an_input(
    images: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    before = (images / "a.png").read_bytes()
    code = main(
        [
            "upscale",
            str(images / "a.png"),
            "-o",
            str(images),
            "--suffix",
            "",
            "-m",
            str(tiny_checkpoint),
        ]
    )
    assert code == 1
    assert "overwrite an input" in capsys.readouterr().err
    assert (images / "a.png").read_bytes() == before


def test_errors_are_one_line_unless_debug(
    tmp_path: Path, images: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    assert main(["upscale", str(images), "-o", str(tmp_path / "o"), "-m", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1
    with pytest.raises(Exception, match="could not be loaded"):
        main(["--debug", "upscale", str(images), "-o", str(tmp_path / "o"), "-m", str(bad)])
    assert main(["eval", "--model", "no-such-model", "--data", str(images)]) == 1
    assert "unknown model" in capsys.readouterr().err


def test_eval_writes_table_csv_and_json(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "Bench"
    (data / "HR").mkdir(parents=True)
    for i in range(2):
        write_image(data / "HR" / f"{i}.png", random_image(35, 42, seed=i))
    out = tmp_path / "res"
    assert (
        main(["eval", "--model", "bicubic", "--scale", "4", "--data", str(data), "--out", str(out)])
        == 0
    )
    table = capsys.readouterr().out
    assert "Bench" in table and "PSNR" in table
    doc = json.loads((out / "results.json").read_text())
    assert doc["datasets"][0]["images"] == 2 and len(doc["images"]) == 2
    header = (out / "results.csv").read_text().splitlines()[0]
    assert header == "dataset,image,psnr,ssim,seconds,error"
    bicubic_psnr = doc["datasets"][0]["psnr"]
    assert (
        main(
            [
                "eval",
                "-m",
                str(tiny_checkpoint),
                "--data",
                str(data),
                "--out",
                str(out),
                "--tile",
                "32",
            ]
        )
        == 0
    )
    assert json.loads((out / "results.json").read_text())["datasets"][0]["psnr"] != bicubic_psnr
    assert main(["eval", "-m", str(tiny_checkpoint), "--scale", "8", "--data", str(data)]) == 1


@pytest.mark.slow  # a real subprocess or end-to-end run: `make test` runs it
def test_models_and_help_run_as_a_console_script() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "dualsr", "models"], capture_output=True, text=True, check=True
    )
    assert "drn-s30-x4" in res.stdout and "3,116,637" in res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "dualsr", "upscale", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--tile-overlap" in res.stdout


def test_demo_runs(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            [
                "demo",
                "--model",
                str(tiny_checkpoint),
                "--out",
                str(tmp_path / "d"),
                "--max-size",
                "48",
            ]
        )
        == 0
    )
    assert "bicubic" in capsys.readouterr().out
    assert any(p.name.endswith("_compare.png") for p in (tmp_path / "d").iterdir())
