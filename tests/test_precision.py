"""Inference precision: what ``auto`` picks, the bf16 fused path, and the --precision options."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualsr.cli import main
from dualsr.deploy import fused as fused_module
from dualsr.deploy import precision as precision_module
from dualsr.deploy.bench import run_benchmark
from dualsr.deploy.fused import fuse_for_inference
from dualsr.inference import TorchUpscaler, sr_output

from .conftest import random_image, tiny_model


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Pretend the CPU has (True) or lacks (False) native bf16."""

    def set_native(flag: bool) -> None:
        features = ("avx512_bf16",) if flag else ()
        monkeypatch.setattr(precision_module, "cpu_bf16_features", lambda: features)

    return set_native


def test_auto_is_bf16_only_where_native(native) -> None:  # noqa: ANN001
    native(True)
    assert precision_module.resolve_precision("auto") == "bf16"
    assert precision_module.resolve_precision("fp32") == "fp32"
    assert "avx512_bf16" in precision_module.describe_precision()
    native(False)
    assert precision_module.resolve_precision("auto") == "fp32"
    assert "no AVX512_BF16 or AMX" in precision_module.describe_precision()
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        precision_module.resolve_precision("fp16")


def test_explicit_bf16_without_native_support_warns_that_it_is_emulated(native) -> None:  # noqa: ANN001
    native(False)
    with pytest.warns(UserWarning, match="bf16 is not native.*emulated.*--precision fp32"):
        up = TorchUpscaler(tiny_model(), precision="bf16")
    assert up.precision == "bf16"
    native(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TorchUpscaler(tiny_model(), precision="bf16").precision == "bf16"


def test_cpuinfo_flags_are_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for fn in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, fn, raising=False)
    precision_module.cpu_bf16_features.cache_clear()
    monkeypatch.setattr(precision_module, "_cpuinfo_bf16_flags", lambda: ("amx_bf16",))
    try:
        assert precision_module.cpu_bf16_features() == ("amx_bf16",)
    finally:
        precision_module.cpu_bf16_features.cache_clear()


def test_fused_bf16_keeps_the_ends_in_fp32_and_stays_close_to_fp32() -> None:
    model = tiny_model(n_feats=4, n_blocks=2)
    fused = fuse_for_inference(model, dtype=torch.bfloat16)
    assert fused.sub_mean.weight.dtype == torch.float32  # input scaling: fp32
    assert fused.tail.weight.dtype == torch.float32  # last conv: fp32 by default
    assert fused.head.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in fused.stages.parameters())
    lr = torch.from_numpy(random_image(12, 10).astype(np.float32)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        ref = sr_output(model, lr)
        out = fused(lr)
        low_tail = fuse_for_inference(model, dtype=torch.bfloat16, fp32_tail=False)(lr)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    diff = (out - ref).abs()
    assert 0 < float(diff.mean()) < 0.5  # bf16 is not exact, but close on 0..255
    assert low_tail.dtype == torch.float32
    assert fuse_for_inference(model, dtype=torch.bfloat16, fp32_tail=False).tail.weight.dtype == (
        torch.bfloat16
    )


def test_bf16_upscaler_tiles_and_ensembles_like_fp32() -> None:
    model = tiny_model()
    img = random_image(21, 17)
    ref = TorchUpscaler(model, precision="fp32")(img, out_dtype=np.float32)
    up = TorchUpscaler(model, precision="bf16")
    assert up.backend == "fused" and up.precision == "bf16"
    whole = up(img, out_dtype=np.float32)
    tiled = TorchUpscaler(model, precision="bf16", tile=4, tile_overlap=6)(img, np.float32)
    ens = TorchUpscaler(model, precision="bf16", ensemble=True)(img, np.float32)
    ens_ref = TorchUpscaler(model, precision="fp32", ensemble=True)(img, np.float32)
    for out, expected in ((whole, ref), (tiled, ref), (ens, ens_ref)):
        assert out.shape == ref.shape and out.dtype == np.float32
        assert np.abs(out - expected).mean() < 0.5
    assert np.abs(ens - whole).mean() > 0.1  # the ensemble really averaged something else


def test_bf16_falls_back_to_eager_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("no bf16 kernels")

    monkeypatch.setattr(fused_module, "fuse_for_inference", broken)
    model = tiny_model()
    with pytest.warns(UserWarning, match="fused inference path failed.*falling back to eager"):
        up = TorchUpscaler(model, precision="bf16")
    assert up.backend == "eager" and up.precision == "bf16"
    img = random_image(9, 8)
    out = up(img, out_dtype=np.float32)
    ref = TorchUpscaler(model, backend="eager", precision="fp32")(img, out_dtype=np.float32)
    assert out.dtype == np.float32
    assert 0 < np.abs(out - ref).mean() < 0.5  # autocast really ran in bf16


def test_a_bf16_self_check_failure_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fused_module.fuse_for_inference

    def garbage(model, **kwargs):  # noqa: ANN001, ANN003, ANN202
        fused = real(model, **kwargs)
        with torch.no_grad():
            fused.tail.bias.add_(50.0)  # a kernel that computes nonsense
        return fused

    monkeypatch.setattr(fused_module, "fuse_for_inference", garbage)
    with pytest.warns(UserWarning, match="differs from eager on average by"):
        up = TorchUpscaler(tiny_model(), precision="bf16")
    assert up.backend == "eager"


def test_upscale_and_eval_take_precision(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(random_image(20, 24)).save(src)
    outs = {}
    for prec in ("fp32", "bf16"):
        dst = tmp_path / f"{prec}.png"
        args = ["upscale", str(src), "-o", str(dst), "-m", str(tiny_checkpoint)]
        assert main([*args, "--precision", prec]) == 0
        outs[prec] = np.asarray(Image.open(dst)).astype(int)
    assert outs["fp32"].shape == (80, 96, 3)
    assert np.abs(outs["fp32"] - outs["bf16"]).mean() < 0.5
    with pytest.raises(SystemExit):  # argparse: exit code 2, the choices listed
        main(["upscale", str(src), "-o", str(tmp_path / "x.png"), "--precision", "fp16"])

    data = tmp_path / "set"
    data.mkdir()
    Image.fromarray(random_image(32, 40)).save(data / "a.png")
    for prec in ("fp32", "bf16"):
        out = tmp_path / f"eval-{prec}"
        args = ["eval", "-m", str(tiny_checkpoint), "--data", str(data), "--out", str(out)]
        assert main([*args, "--precision", prec]) == 0
        assert json.loads((out / "results.json").read_text())["precision"] == prec


def test_onnxruntime_refuses_bf16(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:  # noqa: ANN001
    src = tmp_path / "in.png"
    Image.fromarray(random_image(8, 8)).save(src)
    args = ["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", str(tiny_checkpoint)]
    assert main([*args, "--backend", "onnxruntime", "--precision", "bf16"]) == 1
    assert "ONNX Runtime runs this model in fp32" in capsys.readouterr().err


def test_bench_has_a_bf16_ceiling_for_bf16_backends() -> None:
    report = run_benchmark(
        {"tiny": tiny_model()},
        input_hw=(8, 12),
        backends=["fused", "fused-bf16"],
        threads=1,
        warmup=0,
        rounds=1,
        ceiling_shape=(8, 8, 16, 16),
    )
    assert [r.precision for r in report.results] == ["fp32", "bf16"]
    assert report.ceiling.precision == "fp32" and report.ceiling_bf16 is not None
    assert report.ceiling_bf16.precision == "bf16" and report.ceiling_bf16.macs_per_s > 0
    bf16 = report.results[1]
    assert bf16.error is None and bf16.max_abs_diff is not None
    assert bf16.ceiling_fraction == pytest.approx(bf16.macs_per_s / report.ceiling_bf16.macs_per_s)
    text = report.table()
    assert "ceiling bf16" in text and "fused-bf16" in text
