"""Deployment: the fast inference rewrite, ONNX export, ONNX Runtime, INT8 quantization, timing.

``onnx``/``onnxruntime`` are optional dependencies (``pip install 'dualsr[onnx]'``); they are
imported only by the functions that need them.
"""

from .fused import FusedDRN, fuse_for_inference
from .onnx import (
    OnnxUpscaler,
    SROutput,
    export_onnx,
    is_onnx_file,
    onnx_session,
    require_onnxruntime,
)

__all__ = [
    "FusedDRN",
    "OnnxUpscaler",
    "SROutput",
    "export_onnx",
    "fuse_for_inference",
    "is_onnx_file",
    "onnx_session",
    "require_onnxruntime",
]
