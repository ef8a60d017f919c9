"""ONNX export of the final SR output, and ONNX Runtime sessions and upscalers.

The exported graph takes ``lr``: float32 N x 3 x h x w in 0..255 (h and w dynamic) and returns
``sr``: float32 N x 3 x (h*scale) x (w*scale) in 0..255, not clamped. By default the graph is the
:class:`~dualsr.deploy.fused.FusedDRN` rewrite (final output only, folded convolutions), which is
also what ONNX Runtime runs fastest. The scale and architecture are stored in the model's
metadata (``dualsr_scale``, ``dualsr_arch``) so an exported file is self-describing.

By default the graph is portable (:mod:`dualsr.deploy.portable`): the bicubic pre-upsampling is
edge padding (``Slice``/``Concat``), a fixed-weight ``Conv`` and a 0/1 ``ConvTranspose`` (pixel
shuffle), the upsamplers' pixel shuffles are such ``ConvTranspose`` s too and the channel means
``GlobalAveragePool``: no ``Resize``, ``DepthToSpace`` or ``Shape`` node, which several runtimes
(OpenCV 4.10's dnn module among them) cannot read with dynamic sizes. ``portable=False`` exports
the previous graph (a cubic ``Resize`` node, ``DepthToSpace``), for ONNX Runtime.

``onnx`` and ``onnxruntime`` are optional: ``pip install 'dualsr[onnx]'``.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DualSRError
from ..inference import DEFAULT_TILE_OVERLAP, TiledUpscaler, auto_tile, sr_output
from ..models.drn import DRN
from .fused import fuse_for_inference
from .portable import PortableSROutput, portable_fused

DEFAULT_OPSET = 17
INSTALL_HINT = "pip install 'dualsr[onnx]'"


def require_onnxruntime() -> Any:
    """Import onnxruntime, or raise DualSRError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise DualSRError(f"onnxruntime is not installed: {INSTALL_HINT}") from None
    return onnxruntime


def require_onnx() -> Any:
    """Import onnx, or raise DualSRError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise DualSRError(f"onnx is not installed: {INSTALL_HINT}") from None
    return onnx


class SROutput(nn.Module):
    """Wraps a DRN so that its forward returns only the final SR image (0..255 in and out)."""

    def __init__(self, model: DRN) -> None:
        super().__init__()
        self.model = model.eval()
        self.scale = model.scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """The SR image for ``lr`` in 0..255."""
        return sr_output(self.model, lr)


def export_onnx(
    model: DRN,
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    fused: bool = True,
    example_hw: tuple[int, int] = (16, 16),
    portable: bool = True,
) -> Path:
    """Export the final SR output of ``model`` to ONNX with dynamic height and width.

    Args:
        model: the DRN.
        path: the .onnx file to write.
        opset: ONNX opset (17 or newer).
        fused: export the :class:`~dualsr.deploy.fused.FusedDRN` rewrite (default) rather than
            the model as written; both compute the same image.
        example_hw: the LR size traced (any size works at run time).
        portable: export the portable graph (default: the bicubic pre-upsampling as padding
            and fixed-weight convolutions, no ``Resize``, ``DepthToSpace`` or ``Shape`` node;
            see the module docstring); False exports it as a cubic ``Resize`` node.

    Returns the path. Raises DualSRError if onnx is missing or the opset is too old.
    """
    onnx = require_onnx()
    if opset < DEFAULT_OPSET:
        raise DualSRError(f"opset {opset} is too old: use {DEFAULT_OPSET} or newer")
    newest = max_export_opset()
    if opset > newest:
        raise DualSRError(
            f"opset {opset} is newer than this PyTorch can export (at most {newest}); use "
            f"{DEFAULT_OPSET} to {newest}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fused:
        module: nn.Module = fuse_for_inference(
            model, channels_last=False, portable_upsample=portable
        )
        module = portable_fused(module) if portable else module
    else:
        module = PortableSROutput(model) if portable else SROutput(model)
    example = torch.rand(1, 3, *example_hw) * 255
    with warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated in favour of torch.export (which needs
        # onnxscript); it is the one that handles this model's dynamic bicubic resize here
        # (portable=False)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            opset_version=opset,
            input_names=["lr"],
            output_names=["sr"],
            dynamic_axes={
                "lr": {0: "batch", 2: "height", 3: "width"},
                "sr": {0: "batch", 2: "out_height", 3: "out_width"},
            },
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    meta = {
        "dualsr_scale": str(model.scale),
        "dualsr_arch": json.dumps(model.arch.to_dict()),
        "dualsr_graph": "fused" if fused else "eager",
        "dualsr_upsample": "conv" if portable else "resize",
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def max_export_opset() -> int:
    """The newest ONNX opset the installed PyTorch's exporter (the TorchScript one) writes."""
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except (ImportError, AttributeError):  # other versions: a conservative value
        return 20


def onnx_session(path: str | Path, threads: int | None = None, optimize: bool = True) -> Any:
    """An ONNX Runtime CPU session for ``path``.

    Args:
        path: the .onnx file.
        threads: intra-op threads (default: torch's thread count, i.e. the same as PyTorch).
        optimize: all graph optimizations (layout transformation to NCHWc, conv+activation
            fusion); False disables them (for comparisons).
    """
    ort = require_onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    level = ort.GraphOptimizationLevel
    opts.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise DualSRError(f"{path}: ONNX Runtime could not load the model ({exc})") from exc


def onnx_scale(session: Any, path: str | Path = "model") -> int:
    """The upscaling factor stored in an exported model's metadata."""
    meta = session.get_modelmeta().custom_metadata_map
    if "dualsr_scale" not in meta:
        raise DualSRError(
            f"{path} has no 'dualsr_scale' metadata: export it with `dualsr export` "
            "(or dualsr.deploy.export_onnx)"
        )
    return int(meta["dualsr_scale"])


class OnnxUpscaler(TiledUpscaler):
    """Runs an exported ONNX model with ONNX Runtime; same interface as TorchUpscaler.

    Args:
        model: a .onnx file exported by :func:`export_onnx`, or a DRN (exported on the fly to a
            temporary file).
        threads: intra-op threads (default: torch's thread count).
        tile, tile_overlap, ensemble, progress: as for :class:`~dualsr.inference.TorchUpscaler`.
        drn: the DRN the file was exported from (``--backend auto`` passes it): then
            ``tile="auto"`` works, and :func:`~dualsr.inference.upscale_within_memory` fits the
            tiles to the memory available, as for TorchUpscaler (the fp32 estimate).
        precision: what the file computes in, "fp32" or "int8" (a label, with ``drn``).
    """

    def __init__(
        self,
        model: str | Path | DRN,
        threads: int | None = None,
        tile: int | str | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        ensemble: bool = False,
        progress: Callable[[int, int], None] | None = None,
        drn: DRN | None = None,
        precision: str = "fp32",
    ) -> None:
        require_onnxruntime()
        if tile == "auto":
            sized_by = drn if drn is not None else model if isinstance(model, DRN) else None
            if sized_by is None:
                raise ValueError("tile='auto' needs the DRN: pass drn= (or a DRN as model)")
            tile = auto_tile(sized_by, "fp32", max(0, tile_overlap))
        elif isinstance(tile, str):
            raise ValueError(f"tile must be a number of pixels or 'auto', got {tile!r}")
        if drn is not None:  # what upscale_within_memory sizes tiles by
            self.model, self.precision = drn, precision
        if isinstance(model, DRN):
            with tempfile.TemporaryDirectory() as tmp:
                path = export_onnx(model, Path(tmp) / "model.onnx")
                self.session = onnx_session(path, threads)
            self.path: Path | None = None
        else:
            self.path = Path(model)
            if not self.path.is_file():
                raise DualSRError(f"ONNX model not found: {self.path}")
            self.session = onnx_session(self.path, threads)
        scale = onnx_scale(self.session, self.path or "model")
        super().__init__(scale, tile, tile_overlap, ensemble, progress)
        self.backend = "onnxruntime"

    def _forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(lr.cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(["sr"], {"lr": x})[0])


def is_onnx_file(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a .onnx file (by its suffix)."""
    return str(spec).lower().endswith(".onnx")
