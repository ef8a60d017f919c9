"""``--backend auto``: the fastest correct inference path for this machine and model.

The candidates are dualsr's CPU paths: the fused PyTorch module in fp32, in bf16 (only where the
CPU computes bf16 natively), ONNX Runtime fp32 (when onnx and onnxruntime are installed) and ONNX
Runtime INT8 (only for a model that :func:`int8_allowed` admits: a recorded PSNR change of at most
:data:`MAX_INT8_PSNR_LOSS_DB`). ``--precision fp32`` keeps the exact-fp32 ones, ``--precision
bf16`` the bf16 one.

Rules decide first: on a CPU with native bf16 and ``--precision auto``, fused bf16 (measured
2.4-2.8x plain eager there, docs/deployment.md), with no measurement; on CUDA or MPS, the PyTorch
path as before. Otherwise, with more than one candidate left, a short calibration times each on a
fixed synthetic 64 x 64 LR tile (one warm-up and three timed calls, the lowest median wins: a few
seconds) and caches the answer in ``$DUALSR_HOME/autoselect.json`` (default
``~/.cache/dualsr``), keyed by the machine (CPU model and flags, threads, torch, onnxruntime and
dualsr versions), the model's weights and the precision asked for. ONNX Runtime needs a file:
the model is exported once per weights, opset and dualsr version into ``$DUALSR_HOME/onnx/``
and reused. ``dualsr env`` shows what auto picks here; ``dualsr env --clear-cache`` removes both.

:class:`~dualsr.inference.TorchUpscaler` ``backend="auto"`` stays PyTorch-only; the command line
uses :func:`auto_upscaler`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import DualSRError
from ..fileio import atomic_write, atomic_write_bytes
from ..hub import dualsr_home
from ..inference import DEFAULT_TILE_OVERLAP, TorchUpscaler, Upscaler, check_device
from ..models.drn import DRN
from .cpu import cpu_kind, detect_cpu
from .precision import PRECISIONS, native_bf16

if TYPE_CHECKING:
    from .launch import LaunchRecord

log = logging.getLogger(__name__)

#: The calibration results, in the cache root (:func:`dualsr.hub.dualsr_home`).
CACHE_FILE = "autoselect.json"
#: The folder of exported ONNX graphs, in the cache root.
ONNX_DIR = "onnx"
CACHE_VERSION = 1
#: The LR size of the synthetic calibration tile, and its seed.
CALIBRATION_HW = (64, 64)
CALIBRATION_SEED = 0
#: Untimed and timed calls per candidate in the calibration.
WARMUP, RUNS = 1, 3
#: The largest PSNR loss (dB) for which auto may pick a lossy INT8 path.
MAX_INT8_PSNR_LOSS_DB = 0.03
#: Which convolutions auto's INT8 graphs quantize (:func:`dualsr.deploy.quantize.quantize_onnx`).
INT8_LAYERS = "rcab"
#: Model digest (:func:`model_digest`) -> the measurement that admits INT8 for it (see
#: :func:`int8_allowed`): ``benchmarks/int8_accuracy.py --layers rcab`` with the synthetic
#: calibration auto uses, whole Set5/Set14/BSD100, on a VNNI CPU
#: (``benchmarks/results/int8_accuracy_rcab_native-bf16.json``). Not here: drn-t50-x4 (Set14
#: -0.036 dB) and drn-t-x8 (Set5 +0.032 dB: a gain, but a change above 0.03 dB all the same).
INT8_RECORDS: dict[str, str] = {
    "3042c0393dd5d583ab1f75aab4eedd74eacd6e08a3c62cae5a63bc3e72d45cf7": (
        "drn-t-x4 (shipped): RCAB-only INT8, PSNR change Set5/Set14/BSD100 "
        "-0.016/-0.015/-0.014 dB, measured with VNNI kernels"
    ),
}
#: The CPU flags of the INT8 kernels those records were measured with (u8 x s8 dot products;
#: AVX2's saturating pairs round differently, unmeasured).
INT8_MEASURED_FLAGS = ("avx512_vnni", "avx_vnni")
#: Every candidate, (backend, precision), in the order they are tried.
CANDIDATES = (
    ("fused", "fp32"),
    ("fused", "bf16"),
    ("winograd", "fp32"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "int8"),
)
#: Where the rule for native-bf16 CPUs comes from.
BF16_EVIDENCE = "fused bf16 measured 2.4-2.8x plain eager on such CPUs, docs/deployment.md"


@dataclass(frozen=True)
class Choice:
    """What ``--backend auto`` runs, and why.

    Attributes:
        backend: "fused" or "onnxruntime" on CPU; "eager" on other devices (the PyTorch path
            of ``TorchUpscaler(backend="auto")``).
        precision: "fp32", "bf16" or "int8".
        reason: one human-readable sentence.
        timings: median seconds per candidate ("backend precision") of the calibration that
            chose it; None where a rule chose without measuring.
        cached: whether it was read from the calibration cache.
    """

    backend: str
    precision: str
    reason: str
    timings: dict[str, float] | None = None
    cached: bool = False

    @property
    def label(self) -> str:
        """``"backend precision"``, e.g. ``"fused bf16"``."""
        return f"{self.backend} {self.precision}"


def _label(candidate: tuple[str, str]) -> str:
    return f"{candidate[0]} {candidate[1]}"


# ----------------------------------------------------------------------------------------------
# Candidates
# ----------------------------------------------------------------------------------------------
def onnxruntime_available() -> bool:
    """Whether the ONNX Runtime path can run here (onnx to export, onnxruntime to run).

    Looked up without importing them: importing onnx alone takes ~0.6 s, which a run whose
    cached choice is fused PyTorch (or whose ONNX graph is already exported) never needs.
    """
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def int8_allowed(model: DRN) -> str | None:
    """The accuracy record that admits ONNX Runtime INT8 for ``model`` (a measured PSNR change
    of at most :data:`MAX_INT8_PSNR_LOSS_DB` dB), or None: INT8 is not allowed.

    Measured (``benchmarks/int8_accuracy.py``, on a CPU with AVX512_VNNI): INT8 of every
    convolution but the ends loses more than that on at least one of Set5/Set14/BSD100 for every
    shipped model, even calibrated on T91 (drn-t-x4 -0.058/-0.037/-0.029 dB;
    ``int8_accuracy_native-bf16.json``). Quantizing only the RCABs' 3x3 convolutions
    (:data:`INT8_LAYERS`), calibrated on synthetic images as auto does, keeps drn-t-x4 within it
    (-0.016/-0.015/-0.014 dB; ``int8_accuracy_rcab_native-bf16.json``), but not drn-t50-x4 or
    drn-t-x8: :data:`INT8_RECORDS` holds drn-t-x4's digest (:func:`model_digest`) only. The
    record holds for VNNI kernels: :func:`candidates` leaves INT8 out on CPUs without them.
    """
    return INT8_RECORDS.get(model_digest(model))


def candidates(
    model: DRN, precision_request: str = "auto", native: bool | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """The CPU candidates for ``precision_request``, and notes on the ones left out.

    ``native`` (whether the CPU has native bf16) defaults to :func:`native_bf16`. An explicit
    "bf16" keeps fused bf16 even where bf16 is emulated (the upscaler then warns, as before).
    """
    if precision_request not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision_request!r}; choose from {', '.join(PRECISIONS)}"
        )
    if precision_request == "bf16":
        return [("fused", "bf16")], []
    native = native_bf16("cpu") if native is None else native
    found: list[tuple[str, str]] = [("fused", "fp32")]
    notes: list[str] = []
    if precision_request == "auto" and native:
        found.append(("fused", "bf16"))
    if precision_request == "auto":  # not rounded like direct convolution: not --precision fp32
        from .winograd import missing_requirement

        why = missing_requirement()
        if why is None:
            found.append(("winograd", "fp32"))
        else:
            notes.append(f"winograd not considered: {why}")
    ort = onnxruntime_available()
    if ort:
        found.append(("onnxruntime", "fp32"))
    else:
        notes.append("onnxruntime not installed (pip install 'dualsr[onnx]')")
    if precision_request == "auto" and ort:
        record = int8_allowed(model)
        vnni = any(detect_cpu().has(f) for f in INT8_MEASURED_FLAGS)
        if record is not None and not vnni:
            notes.append(
                "int8 not considered: its PSNR change was measured with VNNI kernels and this "
                "CPU has none"
            )
        elif record is None:
            notes.append(
                f"int8 not considered: no record of a PSNR change <= {MAX_INT8_PSNR_LOSS_DB} dB "
                "for this model (the shipped ones lose more, docs/deployment.md)"
            )
        else:
            found.append(("onnxruntime", "int8"))
            notes.append(f"int8 allowed: {record}")
    return found, notes


# ----------------------------------------------------------------------------------------------
# Keys: the machine and the model
# ----------------------------------------------------------------------------------------------
def _onnxruntime_version() -> str | None:
    try:  # the metadata, without importing it
        return importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        pass
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime  # another distribution of it (e.g. onnxruntime-openvino)

    return str(onnxruntime.__version__)


def machine_fingerprint(threads: int | None = None) -> dict[str, Any]:
    """What a calibration depends on: CPU model and flags, threads, library versions."""
    from .. import __version__

    info = detect_cpu()
    return {
        "cpu": info.model,
        "flags": list(info.flags),
        "threads": threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": _onnxruntime_version(),
        "dualsr": __version__,
    }


def model_digest(model: DRN) -> str:
    """sha256 (hex) of the model's architecture and every state-dict tensor's name, dtype,
    shape and bytes: equal digests, equal models."""
    digest = hashlib.sha256(json.dumps(model.arch.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _cache_key(fingerprint: dict[str, Any], digest: str, precision_request: str) -> str:
    machine = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
    return f"{machine[:16]}/{digest[:16]}/{precision_request}"


def cache_path() -> Path:
    """The calibration cache: ``$DUALSR_HOME/autoselect.json``."""
    return dualsr_home() / CACHE_FILE


def onnx_cache_dir() -> Path:
    """The exported ONNX graphs: ``$DUALSR_HOME/onnx``."""
    return dualsr_home() / ONNX_DIR


def _load_cache(path: Path) -> dict[str, dict]:
    """The cache's entries; a corrupt file is ignored with a warning (it is rewritten)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        entries = data["entries"]
        if not isinstance(entries, dict) or not all(
            isinstance(e, dict)
            and (e.get("backend"), e.get("precision")) in CANDIDATES
            and isinstance(e.get("reason"), str)
            for e in entries.values()
        ):
            raise ValueError("unexpected content")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(
            f"the backend cache {path} is unreadable ({type(exc).__name__}: {exc}); ignoring "
            "it: auto calibrates again and rewrites it",
            stacklevel=3,
        )
        return {}
    if data.get("version") != CACHE_VERSION:
        return {}  # written by another dualsr: calibrate again
    return entries


def _save_cache(path: Path, entries: dict[str, dict]) -> None:
    data = {"version": CACHE_VERSION, "entries": entries}
    try:
        atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode())
    except (OSError, DualSRError) as exc:  # a read-only home: auto still works, uncached
        warnings.warn(f"could not write the backend cache {path} ({exc})", stacklevel=3)


def clear_cache() -> list[Path]:
    """Remove the calibration cache, the launch records (:mod:`dualsr.deploy.launch`), the
    exported ONNX graphs and the built Winograd kernel; returns what was removed."""
    from .launch import launch_path
    from .winograd import kernel_dir

    removed = []
    for path in (cache_path(), launch_path()):
        if path.is_file():
            path.unlink()
            removed.append(path)
    for folder in (onnx_cache_dir(), kernel_dir()):
        if folder.is_dir():
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


# ----------------------------------------------------------------------------------------------
# The exported graph
# ----------------------------------------------------------------------------------------------
def cached_onnx(model: DRN, precision: str = "fp32") -> Path:
    """The model exported for ONNX Runtime (fp32, or INT8 quantized), from the cache in
    :func:`onnx_cache_dir` or exported (atomically) into it: one file per model weights, opset
    and dualsr version, reused by every later run."""
    from .. import __version__
    from .onnx import DEFAULT_OPSET, export_onnx

    if precision not in ("fp32", "int8"):
        raise ValueError(f"ONNX Runtime runs fp32 or int8, not {precision}")
    kind = precision if precision == "fp32" else f"{precision}-{INT8_LAYERS}"
    name = f"{model_digest(model)[:16]}-opset{DEFAULT_OPSET}-dualsr{__version__}-{kind}.onnx"
    path = onnx_cache_dir() / name
    if path.is_file():
        return path

    def write(tmp: Path) -> None:
        if precision == "fp32":
            export_onnx(model, tmp)
            return
        from .quantize import quantize_onnx, synthetic_calibration

        with tempfile.TemporaryDirectory() as folder:
            # the recipe INT8_RECORDS were measured with (benchmarks/int8_accuracy.py
            # --layers rcab, synthetic calibration): the RCABs' 3x3 convolutions only
            source = export_onnx(model, Path(folder) / "model.onnx")
            quantize_onnx(source, tmp, synthetic_calibration(model.scale), layers=INT8_LAYERS)

    log.info("exporting the model for ONNX Runtime to %s (once)", path)
    return atomic_write(path, write)


# ----------------------------------------------------------------------------------------------
# Building and timing candidates
# ----------------------------------------------------------------------------------------------
def build_upscaler(
    model: DRN,
    candidate: tuple[str, str],
    threads: int | None = None,
    tile: int | str | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    ensemble: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Upscaler:
    """The CPU upscaler of one candidate (backend, precision); ``tile="auto"`` sizes tiles to
    the memory available for either backend (:func:`dualsr.tiling.auto_tile`)."""
    backend, precision = candidate
    if backend == "onnxruntime":
        from .onnx import OnnxUpscaler

        up: Upscaler = OnnxUpscaler(
            cached_onnx(model, precision),
            threads=threads,
            tile=tile,
            tile_overlap=tile_overlap,
            ensemble=ensemble,
            progress=progress,
            drn=model,
            precision=precision,
        )
        return up
    return TorchUpscaler(
        model,
        "cpu",
        tile=tile,
        tile_overlap=tile_overlap,
        ensemble=ensemble,
        progress=progress,
        backend=backend,
        precision=precision,
    )


def calibration_image() -> np.ndarray:
    """The fixed synthetic LR tile the calibration times (uint8, seeded)."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    return rng.integers(0, 256, size=(*CALIBRATION_HW, 3), dtype=np.uint8)


def measure(candidate: tuple[str, str], upscaler: Upscaler, image: np.ndarray) -> float:
    """Median seconds of :data:`RUNS` calls of ``upscaler(image)`` after :data:`WARMUP`
    untimed ones (``candidate`` names it, for the log)."""
    for _ in range(WARMUP):
        upscaler(image)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        upscaler(image)
        times.append(time.perf_counter() - start)
    log.debug("calibration %s: %s", _label(candidate), times)
    return statistics.median(times)


def calibrate(
    model: DRN, found: list[tuple[str, str]], threads: int | None = None
) -> tuple[tuple[str, str], dict[str, float], list[str]]:
    """Time every candidate on the calibration tile: (the fastest, median seconds per
    candidate, notes on the ones that failed to build or run)."""
    image = calibration_image()
    timings: dict[str, float] = {}
    notes: list[str] = []
    best: tuple[str, str] | None = None
    for candidate in found:
        try:
            up = build_upscaler(model, candidate, threads)
            ran = getattr(up, "backend", candidate[0])
            if ran != candidate[0]:  # it fell back (and warned): not this candidate's time
                notes.append(f"{_label(candidate)} ran as {ran}")
                continue
            seconds = measure(candidate, up, image)
        except Exception as exc:  # a path that cannot run here is simply not picked
            text = (str(exc).strip().splitlines() or [""])[0]
            notes.append(f"{_label(candidate)} failed ({type(exc).__name__}: {text})")
            continue
        timings[_label(candidate)] = seconds
        if best is None or seconds < timings[_label(best)]:
            best = candidate
    if best is None:  # nothing ran: the default PyTorch path reports its own error
        return ("fused", "fp32"), timings, notes
    return best, timings, notes


# ----------------------------------------------------------------------------------------------
# The choice
# ----------------------------------------------------------------------------------------------
def _not_cpu_choice(device: torch.device, precision_request: str) -> Choice:
    native = native_bf16(device)
    precision = (
        "bf16"
        if precision_request == "bf16" or (precision_request == "auto" and native)
        else "fp32"
    )
    return Choice(
        "eager", precision, f"{device.type}: the PyTorch path (eager), as TorchUpscaler's auto"
    )


def _rule_choice(
    model: DRN, precision_request: str
) -> tuple[Choice | None, list[tuple[str, str]], list[str]]:
    """The choice made without measuring (or None), with the candidates and the notes."""
    if precision_request == "auto" and native_bf16("cpu"):
        kind = cpu_kind(detect_cpu())
        flags = ", ".join(f for f in detect_cpu().flags if "bf16" in f) or "native bf16"
        return (
            Choice(
                "fused", "bf16", f"{kind} CPU ({flags}): {BF16_EVIDENCE}; by rule, no calibration"
            ),
            [("fused", "bf16")],
            [],
        )
    found, notes = candidates(model, precision_request)
    if len(found) == 1:
        why = "; ".join(notes) if notes else f"--precision {precision_request}"
        return Choice(*found[0], f"the only candidate ({why})"), found, notes
    return None, found, notes


def known_choice(
    model: DRN,
    device: str | torch.device = "cpu",
    precision_request: str = "auto",
    threads: int | None = None,
) -> Choice | None:
    """What auto picks without measuring anything: a rule's choice or the cached calibration;
    None when a calibration is still to run (the first ``dualsr upscale`` runs it)."""
    dev = torch.device(device)
    if dev.type != "cpu":
        return _not_cpu_choice(dev, precision_request)
    choice, found, _notes = _rule_choice(model, precision_request)
    if choice is not None:
        return choice
    fingerprint = {**machine_fingerprint(threads), "candidates": [_label(c) for c in found]}
    key = _cache_key(fingerprint, model_digest(model), precision_request)
    entry = _load_cache(cache_path()).get(key)
    return _from_entry(entry) if entry is not None else None


def _from_entry(entry: dict) -> Choice:
    timings = entry.get("timings")
    return Choice(
        entry["backend"],
        entry["precision"],
        entry["reason"],
        timings=dict(timings) if isinstance(timings, dict) else None,
        cached=True,
    )


def choose_backend(
    model: DRN,
    device: str | torch.device = "cpu",
    precision_request: str = "auto",
    threads: int | None = None,
    *,
    cache: bool = True,
) -> Choice:
    """The backend and precision ``--backend auto`` runs ``model`` with on ``device``.

    Rules first (native bf16 CPU and ``precision_request`` "auto": fused bf16; not a CPU: the
    PyTorch path as before; a single candidate: that one); otherwise the cached calibration for
    this machine, model and request, or a new calibration (a few seconds), cached when
    ``cache`` (``cache=False`` neither reads nor writes the cache). See the module docstring.
    """
    dev = check_device(device)
    if precision_request not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision_request!r}; choose from {', '.join(PRECISIONS)}"
        )
    if dev.type != "cpu":
        return _not_cpu_choice(dev, precision_request)
    choice, found, notes = _rule_choice(model, precision_request)
    if choice is not None:
        return choice
    threads = threads or torch.get_num_threads()
    # the candidates are part of the key: a path that becomes available is calibrated anew
    fingerprint = {**machine_fingerprint(threads), "candidates": [_label(c) for c in found]}
    key = _cache_key(fingerprint, model_digest(model), precision_request)
    path = cache_path()
    entries = _load_cache(path) if cache else {}
    if key in entries:
        return _from_entry(entries[key])
    log.info(
        "backend auto: timing %s on a %dx%d tile to pick the fastest (a few seconds, once per "
        "machine and model%s)",
        ", ".join(_label(c) for c in found),
        *CALIBRATION_HW,
        f"; cached in {path}" if cache else "",
    )
    best, timings, failed = calibrate(model, found, threads)
    measured = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in timings.items())
    reason = (
        f"{cpu_kind(detect_cpu())} CPU, fastest of a calibration on a "
        f"{CALIBRATION_HW[0]}x{CALIBRATION_HW[1]} tile ({measured or 'nothing ran'})"
    )
    extra = notes + failed
    if extra:
        reason += "; " + "; ".join(extra)
    choice = Choice(*best, reason, timings=timings)
    if cache and timings:
        entries[key] = {
            "backend": choice.backend,
            "precision": choice.precision,
            "reason": choice.reason,
            "timings": timings,
            "machine": fingerprint,
            "precision_request": precision_request,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _save_cache(path, entries)
    return choice


def auto_upscaler(
    model: DRN,
    device: str | torch.device = "cpu",
    precision: str = "auto",
    threads: int | None = None,
    tile: int | str | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    ensemble: bool = False,
    progress: Callable[[int, int], None] | None = None,
    *,
    cache: bool = True,
) -> Upscaler:
    """The upscaler ``--backend auto`` runs: :func:`choose_backend`'s pick, built with the
    given tiling (``tile="auto"`` sizes tiles to the memory available, for ONNX Runtime too).
    The choice is logged (one info line) and kept in the upscaler's ``choice`` attribute."""
    choice = choose_backend(model, device, precision, threads, cache=cache)
    log.info("backend auto: %s (%s)", choice.label, choice.reason)
    if torch.device(device).type != "cpu":
        up: Any = TorchUpscaler(
            model, device, tile, tile_overlap, ensemble, progress, "auto", precision
        )
    else:
        up = build_upscaler(
            model,
            (choice.backend, choice.precision),
            threads,
            tile=tile,
            tile_overlap=tile_overlap,
            ensemble=ensemble,
            progress=progress,
        )
    with contextlib.suppress(AttributeError):
        up.choice = choice
    return up


# ----------------------------------------------------------------------------------------------
# Start-up: the record that lets later runs skip PyTorch (dualsr.deploy.launch)
# ----------------------------------------------------------------------------------------------
def import_seconds() -> dict[str, float]:
    """Seconds ``import torch`` and ``import onnxruntime`` add to a fresh interpreter's run
    (each measured once against ``python -c pass``)."""

    def run(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return time.perf_counter() - start

    base = run("pass")
    return {
        "torch": max(0.0, run("import torch") - base),
        "onnxruntime": max(0.0, run("import onnxruntime") - base),
    }


def writable_folder(folder: Path) -> bool:
    """Whether ``folder`` exists (it is created if need be) and this process may write in it."""
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    return folder.is_dir() and os.access(folder, os.W_OK)


def record_launch(
    upscaler: Upscaler, model_file: Path, precision_request: str = "auto"
) -> LaunchRecord | None:
    """Measure once what ``upscaler`` (auto's PyTorch-process choice for the DRN in
    ``model_file``) and ONNX Runtime fp32 without PyTorch cost to start and per LR pixel here,
    and store it for :func:`dualsr.deploy.launch.launch_without_torch`; a few seconds, once per
    machine and model file (the imports once per machine). None (nothing measured) when ONNX
    Runtime is not installed, the upscaler runs no DRN, the record exists (with its graph), or
    the cache folder cannot be written (a read-only ``$DUALSR_HOME``: every run takes PyTorch)."""
    from .launch import (
        LaunchRecord,
        cached_import_seconds,
        launch_key,
        launch_path,
        read_records,
        write_record,
    )

    model = getattr(upscaler, "model", None)
    if not onnxruntime_available() or not isinstance(model, DRN):
        return None
    key = launch_key(model_file, precision_request)
    known = read_records().get(key)
    if known is not None and Path(known.onnx).is_file():
        return None
    folder = launch_path().parent
    if not writable_folder(folder):
        log.debug("backend auto: %s is not writable: the start-up is not measured", folder)
        return None
    log.info(
        "backend auto: measuring once whether ONNX Runtime without PyTorch finishes small jobs "
        "first (a few seconds)"
    )
    threads = torch.get_num_threads()
    image = calibration_image()
    pixels = image.shape[0] * image.shape[1]
    chosen = (upscaler.backend, upscaler.precision)
    start = time.perf_counter()
    torch_path = build_upscaler(model, chosen, threads)
    torch_build = time.perf_counter() - start
    torch_rate = measure(chosen, torch_path, image) / pixels
    onnx_file = cached_onnx(model, "fp32")
    start = time.perf_counter()
    ort_path = build_upscaler(model, ("onnxruntime", "fp32"), threads)
    ort_build = time.perf_counter() - start
    ort_rate = measure(("onnxruntime", "fp32"), ort_path, image) / pixels
    imports = cached_import_seconds(import_seconds)
    record = LaunchRecord(
        onnx=str(onnx_file),
        scale=model.scale,
        n_feats=model.arch.n_feats,
        threads=threads,
        torch_label=_label(chosen),
        torch_start_s=imports["torch"] + torch_build,
        torch_s_per_pixel=torch_rate,
        ort_start_s=imports["onnxruntime"] + ort_build,
        ort_s_per_pixel=ort_rate,
    )
    write_record(key, record)
    log.info("backend auto: %s", record.summary())
    return record
