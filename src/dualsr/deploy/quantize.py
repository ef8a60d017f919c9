"""INT8 static quantization of exported models with ONNX Runtime (experimental).

The convolutions of an exported graph (:func:`dualsr.deploy.export_onnx`) are quantized to int8
(QDQ format: per-channel symmetric int8 weights, uint8 activations whose ranges are calibrated
on a few LR images); by default the first convolutions (mean shift, head) and the last one (the
tail, which produces the image) stay in float32, the usual choice for SR networks whose
output is compared pixel by pixel. Channel attention, additions and the bicubic resize stay in
float32.

Whether to use it is a trade-off measured by ``benchmarks/int8.py``: speed-up against PSNR
change on Set5/Set14. dualsr offers INT8 only where that PSNR loss is at most 0.1 dB, which
needs trained weights to measure (random weights make the comparison meaningless).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: Iterable[np.ndarray | torch.Tensor],
    keep_ends: bool = True,
    per_channel: bool = True,
) -> Path:
    """Write an INT8 (QDQ) version of the exported float model ``fp32_path`` to ``out_path``.

    Args:
        fp32_path: a model written by :func:`dualsr.deploy.export_onnx`.
        out_path: where the quantized model goes.
        calibration: LR inputs (N x 3 x h x w, 0..255) whose activation ranges set the scales
            (see :func:`calibration_patches`).
        keep_ends: keep the first two and the last convolutions in float32.
        per_channel: per-output-channel weight scales (more accurate, slightly slower).
    """
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
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
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
    quantized = onnx.load(str(out_path))
    for prop in model.metadata_props:  # keep scale and architecture
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    quantized.metadata_props.add(key="dualsr_quantization", value="int8-qdq-static")
    onnx.save(quantized, str(out_path))
    return out_path
