"""Shared fixtures: tiny models and small synthetic images (no ../shared needed)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import dualsr

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _private_cache_root(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN202
    """$DUALSR_HOME in a temporary folder for the whole session: `--backend auto`'s calibration
    cache and exported graphs (and any download) never touch the user's ~/.cache/dualsr."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DUALSR_HOME", str(tmp_path_factory.mktemp("dualsr_home")))
        yield


@pytest.fixture(autouse=True)
def _no_launch_measurement(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dualsr upscale`'s one-time measurement of its start-up with and without PyTorch
    (dualsr.deploy.launch) exports and times every new model file: a second or two per test
    that upscales its own tiny checkpoint. Only tests marked `launch_measurement` take it."""
    if "launch_measurement" not in request.keywords:
        monkeypatch.setattr("dualsr.deploy.autoselect.record_launch", lambda *a, **k: None)


@pytest.fixture(autouse=True)
def _no_winograd_candidate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Auto's Winograd candidate (dualsr.deploy.winograd) builds a C kernel and adds a third
    calibration to every test that mocks an AVX2 CPU; the tests of auto's other choices are
    written for fused and ONNX Runtime. Only tests marked `winograd` see it (the backend itself
    is tested directly, unmarked)."""
    if "winograd" not in request.keywords:
        monkeypatch.setattr(
            "dualsr.deploy.winograd.missing_requirement", lambda: "left out in this test"
        )


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)


def tiny_model(scale: int = 4, n_feats: int = 4, n_blocks: int = 1, seed: int = 0) -> dualsr.DRN:
    """A small random DRN (a few thousand parameters)."""
    torch.manual_seed(seed)
    return dualsr.DRN(scale, n_feats, n_blocks).eval()


def limit_forward_side(monkeypatch: pytest.MonkeyPatch, max_side: int) -> list[int]:
    """Make ``TorchUpscaler`` run out of memory on inputs (tiles) larger than ``max_side`` pixels;
    returns the list of every input's larger side, in call order."""
    from dualsr.inference import TorchUpscaler

    real = TorchUpscaler._forward
    sizes: list[int] = []

    def limited(self, lr):  # noqa: ANN001, ANN202
        sizes.append(max(lr.shape[-2:]))
        if max(lr.shape[-2:]) > max_side:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 99 GB")
        return real(self, lr)

    monkeypatch.setattr(TorchUpscaler, "_forward", limited)
    return sizes


def random_image(h: int, w: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth-ish random uint8 image (noise plus gradients)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 127 + 60 * np.sin(x / 5.0)[..., None] * np.cos(y / 7.0)[..., None]
    img = base + rng.normal(0, 20, size=(h, w, channels))
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


def write_png16(path: Path, arr: np.ndarray) -> None:
    """Write a 16-bit PNG (grayscale H x W or RGB H x W x 3) without Pillow, which cannot."""
    h, w = arr.shape[:2]
    ctype = 0 if arr.ndim == 2 else 2
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + tag + data + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A tiny x4 model saved in dualsr's format."""
    return dualsr.save_model(
        tmp_path / "tiny.safetensors", tiny_model(), metadata={"note": "test model"}
    )


@pytest.fixture
def train_folder(tmp_path: Path) -> Path:
    """Four 32 x 32 synthetic training images (search and prune data)."""
    from dualsr.data.image_io import write_image

    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(4):
        write_image(folder / f"img{i}.png", random_image(32, 32, seed=10 + i))
    return folder
