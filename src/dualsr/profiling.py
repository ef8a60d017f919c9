"""Counting the cost of a model: parameters, multiply-adds (MACs), activations and peak memory.

MACs are counted per convolution as ``output elements x (in_channels / groups) x kh x kw``,
without running any arithmetic: the model is replayed on PyTorch's "meta" device. The bicubic
pre-upsampling, activations, pooling and additions are not counted (the convention of the SR
literature). *Activations* are the number of elements of every convolution output (the
convention of the efficient-SR challenges). Always state the input size next to these figures:
they grow with the number of pixels.

Peak memory is *measured*, not estimated: one real forward pass runs in a fresh Python process
(so nothing cached by an earlier pass hides an allocation), and the peak is the increase of the
process's resident set size (RSS) high-water mark over its RSS just before the forward, with the
model's weights and the input already in memory. On Linux the high-water mark is reset right
before the forward (``/proc/self/clear_refs``); elsewhere the process's lifetime peak is used,
which can only under-report a forward that needs less than importing torch did. A forward on an
8 x 8 input runs first, so one-time library initialisation (thread pools, generated kernels) is
not counted.
"""

from __future__ import annotations

import copy
import gc
import json
import resource
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .models.drn import count_parameters  # re-exported: profiles report it
from .options import parse_hw as parse_hw  # re-exported: the sizes of `dualsr profile`, `bench`

#: The size of a 720p output (H, W), the default of the lightweight SR papers.
DEFAULT_OUTPUT_HW = (720, 1280)
#: The NTIRE efficient-SR convention: a 256 x 256 input.
NTIRE_INPUT_HW = (256, 256)


@dataclass(frozen=True)
class ConvStats:
    """Multiply-adds and output elements of every convolution of one forward pass."""

    macs: int
    activations: int
    convs: int


def conv_stats(model: nn.Module, input_hw: tuple[int, int], in_channels: int = 3) -> ConvStats:
    """Count MACs, activations (conv output elements) and conv calls on a 1 x C x H x W input.

    The model is copied to the meta device: no arithmetic runs and ``model`` is not touched.
    """
    meta = copy.deepcopy(model).to("meta")
    macs = activations = calls = 0

    def hook(mod: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs, activations, calls
        kh, kw = mod.kernel_size
        macs += output.numel() * (mod.in_channels // mod.groups) * kh * kw
        activations += output.numel()
        calls += 1

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            meta(torch.empty(1, in_channels, *input_hw, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return ConvStats(macs, activations, calls)


def count_macs(model: nn.Module, input_hw: tuple[int, int], in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass of ``model`` on a 1 x C x H x W input (convolutions)."""
    return conv_stats(model, input_hw, in_channels).macs


def count_activations(model: nn.Module, input_hw: tuple[int, int], in_channels: int = 3) -> int:
    """Elements of every convolution output of one forward pass on a 1 x C x H x W input."""
    return conv_stats(model, input_hw, in_channels).activations


# ----------------------------------------------------------------------------------------------
# Peak memory (measured in a subprocess)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryPeak:
    """The measured memory of one forward pass.

    Attributes:
        forward_bytes: peak RSS during the forward minus RSS just before it (weights and input
            already resident): the memory the forward itself needs.
        peak_rss_bytes: the process's peak RSS during the forward (includes Python, torch,
            weights and input).
        method: how the peak was read (``"VmHWM after clear_refs"`` or ``"ru_maxrss"``).
    """

    forward_bytes: int
    peak_rss_bytes: int
    method: str


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _peak_rss_of_forward(model: nn.Module, input_hw: tuple[int, int], in_channels: int) -> dict:
    model.eval()
    with torch.inference_mode():  # initialise the libraries (thread pools, kernels) first
        model(torch.rand(1, in_channels, 8, 8) * 255)
    x = torch.rand(1, in_channels, *input_hw) * 255
    gc.collect()
    rss = _status_kib("VmRSS")
    before = rss * 1024 if rss is not None else _maxrss_bytes()
    reset = _reset_peak_rss() and _status_kib("VmHWM") is not None
    with torch.inference_mode():
        model(x)
    peak = _status_kib("VmHWM") * 1024 if reset else _maxrss_bytes()
    method = "VmHWM after clear_refs" if reset else "ru_maxrss"
    return {"forward_bytes": max(0, peak - before), "peak_rss_bytes": peak, "method": method}


def _child_main(argv: list[str] | None = None) -> None:
    """Entry point of the measuring process: ``MODEL_FILE H W C THREADS``; JSON to stdout."""
    path, h, w, c, threads = argv or sys.argv[1:]
    torch.set_num_threads(int(threads))
    model = torch.load(path, weights_only=False)  # our own file, written by the parent
    print(json.dumps(_peak_rss_of_forward(model, (int(h), int(w)), int(c))))


def measure_peak_memory(
    model: nn.Module,
    input_hw: tuple[int, int],
    in_channels: int = 3,
    threads: int | None = None,
    timeout: float = 3600.0,
) -> MemoryPeak:
    """Run one forward of ``model`` on a random 1 x C x H x W input in a fresh process and
    measure its peak memory (see the module docstring).

    ``model`` is pickled to a temporary file (its class must be importable); the child is a new
    Python interpreter, so this also works from notebooks and scripts without a main guard.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        torch.save(model, path)
        code = "from dualsr.profiling import _child_main; _child_main()"
        threads = threads or torch.get_num_threads()
        args = [str(path), *map(str, input_hw), str(in_channels), str(threads)]
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code, *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"peak-memory measurement took over {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"peak-memory measurement failed (exit {proc.returncode}): {tail}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return MemoryPeak(**result)


# ----------------------------------------------------------------------------------------------
# A profile: everything together, with the input size
# ----------------------------------------------------------------------------------------------
@dataclass
class Profile:
    """The cost of one forward pass at a stated input size."""

    input_hw: tuple[int, int]
    output_hw: tuple[int, int]
    params: int
    macs: int
    activations: int
    convs: int
    memory: MemoryPeak | None = None

    def to_dict(self) -> dict:
        """A JSON-friendly dict."""
        d = asdict(self)
        d["input_hw"], d["output_hw"] = list(self.input_hw), list(self.output_hw)
        return d

    def format(self, title: str = "") -> str:
        """Human-readable lines; the input size is printed with every figure."""
        h, w = self.input_hw
        oh, ow = self.output_hw
        size = f"input {h}x{w} (HxW)"
        lines = [title] if title else []
        lines += [
            f"input size       {h}x{w} (HxW) -> output {oh}x{ow} (a {ow}x{oh} image)",
            f"parameters       {self.params:,} ({self.params / 1e6:.3f} M)",
            f"multiply-adds    {self.macs / 1e9:,.2f} G  ({size}; FLOPs = 2 x MACs)",
            f"activations      {self.activations / 1e6:,.2f} M conv output elements  ({size})",
            f"conv layers run  {self.convs}",
        ]
        if self.memory is not None:
            lines.append(
                f"peak memory      {self.memory.forward_bytes / 2**20:,.1f} MiB for the forward "
                f"above weights and input ({size}; measured RSS, {self.memory.method}); "
                f"process peak {self.memory.peak_rss_bytes / 2**20:,.1f} MiB"
            )
        return "\n".join(lines)


def profile_model(
    model: nn.Module,
    input_hw: tuple[int, int],
    memory: bool = True,
    scale: int | None = None,
    threads: int | None = None,
) -> Profile:
    """Parameters, MACs, activations and (optionally) measured peak memory at ``input_hw``.

    ``scale`` defaults to ``model.scale``; it only sets the reported output size.
    """
    scale = scale or int(getattr(model, "scale", 1))
    stats = conv_stats(model, input_hw)
    peak = measure_peak_memory(model, input_hw, threads=threads) if memory else None
    return Profile(
        input_hw=tuple(input_hw),
        output_hw=(input_hw[0] * scale, input_hw[1] * scale),
        params=count_parameters(model),
        macs=stats.macs,
        activations=stats.activations,
        convs=stats.convs,
        memory=peak,
    )


def input_for_output(output_hw: tuple[int, int], scale: int) -> tuple[int, int]:
    """The LR input size whose x``scale`` output is ``output_hw``; ValueError if not divisible."""
    h, w = output_hw
    if h % scale or w % scale:
        raise ValueError(f"output size {h}x{w} is not divisible by the scale {scale}")
    return h // scale, w // scale
