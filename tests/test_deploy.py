"""The fast inference path, ONNX export and ONNX Runtime, INT8 quantization, and fallbacks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dualsr
from dualsr.cli import main
from dualsr.data.image_io import write_image
from dualsr.deploy import OnnxUpscaler, export_onnx, fuse_for_inference, onnx_session
from dualsr.deploy import fused as fused_module
from dualsr.inference import TorchUpscaler, sr_output
from dualsr.profiling import count_macs

from .conftest import random_image, tiny_model


def _pruned(scale: int = 4) -> dualsr.DRN:
    full = dualsr.DRN(scale, 8, 2).channel_widths()
    torch.manual_seed(1)
    return dualsr.DRN(
        scale, 8, 2, channel_config=[max(1, w // 2 - i % 3) for i, w in enumerate(full)]
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda: tiny_model(),
        lambda: tiny_model(scale=8, n_blocks=2),
        lambda: tiny_model(n_blocks=0),
        lambda: dualsr.DRN(4, 4, 1, rgb_range=1.0),
        _pruned,
        lambda: _pruned(8),
    ],
    ids=["x4", "x8", "no-rcab", "rgb1", "pruned-x4", "pruned-x8"],
)
@pytest.mark.parametrize("fold", [None, True, False])
def test_fused_matches_eager(build, fold: bool | None) -> None:  # noqa: ANN001
    model = build().eval()
    fused = fuse_for_inference(model, fold=fold)
    lr = torch.rand(2, 3, 11, 9) * 255
    with torch.inference_mode():
        ref = sr_output(model, lr)
        out = fused(lr)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-3


def test_fused_does_less_work_and_touches_nothing() -> None:
    model = tiny_model(n_feats=8, n_blocks=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    assert all(stage.folded for stage in fused.stages)
    assert count_macs(fused, (16, 16)) < count_macs(model, (16, 16))
    lr = torch.rand(1, 3, 10, 10) * 255
    lr_copy = lr.clone()
    with torch.inference_mode():
        first, second = fused(lr), fused(lr)
    assert torch.equal(first, second)  # in-place ops never leak between calls
    assert torch.equal(lr, lr_copy)  # nor into the input
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(p.requires_grad for p in fused.parameters())


def test_folding_is_chosen_by_cost() -> None:
    # a narrow upsampler (few PixelShuffle groups) feeding a wide 1x1 conv: folding would add work
    full = dualsr.DRN(4, 8, 1).channel_widths()
    narrow = list(full)
    narrow[2 + 1] = 1  # stage 0's upsampler groups (after 2 down widths and 1 RCAB)
    model = dualsr.DRN(4, 8, 1, channel_config=narrow)
    fused = fuse_for_inference(model)
    assert not fused.stages[0].folded and fused.stages[1].folded
    assert count_macs(fused, (8, 8)) < count_macs(fuse_for_inference(model, fold=True), (8, 8))


def test_torch_upscaler_default_is_the_fused_path_on_cpu() -> None:
    model = tiny_model()
    img = random_image(9, 13)
    fast = TorchUpscaler(model, precision="fp32")
    assert fast.backend == "fused"
    eager = TorchUpscaler(model, backend="eager", precision="fp32")
    assert eager.backend == "eager"
    diff = np.abs(fast(img, out_dtype=np.float32) - eager(img, out_dtype=np.float32)).max()
    assert diff <= 1e-3
    with pytest.raises(ValueError, match="unknown backend"):
        TorchUpscaler(model, backend="fast")


def test_fused_build_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("no luck")

    monkeypatch.setattr(fused_module, "fuse_for_inference", broken)
    model = tiny_model()
    with pytest.warns(UserWarning, match="fused inference path failed.*falling back to eager"):
        up = TorchUpscaler(model)
    assert up.backend == "eager"
    img = random_image(6, 7)
    ref = TorchUpscaler(model, backend="eager")(img, out_dtype=np.float32)
    assert np.array_equal(up(img, out_dtype=np.float32), ref)


def test_fast_path_failing_at_run_time_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    up = TorchUpscaler(model)

    def broken(lr: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("oneDNN says no")

    up._fast = broken
    with pytest.warns(UserWarning, match="oneDNN says no"):
        out = up(random_image(6, 7), out_dtype=np.float32)
    assert up.backend == "eager" and out.shape == (24, 28, 3)


def test_out_of_memory_is_not_hidden_by_a_fallback() -> None:
    up = TorchUpscaler(tiny_model())

    def oom(lr: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")

    up._fast = oom
    with pytest.raises(RuntimeError, match="can't allocate"):
        up(random_image(6, 7))


def test_compile_failure_falls_back_to_fused(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(module, **kwargs):  # noqa: ANN001, ANN003, ANN202
        def run(lr: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

        return run

    monkeypatch.setattr(torch, "compile", no_compiler)
    model = tiny_model()
    up = TorchUpscaler(model, backend="compile", precision="fp32")
    assert up.backend == "compile"
    with pytest.warns(UserWarning, match="compile inference path failed.*falling back to fused"):
        out = up(random_image(6, 7), out_dtype=np.float32)
    assert up.backend == "fused"
    ref = TorchUpscaler(model, backend="eager", precision="fp32")(
        random_image(6, 7), out_dtype=np.float32
    )
    assert np.abs(out - ref).max() <= 1e-3


# ----------------------------------------------------------------------------------------------
# ONNX
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False])
def test_onnx_export_matches_eager_at_two_sizes(tmp_path: Path, fused: bool) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = tiny_model(n_blocks=2)
    path = export_onnx(model, tmp_path / "m.onnx", fused=fused)
    proto = onnx.load(str(path))
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert [o.name for o in proto.graph.output] == ["sr"]  # the final SR output only
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[2].dim_param and dims[3].dim_param  # dynamic height and width
    session = onnx_session(path)
    for hw in ((10, 12), (23, 17)):  # neither is the traced size (16 x 16)
        lr = torch.rand(1, 3, *hw) * 255
        with torch.inference_mode():
            ref = sr_output(model, lr).numpy()
        out = session.run(["sr"], {"lr": lr.numpy()})[0]
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= 1e-3


def test_onnx_export_of_a_pruned_x8_model(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = _pruned(8).eval()
    session = onnx_session(export_onnx(model, tmp_path / "m.onnx"))
    for hw in ((5, 7), (9, 4)):
        lr = torch.rand(1, 3, *hw) * 255
        with torch.inference_mode():
            ref = sr_output(model, lr).numpy()
        assert np.abs(session.run(["sr"], {"lr": lr.numpy()})[0] - ref).max() <= 1e-3


def test_onnx_upscaler_tiles_like_the_torch_upscaler(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = tiny_model()
    path = export_onnx(model, tmp_path / "m.onnx")
    img = random_image(14, 11)
    ref = TorchUpscaler(model, tile=5, tile_overlap=2, backend="eager", precision="fp32")(
        img, out_dtype=np.float32
    )
    calls: list[tuple[int, int]] = []
    up = OnnxUpscaler(path, tile=5, tile_overlap=2, progress=lambda d, t: calls.append((d, t)))
    assert up.scale == 4
    out = up(img, out_dtype=np.float32)
    assert np.abs(out - ref).max() <= 1e-3
    assert calls[-1] == (4, 4)  # 2 x 2 tiles (tile_grid)
    on_the_fly = OnnxUpscaler(model)  # a DRN is exported to a temporary file
    whole = TorchUpscaler(model, backend="eager", precision="fp32")(img)
    assert np.abs(on_the_fly(img).astype(int) - whole).max() <= 1


def test_missing_onnxruntime_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(
        dualsr.DualSRError, match=r"onnxruntime is not installed: pip install 'dualsr\[onnx\]'"
    ):
        OnnxUpscaler(tiny_model())


def test_export_and_upscale_commands(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["export", str(tiny_checkpoint), "-o", str(onnx_path)]) == 0
    assert "max |diff|" in capsys.readouterr().out
    write_image(tmp_path / "in.png", random_image(9, 10))
    outs = {}
    for name, extra in {
        "onnx-file": ["-m", str(onnx_path)],
        "on-the-fly": ["-m", str(tiny_checkpoint), "--backend", "onnxruntime"],
        "eager": ["-m", str(tiny_checkpoint), "--backend", "eager"],
        "default": ["-m", str(tiny_checkpoint)],
    }.items():
        dst = tmp_path / f"{name}.png"
        assert main(["upscale", str(tmp_path / "in.png"), "-o", str(dst), *extra]) == 0
        outs[name] = np.asarray(Image.open(dst)).astype(int)
    for name, arr in outs.items():
        assert arr.shape == (36, 40, 3)
        assert np.abs(arr - outs["eager"]).max() <= 1, name  # rounding of a 1e-4 difference
    bad = ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.png")]
    assert main([*bad, "-m", str(onnx_path), "--backend", "fused"]) == 1
    assert "runs with --backend onnxruntime" in capsys.readouterr().err


def test_int8_quantization_runs_and_keeps_metadata(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from dualsr.deploy.quantize import calibration_patches, quantize_onnx

    model = tiny_model(n_feats=8, n_blocks=2)
    fp32 = export_onnx(model, tmp_path / "m.onnx")
    hr = [random_image(64, 64, seed=s) for s in range(2)]
    patches = calibration_patches(hr, scale=4, patch=12, per_image=2)
    assert len(patches) == 4 and patches[0].shape == (1, 3, 12, 12)
    int8 = quantize_onnx(fp32, tmp_path / "m-int8.onnx", patches)
    proto = onnx.load(str(int8))
    assert any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["dualsr_scale"] == "4" and meta["dualsr_quantization"] == "int8-qdq-static"
    img = random_image(12, 12, seed=5)
    ref = OnnxUpscaler(fp32)(img, out_dtype=np.float32)
    out = OnnxUpscaler(int8)(img, out_dtype=np.float32)
    assert out.shape == ref.shape
    assert 0 < np.abs(out - ref).mean() < 8  # quantized: close, but not identical


def test_int8_of_the_rcabs_only_quantizes_their_3x3_convolutions(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from dualsr.deploy.quantize import calibration_patches, quantize_onnx

    fp32 = export_onnx(tiny_model(n_feats=8, n_blocks=2), tmp_path / "m.onnx")
    patches = calibration_patches([random_image(64, 64)], scale=4, patch=12, per_image=2)

    def quantized_convs(layers: str) -> set[str]:
        path = quantize_onnx(fp32, tmp_path / f"{layers}.onnx", patches, layers=layers)
        graph = onnx.load(str(path)).graph
        dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
        return {n.name for n in graph.node if n.op_type == "Conv" and n.input[0] in dequantized}

    rcab, every = quantized_convs("rcab"), quantized_convs("all")
    assert rcab and all(name.endswith(("/conv1/Conv", "/conv2/Conv")) for name in rcab)
    assert rcab < every  # "all" also quantizes the down, up and attention convolutions
    with pytest.raises(ValueError, match="layers must be one of all, rcab"):
        quantize_onnx(fp32, tmp_path / "x.onnx", patches, layers="body")


def test_int8_export_is_written_only_if_psnr_holds(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    calib, valid = tmp_path / "calib", tmp_path / "valid"
    for folder, seed in ((calib, 0), (valid, 10)):
        folder.mkdir()
        for i in range(2):
            write_image(folder / f"{i}.png", random_image(32, 28, seed=seed + i))
    out = tmp_path / "int8.onnx"
    args = ["export", str(tiny_checkpoint), "-o", str(out), "--int8"]
    args += ["--calibration", str(calib), "--validate", str(valid)]
    assert main([*args, "--max-psnr-loss", "-100"]) == 1  # INT8 would have to gain 100 dB
    assert "not written" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--max-psnr-loss", "100"]) == 0
    assert "PSNR float32" in capsys.readouterr().out and out.exists()
    assert OnnxUpscaler(out)(random_image(8, 8)).shape == (32, 32, 3)
    assert main(["export", str(tiny_checkpoint), "-o", str(out), "--int8"]) == 1  # no folders
    rcab = tmp_path / "rcab.onnx"
    assert main([*args[:3], str(rcab), *args[4:], "--int8-layers", "rcab"]) == 0
    assert "(INT8 rcab, x4" in capsys.readouterr().out

    def quantized(path: Path) -> int:
        return sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node)

    assert 0 < quantized(rcab) < quantized(out)


def test_tune_allocator_switch_validation_and_idempotence(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    from dualsr.deploy import allocator

    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setenv("DUALSR_TUNE_MALLOC", "0")
    assert allocator.tune_allocator() is None  # disabled: nothing changed
    monkeypatch.delenv("DUALSR_TUNE_MALLOC")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        assert allocator.tune_allocator() is None
        return
    with pytest.raises(ValueError, match="mmap threshold"):
        allocator.tune_allocator(mmap_threshold_mb=64)  # above glibc's cap
    applied = allocator.tune_allocator()
    assert applied == {
        "mmap_threshold": 32 << 20,
        "trim_threshold": 1 << 30,
        "top_pad": 64 << 20,
        "mmap_max": 0,
    }
    assert allocator.tune_allocator(trim_mb=1) is applied  # process-wide: applied once
    # the fast path still computes the same thing afterwards
    model = dualsr.create_model("drn-t-x4").eval()
    up = dualsr.TorchUpscaler(model)
    assert up.backend == "fused"


def test_heap_only_malloc_for_fp32_jobs_of_one_tile_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import platform

    from dualsr.deploy import allocator

    asked = []
    monkeypatch.setattr(allocator, "set_heap_only", asked.append)
    model = dualsr.create_model("drn-t-x4").eval()
    image = random_image(12, 10)
    fp32 = dualsr.TorchUpscaler(model, backend="fused", precision="fp32", tile=16)
    fp32(image)  # one tile: heap-only is faster for large activations
    dualsr.TorchUpscaler(model, backend="fused", precision="fp32", tile=4, tile_overlap=2)(image)
    dualsr.TorchUpscaler(model, backend="fused", precision="bf16", tile=16)(image)
    dualsr.TorchUpscaler(model, backend="eager", precision="fp32")(image)  # not a fast path
    # many tiles fragment a heap-only malloc (peak memory); bf16's activations fit anyway
    assert asked == [True, False, False]
    monkeypatch.undo()
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        assert allocator.set_heap_only(True) is False
        return
    monkeypatch.setattr(allocator, "_applied", None)
    assert allocator.set_heap_only(True) is False  # not tuned yet: nothing to switch
    first = allocator.tune_allocator(heap_only=False)
    assert first is not None and "mmap_max" not in first
    assert allocator.set_heap_only(True) and allocator._applied == {**first, "mmap_max": 0}
    assert allocator.set_heap_only(False) and allocator._applied == first
    later = allocator.tune_allocator(heap_only=True)  # a later heap-only call adds it
    assert later == {**first, "mmap_max": 0}
    allocator.set_heap_only(False)
