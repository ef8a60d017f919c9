"""``dualsr upscale`` with ONNX Runtime in a process that never imports PyTorch.

Importing PyTorch takes about 1 s and its exit 0.1-0.3 s; importing ONNX Runtime about 0.1 s.
For a small model and a small job (drn-t-x4 on a 320 x 180 photo: 0.4-0.8 s of compute) the
start-up is most of what a user waits for, so ``--backend auto`` weighs it: the first time a
model file is upscaled with ``--backend auto`` on this machine, the PyTorch process measures,
once, what each way costs (:func:`dualsr.deploy.autoselect.record_launch`):

* the start-up: ``import torch`` or ``import onnxruntime`` in a fresh interpreter, plus building
  the chosen PyTorch path or opening the ONNX Runtime session;
* the time per LR pixel of auto's PyTorch choice and of ONNX Runtime fp32, on the calibration
  tile.

and stores it with the exported fp32 graph in ``$DUALSR_HOME/launch.json``. Later runs read that
record here, without PyTorch, add up the LR pixels of the inputs (from the image headers), and
run ONNX Runtime fp32 when its predicted total (start-up + pixels x time per pixel) is the
lower one; otherwise they import PyTorch as before. ONNX Runtime fp32 is exact fp32, so
``--precision fp32`` may take it too; ``--precision bf16``, ``--self-ensemble``, another
``--backend`` or device, a model given by URL or release name, and ``--random-weights`` always
take the PyTorch path.

A record belongs to one model file (path, size and modification time), this machine (CPU model
and flags), the installed torch, onnxruntime and dualsr, ``OMP_NUM_THREADS`` and the precision
asked for; anything else calls for a new measurement. ``dualsr env --clear-cache`` removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DualSRError
from ..fileio import atomic_write_bytes
from ..hub import dualsr_home
from ..tiling import DEFAULT_TILE_OVERLAP, DEFAULT_TILES, Footprint, auto_tile, tile_grid

log = logging.getLogger(__name__)

#: The launch records, in the cache root (:func:`dualsr.hub.dualsr_home`).
LAUNCH_FILE = "launch.json"
LAUNCH_VERSION = 1
#: The precision requests a launch without PyTorch can serve (ONNX Runtime runs exact fp32).
SERVED_PRECISIONS = ("auto", "fp32")
#: The imports whose cost a record's start-up times include (measured once per machine).
_IMPORTS = ("torch", "onnxruntime")


@dataclass(frozen=True)
class LaunchRecord:
    """What one model costs here each way, measured once by the PyTorch process.

    Attributes:
        onnx: the exported fp32 graph (in ``$DUALSR_HOME/onnx``).
        scale, n_feats: the model's, for the memory estimates of the tiles.
        threads: the intra-op threads both ways ran with (PyTorch's count).
        torch_label: auto's PyTorch choice, e.g. ``"fused bf16"``.
        torch_start_s: ``import torch`` in a fresh interpreter plus building that path.
        torch_s_per_pixel: its seconds per LR pixel on the calibration tile.
        ort_start_s: ``import onnxruntime`` in a fresh interpreter plus opening the session.
        ort_s_per_pixel: ONNX Runtime fp32's seconds per LR pixel on the same tile.
    """

    onnx: str
    scale: int
    n_feats: int
    threads: int
    torch_label: str
    torch_start_s: float
    torch_s_per_pixel: float
    ort_start_s: float
    ort_s_per_pixel: float

    @property
    def footprint(self) -> Footprint:
        """The model's scale and width, as the tile memory estimates read them."""
        return Footprint(self.scale, self.n_feats)

    def predicted(self, lr_pixels: int) -> tuple[float, float]:
        """Predicted seconds for ``lr_pixels`` LR pixels: (ONNX Runtime, PyTorch)."""
        return (
            self.ort_start_s + self.ort_s_per_pixel * lr_pixels,
            self.torch_start_s + self.torch_s_per_pixel * lr_pixels,
        )

    def break_even_pixels(self) -> float:
        """The job size (LR pixels) below which ONNX Runtime without PyTorch is predicted
        faster: infinite when it is also as fast per pixel, 0 when it never is."""
        saved = self.torch_start_s - self.ort_start_s
        if saved <= 0:
            return 0.0
        slower = self.ort_s_per_pixel - self.torch_s_per_pixel
        return float("inf") if slower <= 0 else saved / slower

    def summary(self) -> str:
        """One line: both ways' start-up and speed, and the break-even job size."""
        even = self.break_even_pixels()
        when = (
            "always"
            if even == float("inf")
            else "never"
            if even == 0
            else f"for jobs under {even / 1e6:.2f} M LR pixels (about a {_side(even)} photo)"
        )
        return (
            f"ONNX Runtime fp32 without PyTorch {when}: start {self.ort_start_s:.2f} s, "
            f"{self.ort_s_per_pixel * 1e6:.2f} s per M LR pixels; {self.torch_label} with "
            f"PyTorch: start {self.torch_start_s:.2f} s, {self.torch_s_per_pixel * 1e6:.2f} s "
            "per M LR pixels"
        )


def _side(pixels: float) -> str:
    """A 16:9 size of about ``pixels`` pixels, e.g. ``"480x270"``."""
    h = max(1, round((pixels * 9 / 16) ** 0.5))
    return f"{round(h * 16 / 9)}x{h}"


# ----------------------------------------------------------------------------------------------
# Which model file, and the key of its record
# ----------------------------------------------------------------------------------------------
def model_file_for(spec: str) -> Path | None:
    """The weights file a ``--model`` value loads, found without PyTorch: an existing
    ``.safetensors`` or ``.pt`` file, or a preset with shipped weights; None for anything else
    (bicubic, an ONNX file, a release name or URL, a preset without weights)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path.resolve() if path.suffix.lower() in (".safetensors", ".pt", ".pth") else None
    from ..pretrained import shipped_weights

    shipped = shipped_weights(spec.lower()) if "/" not in spec and "\\" not in spec else None
    return shipped.resolve() if shipped is not None else None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_identity() -> dict[str, Any]:
    """This machine and software as a launch record depends on them, read without PyTorch."""
    from .. import __version__
    from .cpu import RELEVANT_FLAGS, parse_cpuinfo

    model, flags = platform.processor() or platform.machine(), set()
    if platform.system() == "Linux":
        with contextlib.suppress(OSError):
            model, flags, _ = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    return {
        "cpu": model,
        "flags": [f for f in RELEVANT_FLAGS if f in flags],
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "dualsr": __version__,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def launch_key(model_file: Path, precision_request: str) -> str:
    """The record's key: the model file (path, size, modification time), the machine
    (:func:`machine_identity`) and the precision asked for."""
    stat = model_file.stat()
    ident = {
        "file": [str(model_file), stat.st_size, stat.st_mtime_ns],
        "machine": machine_identity(),
        "precision": precision_request,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def launch_path() -> Path:
    """The launch records: ``$DUALSR_HOME/launch.json``."""
    return dualsr_home() / LAUNCH_FILE


def _read_cache(path: Path) -> dict[str, Any]:
    """The launch cache's content ({"records": ..., "imports": ...}); an unreadable file or
    another version counts as empty, with a warning for the unreadable one (it is rewritten)."""
    empty: dict[str, Any] = {"records": {}, "imports": {}}
    if not path.is_file():
        return empty
    try:
        data = json.loads(path.read_text())
        if data.get("version") != LAUNCH_VERSION:
            return empty
        if not isinstance(data.get("records"), dict) or not isinstance(data.get("imports"), dict):
            raise ValueError("unexpected content")
    except (OSError, ValueError, AttributeError) as exc:
        warnings.warn(
            f"the launch cache {path} is unreadable ({type(exc).__name__}: {exc}); ignoring it",
            stacklevel=3,
        )
        return empty
    return data


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    data = {**data, "version": LAUNCH_VERSION}
    try:
        atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode())
    except (OSError, DualSRError) as exc:  # a read-only home: every run takes PyTorch
        warnings.warn(f"could not write the launch cache {path} ({exc})", stacklevel=3)


def read_records(path: Path | None = None) -> dict[str, LaunchRecord]:
    """The stored records by key (a malformed record is left out)."""
    names = {f.name for f in fields(LaunchRecord)}
    records = {}
    for key, entry in _read_cache(path or launch_path())["records"].items():
        with contextlib.suppress(TypeError, AttributeError):
            records[key] = LaunchRecord(**{k: v for k, v in entry.items() if k in names})
    return records


def write_record(key: str, record: LaunchRecord, path: Path | None = None) -> None:
    """Add (or replace) one record, atomically; a read-only cache only warns."""
    path = path or launch_path()
    data = _read_cache(path)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data["records"][key] = {**asdict(record), "created": stamp}
    _write_cache(path, data)


def forget_record(key: str, path: Path | None = None) -> None:
    """Drop one record (its graph could not be run): the next PyTorch run measures again."""
    path = path or launch_path()
    data = _read_cache(path)
    if data["records"].pop(key, None) is not None:
        _write_cache(path, data)


def cached_import_seconds(measure: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``import torch`` / ``import onnxruntime`` seconds for this machine: stored once per
    :func:`machine_identity`, measured with ``measure`` the first time."""
    path = launch_path()
    ident = hashlib.sha256(json.dumps(machine_identity(), sort_keys=True).encode()).hexdigest()
    data = _read_cache(path)
    known = data["imports"].get(ident[:32])
    if isinstance(known, dict) and all(isinstance(known.get(k), float) for k in _IMPORTS):
        return {k: known[k] for k in _IMPORTS}
    found = measure()
    data = _read_cache(path)  # as it is now
    data["imports"][ident[:32]] = {k: float(found[k]) for k in _IMPORTS}
    _write_cache(path, data)
    return found


# ----------------------------------------------------------------------------------------------
# The upscaler
# ----------------------------------------------------------------------------------------------
class OrtLaunchUpscaler:
    """An exported DRN run by ONNX Runtime on whole images or tiles, with NumPy only (the
    same tiles, crops and rounding as :class:`~dualsr.deploy.onnx.OnnxUpscaler`).

    ``model`` is the DRN's :class:`~dualsr.tiling.Footprint`, which the memory estimates of
    :func:`~dualsr.tiling.upscale_within_memory` read.
    """

    backend = "onnxruntime"
    precision = "fp32"

    def __init__(
        self,
        record: LaunchRecord,
        tile: int | None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = record.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                record.onnx, opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DualSRError(f"{record.onnx}: ONNX Runtime could not load it ({exc})") from exc
        self.scale = record.scale
        self.model = record.footprint
        self.tile = tile or 0
        self.tile_overlap = max(0, tile_overlap)
        self.progress = progress

    def _forward(self, lr: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(["sr"], {"lr": np.ascontiguousarray(lr)})[0]
        except Exception as exc:
            text = str(exc)
            if "alloc" in text.lower():  # as the PyTorch paths' out-of-memory is recognised
                raise MemoryError(f"out of memory in ONNX Runtime: {text}") from exc
            raise

    def __call__(self, pixels: np.ndarray, out_dtype: type = np.uint8) -> np.ndarray:
        """Upscale H x W x 3 pixels in [0, 255]; uint8 output (rounded) by default."""
        h, w = pixels.shape[:2]
        s = self.scale
        src = np.ascontiguousarray(pixels, dtype=np.float32).transpose(2, 0, 1)[None]
        out = np.empty((h * s, w * s, 3), dtype=out_dtype)
        ys, xs = tile_grid(h, w, self.tile, self.tile_overlap)
        total, done = len(ys) * len(xs), 0
        for y0, y1, iy0, iy1 in ys:
            for x0, x1, ix0, ix1 in xs:
                sr = self._forward(src[:, :, iy0:iy1, ix0:ix1])[0]
                sr = sr[:, (y0 - iy0) * s : (y1 - iy0) * s, (x0 - ix0) * s : (x1 - ix0) * s]
                sr = np.clip(sr, 0, 255).transpose(1, 2, 0)
                out[y0 * s : y1 * s, x0 * s : x1 * s] = np.rint(sr) if out_dtype == np.uint8 else sr
                done += 1
                if self.progress:
                    self.progress(done, total)
        return out


# ----------------------------------------------------------------------------------------------
# The decision
# ----------------------------------------------------------------------------------------------
def lr_pixels(paths: Iterable[Path], stop_above: float = float("inf")) -> int:
    """The total pixels of the input images, from their headers (unreadable ones count 0);
    counting stops once the total exceeds ``stop_above``."""
    from PIL import Image

    total = 0
    for path in paths:
        try:
            with Image.open(path) as im:
                total += im.size[0] * im.size[1]
        except Exception:  # read_image reports it properly later
            continue
        if total > stop_above:
            break
    return total


def eligible(args: Any) -> bool:
    """Whether these ``dualsr upscale`` options could run without PyTorch (see the module
    docstring): auto backend on the CPU, fp32 or auto precision, no ensemble, real weights."""
    return (
        getattr(args, "backend", "auto") == "auto"
        and str(getattr(args, "device", "cpu")).lower() == "cpu"
        and getattr(args, "precision", "auto") in SERVED_PRECISIONS
        and not getattr(args, "self_ensemble", False)
        and not getattr(args, "random_weights", False)
        and importlib.util.find_spec("onnxruntime") is not None
    )


def launch_without_torch(
    args: Any,
    inputs: Iterable[Path],
    progress: Callable[[int, int], None] | None = None,
) -> OrtLaunchUpscaler | None:
    """The ONNX Runtime upscaler when a record says it finishes this job first (see the module
    docstring); None when there is no record or PyTorch is predicted faster. Logs the choice."""
    if not eligible(args):
        return None
    model_file = model_file_for(args.model)
    if model_file is None:
        return None
    key = launch_key(model_file, args.precision)
    record = read_records().get(key)
    if record is None or not Path(record.onnx).is_file():
        return None
    if getattr(args, "scale", None) not in (None, record.scale) or args.tile_overlap < 0:
        return None  # the PyTorch path says what is wrong
    even = record.break_even_pixels()
    if even == 0:
        return None
    pixels = lr_pixels(inputs, stop_above=even)
    ort_s, torch_s = record.predicted(pixels)
    if ort_s >= torch_s:
        return None
    if args.tile == "auto":
        tile: int | None = auto_tile(record.footprint, "fp32", args.tile_overlap)
    elif isinstance(args.tile, int):
        tile = args.tile
    else:
        tile = DEFAULT_TILES["fp32"] if getattr(args, "tile_by_default", False) else None
    try:
        upscaler = OrtLaunchUpscaler(record, tile, args.tile_overlap, progress)
    except DualSRError as exc:  # a damaged graph: measure again next time, run PyTorch now
        warnings.warn(f"{exc}; using PyTorch", stacklevel=2)
        forget_record(key)
        with contextlib.suppress(OSError):
            Path(record.onnx).unlink()
        return None
    log.info(
        "backend auto: onnxruntime fp32 without PyTorch (predicted %.2f s against %.2f s for "
        "%s with PyTorch's start-up, for %.2f M LR pixels; measured once for this machine and "
        "model, %s)",
        ort_s,
        torch_s,
        record.torch_label,
        pixels / 1e6,
        launch_path(),
    )
    return upscaler
