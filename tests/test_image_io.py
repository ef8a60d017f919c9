"""Image reading/writing: modes, EXIF orientation, 16-bit, corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualsr import ImageError
from dualsr.data.image_io import read_image, write_image

from .conftest import random_image, write_png16


def test_rgb_round_trip(tmp_path: Path) -> None:
    img = random_image(9, 7)
    write_image(tmp_path / "a.png", img)
    loaded = read_image(tmp_path / "a.png")
    assert loaded.pixels.dtype == np.float32 and loaded.pixels.shape == (9, 7, 3)
    assert np.array_equal(loaded.rgb_uint8(), img)
    assert not loaded.grayscale and loaded.alpha is None


def test_grayscale_is_processed_as_rgb_and_written_back_gray(tmp_path: Path) -> None:
    gray = random_image(6, 5, channels=1)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    loaded = read_image(tmp_path / "g.png")
    assert loaded.grayscale and loaded.pixels.shape == (6, 5, 3)
    write_image(tmp_path / "out.png", loaded)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "L"
        assert np.array_equal(np.asarray(im), gray)


def test_alpha_is_kept_separately(tmp_path: Path) -> None:
    rgba = np.dstack([random_image(5, 6), np.arange(30, dtype=np.uint8).reshape(5, 6) * 8])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = read_image(tmp_path / "a.png")
    assert loaded.alpha is not None and np.array_equal(loaded.alpha, rgba[..., 3])
    write_image(tmp_path / "o.png", loaded)
    with Image.open(tmp_path / "o.png") as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im), rgba)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = random_image(4, 8)  # 4 rows, 8 columns
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif, quality=100)
    loaded = read_image(tmp_path / "r.jpg")
    assert loaded.pixels.shape[:2] == (8, 4)


def test_sixteen_bit_gray_keeps_precision(tmp_path: Path) -> None:
    arr = np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000 + 7
    write_png16(tmp_path / "g16.png", arr)
    loaded = read_image(tmp_path / "g16.png")
    assert loaded.bits == 16 and loaded.grayscale
    write_image(tmp_path / "o16.png", loaded)
    with Image.open(tmp_path / "o16.png") as im:
        assert im.mode.startswith("I;16")
        assert np.abs(np.asarray(im).astype(int) - arr).max() <= 1


def test_sixteen_bit_colour_is_refused_clearly(tmp_path: Path) -> None:
    write_png16(tmp_path / "c16.png", np.full((3, 3, 3), 40000, dtype=np.uint16))
    with pytest.raises(ImageError, match="16-bit-per-channel colour"):
        read_image(tmp_path / "c16.png")


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(tmp_path / "junk.png")
    write_image(tmp_path / "ok.png", random_image(64, 64))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_unsupported_output_format(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="unsupported output format"):
        write_image(tmp_path / "x.gif", random_image(4, 4))


def test_icc_exif_and_dpi_survive_every_format(tmp_path: Path) -> None:
    icc = b"\x00\x00\x01\x00test icc" + bytes(120)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotated: applied on reading, then recorded as 1
    exif[0x0110] = "Phone 9"
    src = tmp_path / "src.jpg"
    Image.fromarray(random_image(5, 7)).save(
        src, exif=exif.tobytes(), icc_profile=icc, dpi=(240, 240)
    )
    loaded = read_image(src)
    assert loaded.pixels.shape[:2] == (7, 5) and loaded.icc_profile == icc
    assert loaded.dpi == pytest.approx((240, 240))
    kept = Image.Exif()
    kept.load(loaded.exif)
    assert kept[0x0112] == 1 and kept[0x0110] == "Phone 9"
    holds = {"png": "ied", "jpg": "ied", "webp": "ie", "tif": "ied", "bmp": "d"}
    for ext, what in holds.items():
        with Image.open(write_image(tmp_path / f"out.{ext}", loaded)) as im:
            assert (im.info.get("icc_profile") == icc) == ("i" in what), ext
            assert (im.getexif().get(0x0110) == "Phone 9") == ("e" in what), ext
            assert ("dpi" in im.info) == ("d" in what), ext
            if "d" in what:
                assert im.info["dpi"] == pytest.approx((240, 240), abs=0.01)
    plain = read_image(write_image(tmp_path / "plain.png", random_image(4, 4)))
    assert plain.icc_profile is None and plain.exif is None and plain.dpi is None
    with pytest.raises(ValueError, match="quality"):
        write_image(tmp_path / "q.jpg", loaded, quality=0)


def test_png_compression_level_is_checked_and_keeps_pixels(tmp_path: Path) -> None:
    img = random_image(32, 48)
    for level in (0, 1, 9):
        write_image(tmp_path / f"{level}.png", img, png_compression=level)
        assert np.array_equal(read_image(tmp_path / f"{level}.png").rgb_uint8(), img)
    assert (tmp_path / "9.png").stat().st_size < (tmp_path / "0.png").stat().st_size
    for bad in (-1, 10, 1.5, True):
        with pytest.raises(ValueError, match="PNG compression"):
            write_image(tmp_path / "bad.png", img, png_compression=bad)
    assert not (tmp_path / "bad.png").exists()
