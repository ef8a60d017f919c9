"""INT8 static quantization of exported models with ONNX Runtime (experimental).

The convolutions of an exported graph (:func:`dualsr.deploy.export_onnx`) are quantized to int8
(QDQ format: per-channel symmetric int8 weights, uint8 activations whose ranges are calibrated
on a few LR images); by default the first convolutions (mean shift, head) and the last one (the
tail, which produces the image) stay in float32, the usual choice for SR networks whose
output is compared pixel by pixel. Channel attention, additions and the bicubic resize stay in
float32.

Whether to use it is a trade-off measured by ``benchmarks/bench_int8.py``: speed-up against
PSNR change on Set5/Set14. dualsr offers INT8 only where that PSNR loss is at most 0.1 dB:
:func:`quantize_checked` (``dualsr export --int8``) evaluates both models on validation folders
and writes the INT8 model only when every folder passes. The check needs trained weights
(random weights make a PSNR comparison meaningless).
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.imresize import imresize
from .onnx import require_onnx, require_onnxruntime


def calibration_patches(
    images: Sequence[np.ndarray], scale: int, patch: int = 48, per_image: int = 2, seed: int = 0
) -> list[np.ndarray]:
    """LR calibration inputs (1 x 3 x patch x patch float32 in 0..255) from HR images.

    Each HR image (H x W x 3 uint8) is downscaled with MATLAB-style bicubic by ``scale`` (the
    evaluation protocol's LR), and ``per_image`` random ``patch`` x ``patch`` crops are taken
    (the whole LR image when it is smaller).
    """
    rng = np.random.default_rng(seed)
    out = []
    for hr in images:
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        lr = imresize(hr[:h, :w], 1.0 / scale).astype(np.float32)
        for _ in range(per_image):
            y = int(rng.integers(0, max(1, lr.shape[0] - patch + 1)))
            x = int(rng.integers(0, max(1, lr.shape[1] - patch + 1)))
            crop = lr[y : y + patch, x : x + patch]
            out.append(np.ascontiguousarray(crop.transpose(2, 0, 1)[None]))
    return out


def synthetic_images(count: int, side: int = 96, seed: int = 0) -> list[np.ndarray]:
    """``count`` deterministic RGB images (side x side, uint8) with a natural image's 1/f
    amplitude spectrum and random phases: calibration inputs for INT8 that need no data set.

    Photographs' spectra fall off roughly as 1/f; these images share that, but not their
    colours, edges or textures: calibrated on them, INT8 loses several times more PSNR than
    calibrated on T91 patches (drn-t-x4 on Set5: -0.26 dB against -0.06 dB,
    ``benchmarks/results/int8_accuracy_native-bf16.json``). Use real images where you have them.
    """
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.rfftfreq(side)[None, :]
    falloff = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / side)
    out = []
    for _ in range(count):
        chans = []
        base = rng.normal(size=(side, side))
        for _c in range(3):  # correlated colour channels, as in photographs
            noise = 0.8 * base + 0.2 * rng.normal(size=(side, side))
            chans.append(np.fft.irfft2(np.fft.rfft2(noise) * falloff, s=(side, side)))
        img = np.stack(chans, axis=-1)
        lo, hi = np.percentile(img, [0.5, 99.5])
        img = np.clip((img - lo) / max(hi - lo, 1e-9), 0, 1) * 255
        out.append(np.rint(img).astype(np.uint8))
    return out


def synthetic_calibration(scale: int) -> list[np.ndarray]:
    """The LR calibration patches that need no data set: 16 synthetic 192 x 192 images
    (:func:`synthetic_images`, seed 0), four 48-pixel LR patches each. ``--backend auto``'s INT8
    graphs are calibrated on exactly these, as ``benchmarks/int8_accuracy.py`` measured them."""
    return calibration_patches(synthetic_images(16, 192, seed=0), scale, patch=48, per_image=4)


#: What :func:`quantize_onnx` can quantize: every convolution, or the RCABs' 3x3 ones only.
QUANTIZED_LAYERS = ("all", "rcab")


def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: Iterable[np.ndarray | torch.Tensor],
    keep_ends: bool = True,
    per_channel: bool = True,
    layers: str = "all",
) -> Path:
    """Write an INT8 (QDQ) version of the exported float model ``fp32_path`` to ``out_path``.

    Args:
        fp32_path: a model written by :func:`dualsr.deploy.export_onnx`.
        out_path: where the quantized model goes.
        calibration: LR inputs (N x 3 x h x w, 0..255) whose activation ranges set the scales
            (see :func:`calibration_patches`).
        keep_ends: keep the first two and the last convolutions in float32.
        per_channel: per-output-channel weight scales (more accurate, slightly slower).
        layers: ``"all"`` (every convolution, but the ends with ``keep_ends``) or ``"rcab"``
            (only the two 3x3 convolutions of each RCAB, where most multiply-adds are; the
            rest stays float32).
    """
    if layers not in QUANTIZED_LAYERS:
        raise ValueError(f"layers must be one of {', '.join(QUANTIZED_LAYERS)}, got {layers!r}")
    onnx = require_onnx()
    require_onnxruntime()
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    inputs = [np.ascontiguousarray(np.asarray(x, dtype=np.float32)) for x in calibration]
    if not inputs:
        raise ValueError("quantization needs at least one calibration input")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(inputs)

        def get_next(self) -> dict | None:
            item = next(self.items, None)
            return None if item is None else {"lr": item}

    model = onnx.load(str(fp32_path))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    exclude = (convs[:2] + convs[-1:]) if keep_ends and len(convs) > 3 else []
    if layers == "rcab":  # the exported names end in /blocks.<i>/conv1/Conv or .../conv2/Conv
        exclude = [n for n in convs if not re.search(r"/blocks\.\d+/conv[12]/Conv$", n)]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    logging.disable(logging.WARNING)  # onnxruntime logs advice through the root logger
    try:
        quantize_static(
            str(fp32_path),
            str(out_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True},
        )
    finally:
        logging.disable(logging.NOTSET)
    quantized = onnx.load(str(out_path))
    for prop in model.metadata_props:  # keep scale and architecture
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    quantized.metadata_props.add(key="dualsr_quantization", value="int8-qdq-static")
    onnx.save(quantized, str(out_path))
    return out_path


#: The largest PSNR loss (dB) for which dualsr writes an INT8 model.
MAX_PSNR_LOSS_DB = 0.1


@dataclass
class QuantizationCheck:
    """PSNR of the float32 and INT8 ONNX models on one validation folder."""

    dataset: str
    psnr_fp32: float
    psnr_int8: float

    @property
    def change_db(self) -> float:
        """INT8 minus float32 PSNR (negative: INT8 is worse)."""
        return self.psnr_int8 - self.psnr_fp32


def quantize_checked(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: str | Path,
    validation: Sequence[str | Path],
    max_loss_db: float = MAX_PSNR_LOSS_DB,
    calibration_images: int = 16,
    layers: str = "all",
) -> list[QuantizationCheck]:
    """Quantize, then keep the INT8 model only if it loses at most ``max_loss_db`` of PSNR.

    Args:
        fp32_path: an exported float model.
        out_path: where the INT8 model is written (only when the check passes).
        calibration: a folder of HR images (or with an ``HR/`` subfolder); LR patches of the first
            ``calibration_images`` set the activation ranges. Use training images, not the
            validation sets.
        validation: folders of HR images evaluated with the papers' protocol (Y channel, border
            shave = scale) by both models.
        max_loss_db: the largest PSNR loss allowed on every validation folder.
        layers: which convolutions are quantized (:func:`quantize_onnx`).

    Returns the per-folder PSNRs. Raises DualSRError (nothing written) when a folder loses more.
    """
    from ..data.image_io import list_images, load_rgb_uint8
    from ..errors import DualSRError
    from ..evaluation import evaluate_folder
    from .onnx import OnnxUpscaler

    calibration = Path(calibration)
    files = list_images(calibration) or list_images(calibration / "HR")
    if not files:
        raise DualSRError(f"no calibration images in {calibration}")
    fp32 = OnnxUpscaler(fp32_path)
    hr = [load_rgb_uint8(p) for p in files[:calibration_images]]
    patches = calibration_patches(hr, fp32.scale, patch=48, per_image=4)
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = quantize_onnx(fp32_path, Path(tmp) / "int8.onnx", patches, layers=layers)
        int8 = OnnxUpscaler(candidate)
        checks = []
        for folder in validation:
            a = evaluate_folder(fp32, folder)
            b = evaluate_folder(int8, folder)
            checks.append(QuantizationCheck(a.dataset, a.psnr, b.psnr))
        worst = min(checks, key=lambda c: c.change_db)
        if -worst.change_db > max_loss_db:
            raise DualSRError(
                f"INT8 loses {-worst.change_db:.3f} dB of PSNR on {worst.dataset} (more than "
                f"{max_loss_db} dB): {out_path} not written; use the float32 model"
            )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(candidate, out_path)
    return checks
