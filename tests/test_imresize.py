"""Tests for the MATLAB-compatible bicubic resize (numpy and torch paths)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dualsr.data.imresize import (
    _contributions,
    _resize_axis_dense,
    _resize_axis_gather,
    imresize,
    imresize_torch,
    output_size,
    resize_matrix,
)

FIXTURE = Path(__file__).parent / "fixtures" / "imresize_vectors_small.npz"
FULL_REFERENCE = Path(__file__).parents[2] / "shared" / "reference" / "imresize_vectors.npz"
REFERENCE_ATOL = 1e-4


def _scale_from_key(text: str) -> float:
    """Scale encoded in a reference key; '0.333333' stands for exactly 1/3 (MATLAB used 1/3)."""
    return 1.0 / 3.0 if text == "0.333333" else float(text)


def _reference_cases(path: Path) -> list[tuple[str, np.ndarray, float, np.ndarray]]:
    """(key, input, scale, MATLAB output) for every ``out_K_S`` entry of a reference file."""
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    cases = []
    for key in sorted(arrays):
        if key.startswith("out_"):
            _, index, scale_text = key.split("_")
            cases.append((key, arrays[f"in_{index}"], _scale_from_key(scale_text), arrays[key]))
    return cases


SMALL_CASES = _reference_cases(FIXTURE)


def _to_nchw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def _from_nchw(batch: torch.Tensor) -> np.ndarray:
    return batch[0].permute(1, 2, 0).detach().cpu().double().numpy()


# --------------------------------------------------------------------------- reference data


def test_fixture_covers_both_inputs_and_all_scales() -> None:
    keys = {case[0] for case in SMALL_CASES}
    assert len(SMALL_CASES) == 15
    assert {"out_0_0.333333", "out_0_4.000000", "out_2_0.125000", "out_2_0.700000"} <= keys


@pytest.mark.parametrize(
    ("key", "image", "scale", "expected"), [pytest.param(*case, id=case[0]) for case in SMALL_CASES]
)
def test_matches_matlab_reference_subset(
    key: str, image: np.ndarray, scale: float, expected: np.ndarray
) -> None:
    result = imresize(image, scale)
    assert result.shape == expected.shape, key
    assert result.dtype == np.float64
    np.testing.assert_allclose(result, expected, rtol=0, atol=REFERENCE_ATOL, err_msg=key)


@pytest.mark.skipif(not FULL_REFERENCE.exists(), reason="full reference vectors not available")
def test_matches_every_matlab_reference_vector() -> None:
    cases = _reference_cases(FULL_REFERENCE)
    assert len(cases) >= 40
    for key, image, scale, expected in cases:
        result = imresize(image, scale)
        assert result.shape == expected.shape, key
        np.testing.assert_allclose(result, expected, rtol=0, atol=REFERENCE_ATOL, err_msg=key)


def test_torch_matches_reference_subset() -> None:
    for key, image, scale, expected in SMALL_CASES:
        result = _from_nchw(imresize_torch(_to_nchw(image), scale))
        np.testing.assert_allclose(result, expected, rtol=0, atol=REFERENCE_ATOL, err_msg=key)


# --------------------------------------------------------------------------- shapes and dtypes


@pytest.mark.parametrize(
    ("scale", "shape"),
    [
        (0.25, (5, 6)),
        (1 / 3, (6, 8)),
        (0.5, (9, 12)),
        (0.7, (12, 17)),
        (2, (34, 46)),
        (3, (51, 69)),
    ],
)
def test_output_shape_is_ceil_of_scaled_size(scale: float, shape: tuple[int, int]) -> None:
    image = np.zeros((17, 23, 3))
    assert imresize(image, scale).shape == (*shape, 3)
    assert imresize(image[:, :, 0], scale).shape == shape
    assert output_size((17, 23), scale)[0] == shape
    assert imresize_torch(torch.zeros(2, 3, 17, 23), scale).shape == (2, 3, *shape)


def test_output_shape_argument_uses_per_axis_scales() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((20, 16, 2))
    result = imresize(image, output_shape=(9, 40))
    assert result.shape == (9, 40, 2)
    assert output_size((20, 16), output_shape=(9, 40)) == ((9, 40), (9 / 20, 40 / 16))
    rows = resize_matrix(20, 9, 9 / 20)
    cols = resize_matrix(16, 40, 40 / 16)
    expected = np.einsum("oh,hwc,pw->opc", rows, image, cols)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


def test_grayscale_matches_single_channel_3d() -> None:
    rng = np.random.default_rng(2)
    gray = rng.random((21, 14))
    for scale in (0.25, 0.5, 3):
        flat = imresize(gray, scale)
        assert flat.ndim == 2
        np.testing.assert_array_equal(flat, imresize(gray[:, :, None], scale)[:, :, 0])


def test_float32_input_returns_float32_computed_in_float64() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((19, 25, 3)).astype(np.float32)
    result = imresize(image, 0.5)
    assert result.dtype == np.float32
    expected = imresize(image.astype(np.float64), 0.5).astype(np.float32)
    np.testing.assert_array_equal(result, expected)


def test_uint8_is_rounded_and_clipped_like_matlab() -> None:
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, size=(24, 31, 3), dtype=np.uint8)
    # A hard black/white edge makes the bicubic kernel overshoot outside 0..255.
    image[:, :12] = 0
    image[:, 12:] = 255
    for scale in (0.5, 1 / 3, 2, 3):
        as_float = imresize(image.astype(np.float64), scale)
        result = imresize(image, scale)
        assert result.dtype == np.uint8
        assert as_float.min() < 0 and as_float.max() > 255  # float output is not clipped
        expected = np.clip(np.floor(as_float + 0.5), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(result, expected)


def test_integer_output_rounds_half_away_from_zero() -> None:
    # For x2 the cubic weights are dyadic (e.g. 0.8671875, 0.2265625, -0.0703125, -0.0234375),
    # so a row [a, b] resized to 4 columns is exactly [a - 3(b-a)/32, a + 13(b-a)/64, ...].
    # With b - a = 32 the second and third samples are exactly a + 6.5 and b - 6.5.
    row = np.array([[100.0, 132.0]])
    np.testing.assert_array_equal(imresize(row, output_shape=(1, 4)), [[97, 106.5, 125.5, 135]])
    image = np.array([[100, 132]] * 3, dtype=np.uint8)
    result = imresize(image, output_shape=(3, 4))
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, [[97, 107, 126, 135]] * 3)  # 106.5 -> 107 (not even)
    signed = imresize(-image.astype(np.int16), output_shape=(3, 4))
    assert signed.dtype == np.int16
    np.testing.assert_array_equal(signed, [[-97, -107, -126, -135]] * 3)


@pytest.mark.parametrize("scale", [0.125, 0.25, 1 / 3, 0.7, 1.5, 4])
def test_constant_image_stays_constant(scale: float) -> None:
    image = np.full((33, 27, 3), 0.625)
    np.testing.assert_allclose(imresize(image, scale), 0.625, rtol=0, atol=1e-12)
    image8 = np.full((33, 27), 173, dtype=np.uint8)
    assert np.all(imresize(image8, scale) == 173)


def test_scale_one_is_identity() -> None:
    rng = np.random.default_rng(5)
    image = rng.random((9, 7, 3))
    np.testing.assert_allclose(imresize(image, 1.0), image, rtol=0, atol=1e-14)


def test_resize_matrix_properties() -> None:
    matrix = resize_matrix(40, 10, 0.25)
    assert matrix.shape == (10, 40)
    assert matrix.dtype == np.float64
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert resize_matrix(40, 10, 0.25) is matrix  # cached
    assert not matrix.flags.writeable
    # Mirrored border taps are accumulated: the first row only touches the first samples.
    assert np.all(matrix[0, 10:] == 0) and matrix[0, 0] > matrix[0, 1] > 0


def test_gather_and_dense_paths_agree() -> None:
    rng = np.random.default_rng(6)
    planes = rng.random((2, 30, 26))
    for axis, in_len, out_len, scale in [(1, 30, 8, 0.25), (2, 26, 78, 3.0), (2, 26, 19, 0.7)]:
        indices, weights = _contributions(in_len, out_len, scale)
        dense = _resize_axis_dense(planes, axis, resize_matrix(in_len, out_len, scale))
        gather = _resize_axis_gather(planes, axis, indices, weights)
        np.testing.assert_allclose(gather, dense, rtol=0, atol=1e-12)


def test_long_axis_uses_sparse_path_correctly() -> None:
    # 3000 input samples with only a handful of taps selects the gather implementation.
    rng = np.random.default_rng(7)
    image = rng.random((3, 3000))
    result = imresize(image, 2)
    expected = resize_matrix(3, 6, 2.0) @ image @ resize_matrix(3000, 6000, 2.0).T
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


def test_downscale_512_uint8_is_fast() -> None:
    image = np.random.default_rng(8).integers(0, 256, size=(512, 512, 3), dtype=np.uint8)
    imresize(image, 0.25)  # warm the weight cache
    best = min(_timed(imresize, image, 0.25) for _ in range(3))
    assert best < 0.5, f"512x512x3 /4 took {best:.3f} s"


def _timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- torch path


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 0.7, 2, 3])
def test_torch_matches_numpy_float64(scale: float) -> None:
    rng = np.random.default_rng(9)
    batch = torch.from_numpy(rng.random((2, 3, 26, 19)))
    result = imresize_torch(batch, scale)
    assert result.dtype == torch.float64
    for n in range(2):
        expected = imresize(batch[n].permute(1, 2, 0).numpy(), scale)
        np.testing.assert_allclose(_from_nchw(result[n : n + 1]), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("scale", "value_range", "atol"), [(0.25, 1.0, 1e-4), (3, 255.0, 1e-3)])
def test_torch_matches_numpy_float32(scale: float, value_range: float, atol: float) -> None:
    rng = np.random.default_rng(10)
    image = rng.random((30, 22, 3)) * value_range
    result = imresize_torch(_to_nchw(image.astype(np.float32)), scale)
    assert result.dtype == torch.float32
    expected = imresize(image.astype(np.float32).astype(np.float64), scale)
    np.testing.assert_allclose(_from_nchw(result), expected, rtol=0, atol=atol)


def test_torch_half_precision_and_leading_dims() -> None:
    batch = torch.rand(2, 3, 16, 12)
    half = imresize_torch(batch.to(torch.bfloat16), 0.5)
    assert half.dtype == torch.bfloat16 and half.shape == (2, 3, 8, 6)
    single = imresize_torch(batch[0, 0], 0.5)  # plain H x W tensor
    torch.testing.assert_close(single, imresize_torch(batch, 0.5)[0, 0])


def test_torch_is_differentiable() -> None:
    batch = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
    imresize_torch(batch, 0.5).sum().backward()
    assert batch.grad is not None
    # Each of the 6 x 6 outputs has weights summing to one over the inputs.
    assert float(batch.grad.sum()) == pytest.approx(36.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_torch_on_cuda_matches_cpu() -> None:
    batch = torch.rand(2, 3, 40, 36, dtype=torch.float64)
    cpu = imresize_torch(batch, 0.25)
    gpu = imresize_torch(batch.cuda(), 0.25)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("scale", [0, -0.5, float("nan"), float("inf"), "x"])
def test_bad_scale_raises(scale: object) -> None:
    with pytest.raises(ValueError, match="scale"):
        imresize(np.zeros((4, 4)), scale)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale"):
        imresize_torch(torch.zeros(1, 1, 4, 4), scale)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros(5), "ndim"),
        (np.zeros((2, 3, 4, 5)), "ndim"),
        (np.zeros((0, 4)), "non-empty"),
        (np.zeros((4, 0, 3)), "non-empty"),
        (np.zeros((4, 4), dtype=bool), "dtype"),
        (np.zeros((4, 4), dtype=complex), "dtype"),
    ],
)
def test_bad_image_raises(image: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        imresize(image, 0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"scale": 0.5, "output_shape": (2, 2)}, "exactly one"),
        ({"output_shape": (0, 3)}, "output_shape"),
        ({"output_shape": (2.5, 3)}, "output_shape"),
        ({"output_shape": (2, 3, 4)}, "output_shape"),
    ],
)
def test_bad_size_arguments_raise(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        imresize(np.zeros((4, 4)), **kwargs)  # type: ignore[arg-type]


def test_bad_tensor_raises() -> None:
    with pytest.raises(ValueError, match="floating"):
        imresize_torch(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match="ndim"):
        imresize_torch(torch.zeros(4), 0.5)
    with pytest.raises(ValueError, match="non-empty"):
        imresize_torch(torch.zeros(1, 3, 0, 4), 0.5)
    with pytest.raises(ValueError, match="Tensor"):
        imresize_torch(np.zeros((1, 1, 4, 4)), 0.5)  # type: ignore[arg-type]


def test_resize_matrix_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError, match="length"):
        resize_matrix(0, 3, 2.0)
    with pytest.raises(ValueError, match="scale"):
        resize_matrix(3, 3, 0.0)
