"""Deployment: the fast inference rewrite, ONNX export, ONNX Runtime, INT8 quantization, timing.

``onnx``/``onnxruntime`` are optional dependencies (``pip install 'dualsr[onnx]'``); they are
imported only by the functions that need them. The names below are imported on first use, so
that the PyTorch-free modules here (:mod:`.cpu`, :mod:`.launch`) load without PyTorch.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fused import FusedDRN, fuse_for_inference
    from .onnx import (
        OnnxUpscaler,
        SROutput,
        export_onnx,
        is_onnx_file,
        onnx_session,
        require_onnxruntime,
    )

_LAZY = {
    "FusedDRN": ".fused",
    "fuse_for_inference": ".fused",
    "OnnxUpscaler": ".onnx",
    "SROutput": ".onnx",
    "export_onnx": ".onnx",
    "is_onnx_file": ".onnx",
    "onnx_session": ".onnx",
    "require_onnxruntime": ".onnx",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dualsr.deploy' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


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
