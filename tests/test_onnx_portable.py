"""The portable ONNX graph: bicubic as fixed convolutions, checked in ONNX Runtime and OpenCV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dualsr
from dualsr.cli import main
from dualsr.data.image_io import write_image
from dualsr.deploy import export_onnx, fuse_for_inference, onnx_session
from dualsr.deploy.portable import BicubicUpsample, PixelShuffleConv, phase_taps
from dualsr.inference import sr_output

from .conftest import random_image

#: Every op type the default (portable) graphs may contain.
PORTABLE_OPS = {
    "Add",
    "Cast",
    "Concat",
    "Constant",
    "Conv",
    "ConvTranspose",
    "Div",
    "GlobalAveragePool",
    "Identity",
    "LeakyRelu",
    "Mul",
    "Relu",
    "Sigmoid",
    "Slice",
}
SIZES = ((10, 12), (7, 5))  # neither is the traced size (16 x 16)


def _model(scale: int) -> dualsr.DRN:
    torch.manual_seed(scale)
    return dualsr.DRN(scale, 4, 1).eval()


def _reference(model: dualsr.DRN, lr: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return sr_output(model, lr).numpy()


def _op_types(path: Path) -> set[str]:
    onnx = pytest.importorskip("onnx")
    return {node.op_type for node in onnx.load(str(path)).graph.node}


# ----------------------------------------------------------------------------------------------
# The modules
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_bicubic_upsample_matches_interpolate(scale: int) -> None:
    up = BicubicUpsample(scale)
    for hw in ((1, 1), (2, 3), (5, 7), (1, 6), (8, 6), (13, 10)):  # smaller than the filter too
        x = torch.rand(2, 3, *hw) * 255
        ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
        out = up(x)
        assert out.shape == ref.shape
        assert (out - ref).abs().max() <= 1e-3, hw


def test_phase_taps_are_normalised_cubic_filters() -> None:
    taps = phase_taps(4)
    assert taps.shape == (4, 5)
    assert torch.allclose(taps.sum(dim=1), torch.ones(4, dtype=torch.float64))
    # phases 0, 1 read pixels i-2 .. i+1, phases 2, 3 read i-1 .. i+2 (half-pixel centres)
    assert (taps[:2, 4] == 0).all() and (taps[2:, 0] == 0).all()
    assert torch.equal(taps[0], taps[3].flip(0))  # mirror-symmetric phases


def test_pixel_shuffle_conv_is_exact() -> None:
    x = torch.randn(2, 5 * 4, 3, 7)
    assert torch.equal(PixelShuffleConv(5, 2)(x), F.pixel_shuffle(x, 2))
    x = torch.randn(1, 3 * 64, 2, 3)
    assert torch.equal(PixelShuffleConv(3, 8)(x), F.pixel_shuffle(x, 8))


def test_fused_portable_upsample_keeps_the_other_options() -> None:
    model = _model(4)
    lr = torch.rand(2, 3, 9, 11) * 255
    ref = _reference(model, lr)
    for channels_last in (True, False):
        fused = fuse_for_inference(model, channels_last=channels_last, portable_upsample=True)
        assert isinstance(fused.upsample, BicubicUpsample)
        with torch.inference_mode():
            assert np.abs(fused(lr).numpy() - ref).max() <= 1e-3
    assert fuse_for_inference(model).upsample is None  # the default path is unchanged
    # dtype / fp32_tail still work with it: the bicubic stays fp32
    bf16 = fuse_for_inference(model, dtype=torch.bfloat16, fp32_tail=False)
    bf16_portable = fuse_for_inference(
        model, dtype=torch.bfloat16, fp32_tail=False, portable_upsample=True
    )
    with torch.inference_mode():
        a, b = bf16(lr), bf16_portable(lr)
    assert a.dtype == b.dtype == torch.float32
    assert (a - b).abs().max() <= 1.0  # bf16 rounding of nearly equal inputs


# ----------------------------------------------------------------------------------------------
# The exported graph, in ONNX Runtime and OpenCV
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "eager"])
@pytest.mark.parametrize("scale", [2, 4])
def test_portable_export_has_no_resize_and_matches_onnxruntime(
    tmp_path: Path, scale: int, fused: bool
) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = _model(scale)
    path = export_onnx(model, tmp_path / "m.onnx", fused=fused)
    ops = _op_types(path)
    assert "Resize" not in ops and "DepthToSpace" not in ops and "Shape" not in ops
    assert ops <= PORTABLE_OPS, ops - PORTABLE_OPS
    proto = onnx.load(str(path))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[2].dim_param and dims[3].dim_param  # dynamic N, H, W
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["dualsr_upsample"] == "conv" and meta["dualsr_scale"] == str(scale)
    session = onnx_session(path)
    for hw in SIZES:
        lr = torch.rand(1, 3, *hw) * 255
        out = session.run(["sr"], {"lr": lr.numpy()})[0]
        assert out.shape == (1, 3, hw[0] * scale, hw[1] * scale)
        assert np.abs(out - _reference(model, lr)).max() <= 1e-3


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "eager"])
@pytest.mark.parametrize("scale", [2, 4])
def test_portable_export_runs_in_opencv_dnn(tmp_path: Path, scale: int, fused: bool) -> None:
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("onnx")
    model = _model(scale)
    net = cv2.dnn.readNetFromONNX(str(export_onnx(model, tmp_path / "m.onnx", fused=fused)))
    # dynamic batch and size; 1 x 1 first: OpenCV 4.10 mis-plans later sizes after a 1 x 1
    # image when the channel mean is a ReduceMean (the portable graph uses GlobalAveragePool)
    for n, hw in ((1, (1, 1)), (1, SIZES[0]), (1, SIZES[1]), (2, (3, 4))):
        lr = torch.rand(n, 3, *hw) * 255
        net.setInput(lr.numpy())
        out = net.forward()
        assert out.shape == (n, 3, hw[0] * scale, hw[1] * scale)
        assert np.abs(out - _reference(model, lr)).max() <= 1e-3


def test_resize_op_export_is_the_previous_graph(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = _model(4)
    path = export_onnx(model, tmp_path / "m.onnx", portable=False)
    assert "Resize" in _op_types(path)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["dualsr_upsample"] == "resize"
    lr = torch.rand(1, 3, *SIZES[0]) * 255
    out = onnx_session(path).run(["sr"], {"lr": lr.numpy()})[0]
    assert np.abs(out - _reference(model, lr)).max() <= 1e-3
    try:
        import cv2
    except ImportError:
        return
    if cv2.__version__.startswith("4.10."):
        # OpenCV 4.10's Resize layer has nearest and (bi)linear modes only: the import fails
        with pytest.raises(cv2.error, match="Resize"):
            cv2.dnn.readNetFromONNX(str(path))


def test_export_command_default_and_resize_op(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    default, legacy = tmp_path / "default.onnx", tmp_path / "legacy.onnx"
    assert main(["export", str(tiny_checkpoint), "-o", str(default)]) == 0
    out = capsys.readouterr().out
    assert "portable" in out and "max |diff|" in out
    assert main(["export", str(tiny_checkpoint), "-o", str(legacy), "--resize-op"]) == 0
    assert "Resize node" in capsys.readouterr().out
    assert "Resize" not in _op_types(default)
    assert "Resize" in _op_types(legacy)


def test_portable_onnx_matches_upscale_command(tmp_path: Path, tiny_checkpoint: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    write_image(src, random_image(11, 9, seed=3))
    args = ["upscale", str(src), "-o", str(dst), "-m", str(tiny_checkpoint), "--precision", "fp32"]
    assert main(args) == 0
    ref = np.asarray(Image.open(dst).convert("RGB")).astype(int)
    path = export_onnx(dualsr.load_model(tiny_checkpoint), tmp_path / "m.onnx")
    lr = np.asarray(Image.open(src).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None]
    lr = np.ascontiguousarray(lr)

    def to_uint8(sr: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(sr[0].transpose(1, 2, 0)), 0, 255).astype(int)

    out = to_uint8(onnx_session(path).run(["sr"], {"lr": lr})[0])
    assert out.shape == ref.shape == (44, 36, 3)
    assert np.abs(out - ref).max() <= 1
    try:
        import cv2
    except ImportError:
        return
    net = cv2.dnn.readNetFromONNX(str(path))
    net.setInput(lr)
    assert np.abs(to_uint8(net.forward()) - ref).max() <= 1
