"""The Winograd F(4x4, 3x3) kernel, the ``winograd`` backend and its place in ``--backend auto``."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dualsr.cli import main
from dualsr.data.image_io import read_image, write_image
from dualsr.deploy import autoselect
from dualsr.deploy import winograd as wg
from dualsr.deploy.cpu import CpuInfo
from dualsr.deploy.fused import FusedConv, fuse_for_inference
from dualsr.inference import WINOGRAD_TOLERANCE, TorchUpscaler, sr_output

from .conftest import random_image, tiny_model

needs_kernel = pytest.mark.skipif(
    wg.unavailable_reason() is not None,
    reason=f"the Winograd kernel cannot run here: {wg.unavailable_reason()}",
)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("DUALSR_HOME", str(path))
    return path


def channels_last(*shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen).contiguous(memory_format=torch.channels_last)


@needs_kernel
@pytest.mark.parametrize(
    "n,c,k,h,w",
    [
        (1, 16, 16, 8, 8),
        (2, 16, 24, 13, 7),
        (1, 32, 8, 1, 1),
        (1, 8, 40, 21, 30),
        (3, 64, 64, 9, 5),
    ],
)
def test_the_kernel_computes_the_convolution(n: int, c: int, k: int, h: int, w: int) -> None:
    x = channels_last(n, c, h, w)
    weight = torch.randn(k, c, 3, 3) * 0.1
    bias = torch.randn(k)
    exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    u = wg.transform_kernel(weight)
    assert u.shape == (36, c, k)
    y = wg.conv3x3(x, u, bias)
    assert y.shape == exact.shape and y.is_contiguous(memory_format=torch.channels_last)
    direct_err = float((F.conv2d(x, weight, bias, padding=1) - exact).abs().max())
    err = float((y - exact).abs().max())
    assert err < 1e-4 and err < 30 * max(direct_err, 1e-7)  # fp32 rounding, not a wrong sum
    relu = wg.conv3x3(x, u, None, relu=True, threads=1)  # no bias, ReLU fused
    no_bias = F.conv2d(x.double(), weight.double(), None, padding=1).clamp_min(0)
    assert float((relu - no_bias).abs().max()) < 1e-4 and float(relu.min()) >= 0
    # each tile is computed the same way whatever the split across threads: equal bits
    for threads in (1, 3):
        assert torch.equal(wg.conv3x3(x, u, bias, threads=threads), y)
    out = torch.empty_like(y)
    assert wg.conv3x3(x, u, bias, out=out) is out and torch.equal(out, y)


@needs_kernel
def test_the_kernel_refuses_what_it_cannot_compute() -> None:
    x = channels_last(1, 16, 8, 8)
    with pytest.raises(ValueError, match="channels"):
        wg.conv3x3(x, wg.transform_kernel(torch.randn(16, 8, 3, 3)), None)  # 8 != 16 inputs
    with pytest.raises(RuntimeError, match="multiples of 8"):
        wg.conv3x3(x, wg.transform_kernel(torch.randn(12, 16, 3, 3)), None)
    with pytest.raises(ValueError, match="out must be"):
        wg.conv3x3(x, wg.transform_kernel(torch.randn(16, 16, 3, 3)), None, out=torch.empty(3))
    assert not wg.eligible(FusedConv(torch.randn(16, 12, 3, 3), None))  # channels
    assert not wg.eligible(FusedConv(torch.randn(16, 16, 3, 3), None, stride=2))
    assert not wg.eligible(FusedConv(torch.randn(16, 16, 3, 3), None, act="leaky_relu"))
    assert not wg.eligible(FusedConv(torch.randn(16, 16, 1, 1), None))
    assert wg.eligible(FusedConv(torch.randn(24, 16, 3, 3), None, act="relu"))
    with pytest.raises(ValueError, match="not a convolution"):
        wg.WinogradConv(FusedConv(torch.randn(16, 16, 1, 1), None))


@needs_kernel
def test_use_winograd_swaps_the_eligible_convolutions() -> None:
    model = tiny_model(n_feats=4, n_blocks=2)  # RCABs of 16 channels at the lowest level
    fused = fuse_for_inference(model)
    swapped = fuse_for_inference(model)
    count = wg.use_winograd(swapped)
    kinds = [type(m).__name__ for m in swapped.modules()]
    assert count == kinds.count("WinogradConv") and count >= 4  # two convs per RCAB, and more
    lr = torch.from_numpy(random_image(20, 24).astype(np.float32)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        ref = sr_output(model, lr)
        assert float((swapped(lr) - ref).abs().max()) < 1e-3
        assert float((fused(lr) - ref).abs().max()) < 1e-3
    with pytest.raises(ValueError, match="fp32 channels_last"):
        wg.use_winograd(fuse_for_inference(model, dtype=torch.bfloat16))


@needs_kernel
def test_the_winograd_backend_upscales_like_eager() -> None:
    model = tiny_model(n_feats=4, n_blocks=2)
    img = random_image(30, 26)
    up = TorchUpscaler(model, backend="winograd")
    assert (up.backend, up.precision) == ("winograd", "fp32")  # auto precision: fp32
    eager = TorchUpscaler(model, backend="eager", precision="fp32")
    diff = np.abs(up(img, np.float32) - eager(img, np.float32)).max()
    assert diff <= WINOGRAD_TOLERANCE
    tiled = TorchUpscaler(model, backend="winograd", tile=8, tile_overlap=4)
    assert np.abs(tiled(img, np.float32) - eager(img, np.float32)).max() < 5  # tiles: seams
    with pytest.raises(ValueError, match="fp32 on the CPU"):
        TorchUpscaler(model, backend="winograd", precision="bf16")


def test_without_the_kernel_the_backend_falls_back_to_fused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wg, "_load", lambda: wg._Failure("no C compiler (mocked)"))
    with pytest.warns(UserWarning, match="winograd inference path failed.*no C compiler"):
        up = TorchUpscaler(tiny_model(), backend="winograd")
    assert up.backend == "fused"
    assert up(random_image(9, 9)).shape == (36, 36, 3)


@pytest.mark.winograd  # the real missing_requirement
def test_missing_requirements_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wg.platform, "machine", lambda: "aarch64")
    assert "not x86-64" in wg.missing_requirement()
    monkeypatch.setattr(wg.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(wg, "detect_cpu", lambda: CpuInfo("old", ("avx2",), 2))
    assert "AVX2 or FMA" in wg.missing_requirement()
    monkeypatch.setattr(wg, "detect_cpu", lambda: CpuInfo("avx2", ("avx2", "fma"), 2))
    monkeypatch.setattr(wg.shutil, "which", lambda name: None)
    assert "no C compiler" in wg.missing_requirement()  # and none built in this home


def test_a_compiler_that_fails_is_reported_and_nothing_is_left_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home: Path
) -> None:
    monkeypatch.setattr(wg, "detect_cpu", lambda: CpuInfo("avx2", ("avx2", "fma"), 2))
    broken = tmp_path / "cc"
    broken.write_text("#!/bin/sh\necho 'cc: fatal error: no input' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    wg._load.cache_clear()
    try:
        why = wg.unavailable_reason()
    finally:
        wg._load.cache_clear()
    assert why is not None and "could not build winograd.c" in why and "fatal error" in why
    left = {p.suffix for p in (home / "kernels").glob("*")}
    assert left <= {".failed"}  # no library, no temporary file; the OpenMP attempt is remembered


@needs_kernel
def test_a_compiler_without_openmp_gives_the_same_kernel_on_python_threads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, home: Path
) -> None:
    real = wg.shutil.which("cc")
    calls = tmp_path / "calls"
    no_openmp = tmp_path / "cc"
    no_openmp.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case " $* " in *" -fopenmp "*)\n'
        '  echo "cc: error: unsupported option -fopenmp" >&2; exit 1;;\n'
        "esac\n"
        f'exec {real} "$@"\n'
    )
    no_openmp.chmod(0o755)
    x = channels_last(1, 16, 11, 17)
    weight = torch.randn(24, 16, 3, 3) * 0.1
    bias = torch.randn(24)
    u = wg.transform_kernel(weight)
    with_openmp = wg.conv3x3(x, u, bias, threads=2)
    if not wg.uses_openmp():
        pytest.skip("the C compiler here builds no OpenMP: nothing to compare with")
    shutil.rmtree(home / "kernels", ignore_errors=True)
    monkeypatch.setenv("CC", str(no_openmp))
    wg._load.cache_clear()
    try:
        assert wg.unavailable_reason() is None and not wg.uses_openmp()
        threads = wg.conv3x3(x, u, bias, threads=2)
        wg._load.cache_clear()
        assert wg.unavailable_reason() is None  # loads the built one; OpenMP is not retried
    finally:
        wg._load.cache_clear()
    assert torch.equal(threads, with_openmp)
    builds = calls.read_text().splitlines()
    assert len(builds) == 2 and "-fopenmp" in builds[0] and "-fopenmp" not in builds[1]
    assert (home / "kernels").exists() and any((home / "kernels").glob("*.failed"))


@needs_kernel
@pytest.mark.winograd
def test_auto_considers_winograd_under_precision_auto_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autoselect, "native_bf16", lambda device: False)
    monkeypatch.setattr(autoselect, "onnxruntime_available", lambda: False)
    model = tiny_model()
    found, _ = autoselect.candidates(model, "auto")
    assert found == [("fused", "fp32"), ("winograd", "fp32")]
    found, _ = autoselect.candidates(model, "fp32")
    assert found == [("fused", "fp32")]  # not rounded like direct convolution: not for fp32

    seen = []

    def fake_measure(candidate, upscaler, image):  # noqa: ANN001, ANN202
        seen.append((candidate, upscaler.backend))
        return {"fused": 0.02, "winograd": 0.01}[candidate[0]]

    monkeypatch.setattr(autoselect, "measure", fake_measure)
    choice = autoselect.choose_backend(model)
    assert (choice.backend, choice.precision) == ("winograd", "fp32")
    assert seen == [(("fused", "fp32"), "fused"), (("winograd", "fp32"), "winograd")]
    up = autoselect.auto_upscaler(model)
    assert isinstance(up, TorchUpscaler) and up.backend == "winograd"


@pytest.mark.winograd
def test_a_winograd_candidate_that_falls_back_is_not_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autoselect, "native_bf16", lambda device: False)
    monkeypatch.setattr(autoselect, "onnxruntime_available", lambda: False)
    monkeypatch.setattr(wg, "missing_requirement", lambda: None)
    monkeypatch.setattr(wg, "_load", lambda: wg._Failure("mocked build failure"))
    monkeypatch.setattr(autoselect, "measure", lambda candidate, up, image: 0.01)
    with pytest.warns(UserWarning, match="mocked build failure"):
        choice = autoselect.choose_backend(tiny_model(), cache=False)
    assert choice.backend == "fused" and "winograd fp32 ran as fused" in choice.reason
    assert choice.timings == {"fused fp32": 0.01}


@needs_kernel
def test_cli_backend_winograd_and_clear_cache(tmp_path: Path, home: Path) -> None:
    ckpt = tmp_path / "m.safetensors"
    import dualsr

    dualsr.save_model(ckpt, tiny_model(n_feats=4, n_blocks=2))
    src = tmp_path / "in.png"
    write_image(src, random_image(20, 18))
    for backend in ("winograd", "eager"):
        out = tmp_path / f"{backend}.png"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a fallback to fused would warn
            args = ["upscale", str(src), "-o", str(out), "-m", str(ckpt), "--backend", backend]
            assert main(args) == 0
    ours, eager = (read_image(tmp_path / f"{b}.png").pixels for b in ("winograd", "eager"))
    assert np.abs(ours - eager).max() <= 1
    wg.unavailable_reason()  # built (or already loaded) for this home
    (home / "kernels").mkdir(parents=True, exist_ok=True)
    assert home / "kernels" in autoselect.clear_cache()
