"""Tiling and self-ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dualsr.errors import DualSRError
from dualsr.inference import (
    BicubicUpscaler,
    TorchUpscaler,
    auto_tile,
    forward_bytes_per_lr_pixel,
    self_ensemble,
)
from dualsr.tiling import even_spans, tile_grid

from .conftest import limit_forward_side, random_image, tiny_model


def test_even_spans_cover_exactly_once() -> None:
    spans = even_spans(23, 3, 3)
    covered = [i for start, end, _, _ in spans for i in range(start, end)]
    assert covered == list(range(23))
    assert sorted(end - start for start, end, _, _ in spans) == [7, 8, 8]  # as equal as can be
    for start, end, in_start, in_end in spans:
        assert in_start == max(0, start - 3) and in_end == min(23, end + 3)
    with pytest.raises(ValueError, match="cannot cut"):
        even_spans(5, 6, 0)


def square_grid_work(h: int, w: int, tile: int, overlap: int) -> int:
    """Input pixels computed by square tiles of side ``tile`` from the corner (the old grid)."""

    def along(length: int) -> int:
        starts = range(0, length, tile)
        return sum(min(length, s + tile + overlap) - max(0, s - overlap) for s in starts)

    return along(h) * along(w)


def grid_work(ys: list, xs: list) -> int:
    return sum(b - a for *_, a, b in ys) * sum(b - a for *_, a, b in xs)


def test_a_720p_photo_runs_as_one_fp32_tile() -> None:
    # 320x180 LR: the square 256-pixel grid computed 352 of its 320 columns, in a 256- and a
    # 64-pixel-wide tile; one 320x180 tile holds fewer pixels than a 288x288 tile input
    ys, xs = tile_grid(180, 320, 256, 16)
    assert ys == [(0, 180, 0, 180)] and xs == [(0, 320, 0, 320)]
    assert grid_work(ys, xs) < square_grid_work(180, 320, 256, 16) / 1.09
    assert tile_grid(180, 320, None, 16) == (ys, xs)  # no tile: one


@pytest.mark.parametrize("tile,overlap", [(256, 16), (64, 8), (5, 2), (32, 0)])
def test_tile_grid_stays_in_the_memory_bound_and_never_computes_more(tile, overlap) -> None:
    rng = np.random.default_rng(tile)
    sizes = [(180, 320), (720, 1280), (750, 1000), (3, 4000), (2000, 9), (1, 1)]
    sizes += [tuple(int(v) for v in rng.integers(1, 1500, 2)) for _ in range(30)]
    for h, w in sizes:
        ys, xs = tile_grid(h, w, tile, overlap)
        assert [i for a, b, _, _ in ys for i in range(a, b)] == list(range(h))
        assert [i for a, b, _, _ in xs for i in range(a, b)] == list(range(w))
        widest = max(b - a for *_, a, b in ys) * max(b - a for *_, a, b in xs)
        assert widest <= (tile + 2 * overlap) ** 2, (h, w)
        # (where the square grid's last tile is narrower than the overlap, its context is clipped:
        # one pixel per row or column of tiles, under 1% even for 5-pixel tiles)
        assert grid_work(ys, xs) <= 1.01 * square_grid_work(h, w, tile, overlap), (h, w)


def test_whole_image_upscaler_matches_model() -> None:
    model = tiny_model()
    img = random_image(10, 12).astype(np.float32)
    out = TorchUpscaler(model, precision="fp32")(img, out_dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(img).permute(2, 0, 1)[None])[-1][0]
    ref = ref.clamp(0, 255).permute(1, 2, 0).numpy()
    assert out.shape == (40, 48, 3)
    np.testing.assert_allclose(out, ref, atol=1e-4)


def test_tiles_match_whole_image_when_context_suffices() -> None:
    # without RCABs (no global channel attention) the receptive field is finite: with enough
    # overlap, tiled output equals whole-image output
    model = tiny_model(n_blocks=0)
    img = random_image(30, 26)
    whole = TorchUpscaler(model)(img, out_dtype=np.float32)
    ys, xs = tile_grid(30, 26, 4, 10)
    assert len(ys) * len(xs) > 1  # the image is cut, with 10 pixels of context around each tile
    tiled = TorchUpscaler(model, tile=4, tile_overlap=10)(img, out_dtype=np.float32)
    assert np.abs(whole - tiled).max() < 1e-2
    seams = TorchUpscaler(model, tile=8, tile_overlap=0)(img, out_dtype=np.float32)
    assert np.abs(whole - seams).max() > 0.1  # no context: seams appear, so the test can fail


def test_tiling_reports_progress() -> None:
    calls = []
    up = TorchUpscaler(
        tiny_model(), tile=5, tile_overlap=2, progress=lambda d, t: calls.append((d, t))
    )
    up(random_image(10, 12))
    # two 10x8 inputs (10x6 cores with 2 pixels of context) fit the bound of 9x9 pixels
    assert tile_grid(10, 12, 5, 2) == ([(0, 10, 0, 10)], [(0, 6, 0, 8), (6, 12, 4, 12)])
    assert calls == [(1, 2), (2, 2)]


def test_self_ensemble_averages_the_eight_transforms() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    ramp = torch.linspace(0, 1, 5)

    def fn(t: torch.Tensor) -> torch.Tensor:  # not flip-equivariant: adds a ramp along width
        return t * 2 + ramp[: t.shape[-1]] if t.shape[-1] == 5 else t * 2

    out = self_ensemble(fn, x)
    # by hand: for the 4 non-transposed transforms the ramp is added in the flipped frame
    flips = [(), (-1,), (-2,), (-2, -1)]
    manual = sum((fn(x.flip(f) if f else x)).flip(f) if f else fn(x) for f in flips)
    manual = manual + sum(
        (
            fn((x.transpose(-2, -1).flip(f) if f else x.transpose(-2, -1))).flip(f)
            if f
            else fn(x.transpose(-2, -1))
        ).transpose(-2, -1)
        for f in flips
    )
    assert torch.allclose(out, manual / 8)
    assert not torch.allclose(out, fn(x))


def test_self_ensemble_of_equivariant_model_changes_little() -> None:
    model = tiny_model()
    img = random_image(8, 8)
    plain = TorchUpscaler(model)(img, out_dtype=np.float32)
    ens = TorchUpscaler(model, ensemble=True)(img, out_dtype=np.float32)
    assert ens.shape == plain.shape
    assert 0 < np.abs(ens - plain).mean() < 30


def test_bicubic_upscaler_uint8_path() -> None:
    img = random_image(6, 7)
    out = BicubicUpscaler(4)(img)
    assert out.dtype == np.uint8 and out.shape == (24, 28, 3)


def test_auto_tile_option_sizes_tiles_to_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    per_px = forward_bytes_per_lr_pixel(model, "fp32")
    monkeypatch.setattr("dualsr.tiling.available_memory_bytes", lambda: per_px * 2 * 200**2)
    up = TorchUpscaler(model, tile="auto", tile_overlap=8, precision="fp32")
    assert up.tile == auto_tile(model, "fp32", 8) == 176  # 200 - 2 * 8, to a multiple of 16
    with pytest.raises(ValueError, match="'auto'"):
        TorchUpscaler(model, tile="big")  # type: ignore[arg-type]


def test_upscale_within_memory_halves_tiles_on_oom_from_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes = limit_forward_side(monkeypatch, 60)
    up = TorchUpscaler(tiny_model(), tile=0, tile_overlap=4, precision="fp32")
    img = random_image(100, 90)
    with pytest.warns(UserWarning, match="big.png: out of memory with 100-pixel tiles; retrying"):
        out = up.upscale_within_memory(img, source="photos/big.png")
    assert out.shape == (400, 360, 3) and up.tile == 0  # the caller's tile is put back
    assert sizes[0] == 100 and max(sizes[1:]) <= 56

    def always(self, lr):  # noqa: ANN001, ANN202
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(TorchUpscaler, "_forward", always)
    oom = pytest.raises(DualSRError, match="out of memory even with 32-pixel tiles")
    with oom, pytest.warns(UserWarning):
        up.upscale_within_memory(img, source="big.png")
