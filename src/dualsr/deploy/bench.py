"""Timing inference backends truthfully: warm-up, fixed threads, interleaved rounds, a ceiling.

Every measured call is one forward pass of one model on one backend. Calls are *interleaved*:
each round times every (model, backend) pair once, in the same order, so a burst of load from
other processes slows all of them alike instead of one; the median over rounds is the headline,
with min, max and the spread beside it. The load average is recorded with every result.

The machine's *ceiling* is the measured rate of a large dense 3x3 convolution: by default DRN-S
x4's dominant RCAB convolution (64 -> 64 channels on 1 x 64 x 180 x 320), in whichever of NCHW
and channels_last is faster, in the same thread setting and the same rounds, each time as a
burst of back-to-back calls lasting about 0.3 s (a sustained rate, as a model pass is, not a
lucky short run; ``times_s`` holds the mean time per call of each burst). There is one ceiling
per precision: the fp32 one, and a bf16 one when a bf16 backend is timed (CPUs with native bf16
run it about twice as fast). Every backend's multiply-adds per second is reported as a fraction
of the ceiling of its own precision (int8 against fp32's).

The fast paths run with :func:`~dualsr.deploy.allocator.tune_allocator` applied, as
``dualsr upscale`` does (``tune_malloc=True``). That setting is process-wide, so the ``eager``
baseline ("plain PyTorch") then runs in a separate, freshly started Python process with glibc's
default malloc settings (:class:`IsolatedEager`): the child times its own forward passes, so the
inter-process transfer is not counted, and it is called in its turn in every round like the other
backends.

Rates use the model's *nominal* multiply-adds (:func:`dualsr.profiling.count_macs` of the model
as written); the fused path executes fewer (``executed_macs``), so its rate is an effective rate.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models.drn import DRN
from ..profiling import count_macs
from .allocator import tune_allocator
from .cpu import cpu_kind, detect_cpu, physical_limit
from .fused import fuse_for_inference

#: Every backend :func:`run_benchmark` knows, in the order they are timed.
BACKENDS = (
    "eager",
    "eager-bf16",
    "channels_last",
    "fused",
    "fused-bf16",
    "winograd",
    "compile",
    "onnxruntime",
    "onnxruntime-int8",
)
#: The numeric precision of each backend (the others are fp32).
BACKEND_PRECISION = {"eager-bf16": "bf16", "fused-bf16": "bf16", "onnxruntime-int8": "int8"}


def default_backends() -> tuple[str, ...]:
    """The backends ``dualsr bench`` times by default: fused-bf16 only where bf16 is native,
    winograd where its kernel can be built (:mod:`dualsr.deploy.winograd`)."""
    from .precision import native_bf16
    from .winograd import missing_requirement

    bf16 = ("fused-bf16",) if native_bf16("cpu") else ()
    wino = ("winograd",) if missing_requirement() is None else ()
    return ("eager", "channels_last", "fused", *bf16, *wino, "compile", "onnxruntime")


def backend_precision(backend: str) -> str:
    """ "fp32", "bf16" or "int8"."""
    return BACKEND_PRECISION.get(backend, "fp32")


DEFAULT_BACKENDS = default_backends()
#: The ceiling convolution: (in_channels, out_channels, height, width), kernel 3x3.
DEFAULT_CEILING_SHAPE = (64, 64, 180, 320)
#: Seconds of back-to-back ceiling convolutions timed per round.
CEILING_BURST_S = 0.3


@dataclass
class BackendResult:
    """The timings of one model on one backend."""

    model: str
    backend: str
    input_hw: tuple[int, int]
    macs: int
    executed_macs: int
    setup_s: float
    precision: str = "fp32"
    times_s: list[float] = field(default_factory=list)
    max_abs_diff: float | None = None
    error: str | None = None
    median_s: float = 0.0
    min_s: float = 0.0
    max_s: float = 0.0
    spread: float = 0.0
    macs_per_s: float = 0.0
    ceiling_fraction: float = 0.0
    speedup_vs_eager: float | None = None

    def finish(self, ceiling_macs_per_s: float) -> None:
        """Fill in the statistics from ``times_s``."""
        if not self.times_s:
            return
        self.median_s = statistics.median(self.times_s)
        self.min_s, self.max_s = min(self.times_s), max(self.times_s)
        q = np.percentile(self.times_s, [25, 75])
        self.spread = float((q[1] - q[0]) / self.median_s)  # interquartile range / median
        self.macs_per_s = self.macs / self.median_s
        self.ceiling_fraction = self.macs_per_s / ceiling_macs_per_s if ceiling_macs_per_s else 0


@dataclass
class Ceiling:
    """The measured rate of the ceiling convolution."""

    shape: tuple[int, int, int, int]
    layout: str
    macs: int
    precision: str = "fp32"
    times_s: list[float] = field(default_factory=list)
    macs_per_s: float = 0.0
    layouts: dict[str, float] = field(default_factory=dict)
    #: The nominal limit of the cores in this precision (:func:`dualsr.deploy.cpu.physical_limit`),
    #: None where it cannot be stated, and how it was computed.
    physical_limit_macs_per_s: float | None = None
    physical_limit_assumptions: str = ""


@dataclass
class BenchReport:
    """Everything one benchmark run measured, with the conditions it ran under."""

    results: list[BackendResult]
    ceiling: Ceiling
    threads: int
    warmup: int
    rounds: int
    loadavg_start: tuple[float, float, float]
    loadavg_end: tuple[float, float, float]
    machine: dict
    ceiling_bf16: Ceiling | None = None

    def to_dict(self) -> dict:
        """A JSON-friendly dict."""
        return asdict(self)

    def table(self) -> str:
        """A plain-text table: one row per (model, backend)."""
        bw = max([17] + [len(r.backend) for r in self.results])
        mw = max([14] + [len(r.model) for r in self.results])
        lines = [
            f"cpu {self.machine.get('cpu_model', self.machine.get('processor', '?'))}; kind "
            f"{self.machine.get('cpu_kind', '?')}; flags "
            f"{' '.join(self.machine.get('cpu_flags', [])) or '-'}",
            f"threads {self.threads}, warm-up {self.warmup}, rounds {self.rounds} (interleaved); "
            f"load average {_fmt_load(self.loadavg_start)} at start, "
            f"{_fmt_load(self.loadavg_end)} at end (cpus: {os.cpu_count()}); malloc tuning "
            f"{'on' if self.machine.get('malloc_tuning') else 'off'}; eager baseline: "
            f"{self.machine.get('eager_process', 'same process')}"
            + "".join(f"; {k}={v}" for k, v in self.machine.get("malloc_env", {}).items()),
            *(
                f"ceiling {c.precision}: 3x3 conv {c.shape[0]}->{c.shape[1]} on 1x{c.shape[0]}x"
                f"{c.shape[2]}x{c.shape[3]} ({c.layout}): {c.macs_per_s / 1e9:.1f} G MACs/s "
                f"(median of {len(c.times_s)} bursts of ~{CEILING_BURST_S} s)" + _fmt_limit(c)
                for c in (self.ceiling, self.ceiling_bf16)
                if c is not None
            ),
            *(
                f"physical limit {c.precision}: {c.physical_limit_assumptions}"
                for c in (self.ceiling, self.ceiling_bf16)
                if c is not None and c.physical_limit_assumptions
            ),
            f"{'model':<{mw}} {'backend':<{bw}} {'prec':>4} {'input':>8} {'median ms':>10} "
            f"{'min':>8} {'max':>8} {'IQR%':>5} {'G MAC/s':>8} {'ceil%':>6} {'vs eager':>8} "
            f"{'max|diff|':>9} {'setup s':>8}",
        ]
        for r in self.results:
            size = f"{r.input_hw[0]}x{r.input_hw[1]}"
            if r.error:
                lines.append(
                    f"{r.model:<{mw}} {r.backend:<{bw}} {r.precision:>4} {size:>8}  "
                    f"failed: {r.error}"
                )
                continue
            vs = f"{r.speedup_vs_eager:.2f}x" if r.speedup_vs_eager else "-"
            diff = f"{r.max_abs_diff:.1e}" if r.max_abs_diff is not None else "-"
            lines.append(
                f"{r.model:<{mw}} {r.backend:<{bw}} {r.precision:>4} {size:>8} "
                f"{r.median_s * 1e3:>10.1f} "
                f"{r.min_s * 1e3:>8.1f} {r.max_s * 1e3:>8.1f} {r.spread * 100:>5.1f} "
                f"{r.macs_per_s / 1e9:>8.1f} {r.ceiling_fraction * 100:>5.1f}% {vs:>8} "
                f"{diff:>9} {r.setup_s:>8.1f}"
            )
        lines.append(
            "G MAC/s = the model's nominal multiply-adds / median time; 'fused' and the ONNX "
            "graphs execute fewer (see executed_macs in the JSON); ceil% is against the ceiling "
            "of the backend's precision (int8: fp32's)."
        )
        return "\n".join(lines)


def _fmt_limit(ceiling: Ceiling) -> str:
    limit = ceiling.physical_limit_macs_per_s
    if not limit:
        return "; physical limit unknown"
    return (
        f"; physical limit {limit / 1e9:.1f} G MACs/s (measured "
        f"{ceiling.macs_per_s / limit:.0%} of it, nominal)"
    )


def _fmt_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in load)


def loadavg() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (zeros where the OS does not report them)."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return (0.0, 0.0, 0.0)


def machine_info() -> dict:
    """What the timings depend on: CPU, core count, library versions."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        # glibc malloc settings from the environment (they change timings: docs/deployment.md)
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cpu = detect_cpu()
    info.setdefault("cpu_model", cpu.model)
    info["cpu_kind"] = cpu_kind(cpu)
    info["cpu_flags"] = list(cpu.flags)
    info["logical_cpus"] = cpu.logical_cpus
    info["cpu_clock_ghz"] = cpu.clock_ghz
    info["cpu_clock_source"] = cpu.clock_source
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


# ----------------------------------------------------------------------------------------------
# Backends: each builder returns (callable on an NCHW float tensor in 0..255, executed MACs)
# ----------------------------------------------------------------------------------------------
Runner = Callable[[torch.Tensor], torch.Tensor]


def _eager(model: DRN, example: torch.Tensor) -> tuple[Runner, int]:
    return (lambda x: model(x)[-1]), count_macs(model, tuple(example.shape[-2:]))


def _eager_worker(conn: Any, model: DRN, threads: int) -> None:
    """The child process of :class:`IsolatedEager`: run requests until told to stop."""
    torch.set_num_threads(threads)
    model.eval()
    with torch.inference_mode():
        while True:
            request = conn.recv()
            if request is None:
                break
            x, want_output = request
            start = time.perf_counter()
            out = model(x)[-1]
            seconds = time.perf_counter() - start
            conn.send((out if want_output else None, seconds))
    conn.close()


class IsolatedEager:
    """Plain PyTorch eager in a fresh child process (default malloc settings, same threads).

    Calling it runs one forward pass in the child; ``inner_seconds`` is the child's own time of
    that pass. The output comes back only on the first call (the parity check). ``close()``
    stops the child.
    """

    def __init__(self, model: DRN, threads: int) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_eager_worker, args=(child, model, threads), daemon=True)
        self._proc.start()
        child.close()
        self._first = True
        self.inner_seconds: float | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        """One eager forward pass in the child (returns the SR output on the first call only)."""
        self._conn.send((x, self._first))
        out, self.inner_seconds = self._conn.recv()
        self._first = False
        return out

    def close(self) -> None:
        """Stop the child process."""
        if self._proc.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(None)
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.kill()
        self._conn.close()


def _isolated_eager(model: DRN, example: torch.Tensor) -> tuple[Runner, int]:
    runner = IsolatedEager(model, torch.get_num_threads())
    return runner, count_macs(model, tuple(example.shape[-2:]))  # type: ignore[return-value]


def _channels_last(model: DRN, example: torch.Tensor) -> tuple[Runner, int]:
    import copy

    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    macs = count_macs(model, tuple(example.shape[-2:]))
    return (lambda x: cl(x.contiguous(memory_format=torch.channels_last))[-1]), macs


def _eager_bf16(model: DRN, example: torch.Tensor) -> tuple[Runner, int]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)[-1].float()

    return run, count_macs(model, tuple(example.shape[-2:]))


def _fused(
    model: DRN, example: torch.Tensor, dtype: torch.dtype = torch.float32
) -> tuple[Runner, int]:
    fused = fuse_for_inference(model, dtype=dtype)
    return fused, count_macs(fused, tuple(example.shape[-2:]))


def _winograd(model: DRN, example: torch.Tensor) -> tuple[Runner, int]:
    """Fused fp32 with Winograd 3x3 convolutions; its MACs are the direct algorithm's (the
    nominal count), so its share of the fp32 ceiling can pass 100%: it multiplies less."""
    from .winograd import use_winograd

    fused = fuse_for_inference(model)
    macs = count_macs(fused, tuple(example.shape[-2:]))
    use_winograd(fused)
    return fused, macs


def _compile(model: DRN, example: torch.Tensor) -> tuple[Runner, int]:
    fused = fuse_for_inference(model)
    compiled = torch.compile(fused, options={"freezing": True, "fx_graph_cache": False})
    compiled(example)  # compile now, so that setup time includes it
    return compiled, count_macs(fused, tuple(example.shape[-2:]))


def _onnxruntime(model: DRN, example: torch.Tensor, int8: bool = False) -> tuple[Runner, int]:
    from .onnx import export_onnx, onnx_session

    with tempfile.TemporaryDirectory() as tmp:
        # INT8 keeps the first convolutions fp32 by position: quantize the Resize graph
        path = export_onnx(model, Path(tmp) / "model.onnx", portable=not int8)
        if int8:
            from .quantize import quantize_onnx

            path = quantize_onnx(path, Path(tmp) / "model-int8.onnx", calibration=[example])
        session = onnx_session(path, torch.get_num_threads())

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(["sr"], {"lr": x.numpy()})[0])

    return run, count_macs(fuse_for_inference(model), tuple(example.shape[-2:]))


BUILDERS: dict[str, Callable[[DRN, torch.Tensor], tuple[Runner, int]]] = {
    "eager": _eager,
    "eager-bf16": _eager_bf16,
    "channels_last": _channels_last,
    "fused": _fused,
    "fused-bf16": lambda m, x: _fused(m, x, torch.bfloat16),
    "winograd": _winograd,
    "compile": _compile,
    "onnxruntime": _onnxruntime,
    "onnxruntime-int8": lambda m, x: _onnxruntime(m, x, int8=True),
}


# ----------------------------------------------------------------------------------------------
# The ceiling and the timing loop
# ----------------------------------------------------------------------------------------------
def _ceiling_runners(
    shape: tuple[int, int, int, int], dtype: torch.dtype = torch.float32
) -> dict[str, Callable[[], torch.Tensor]]:
    cin, cout, h, w = shape
    gen = torch.Generator().manual_seed(0)
    weight = (torch.randn(cout, cin, 3, 3, generator=gen) * 0.05).to(dtype)
    bias = torch.zeros(cout, dtype=dtype)
    x = torch.randn(1, cin, h, w, generator=gen).to(dtype)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    w_cl = weight.contiguous(memory_format=torch.channels_last)
    return {
        "nchw": lambda: F.conv2d(x, weight, bias, 1, 1),
        "channels_last": lambda: F.conv2d(x_cl, w_cl, bias, 1, 1),
    }


def measure_ceiling(
    shape: tuple[int, int, int, int] = DEFAULT_CEILING_SHAPE,
    runs: int = 10,
    precision: str = "fp32",
) -> Ceiling:
    """Time the ceiling convolution alone (both layouts, the faster one reported)."""
    ceiling = _new_ceiling(shape, precision)
    runners = _ceiling_runners(shape, _CEILING_DTYPES[precision])
    with torch.inference_mode():
        for name, fn in runners.items():
            times = time_calls(fn, warmup=2, runs=runs)
            ceiling.layouts[name] = ceiling.macs / statistics.median(times)
            if name == max(ceiling.layouts, key=ceiling.layouts.get):
                ceiling.layout, ceiling.times_s = name, times
    ceiling.macs_per_s = max(ceiling.layouts.values())
    limit = physical_limit(detect_cpu(), torch.get_num_threads(), precision)
    ceiling.physical_limit_macs_per_s, ceiling.physical_limit_assumptions = limit
    return ceiling


_CEILING_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _new_ceiling(shape: tuple[int, int, int, int], precision: str = "fp32") -> Ceiling:
    cin, cout, h, w = shape
    return Ceiling(shape=tuple(shape), layout="", macs=cin * cout * 9 * h * w, precision=precision)


def time_calls(fn: Callable[[], object], warmup: int, runs: int) -> list[float]:
    """Seconds of each of ``runs`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def run_benchmark(
    models: dict[str, DRN],
    input_hw: tuple[int, int] = (90, 160),
    backends: tuple[str, ...] | list[str] = DEFAULT_BACKENDS,
    threads: int | None = None,
    warmup: int = 2,
    rounds: int = 5,
    ceiling_shape: tuple[int, int, int, int] = DEFAULT_CEILING_SHAPE,
    log: Callable[[str], None] | None = None,
    tune_malloc: bool = True,
) -> BenchReport:
    """Time every model on every backend at ``input_hw`` (see the module docstring).

    Args:
        models: name -> DRN (eval mode).
        input_hw: the LR input size (H, W).
        backends: names from :data:`BACKENDS`; a backend that fails to build is reported with
            its error and skipped.
        threads: torch (and ONNX Runtime) intra-op threads; default: torch's current setting.
        warmup: untimed calls per (model, backend) before the rounds.
        rounds: timed calls per (model, backend), interleaved.
        ceiling_shape: (in, out, H, W) of the 3x3 ceiling convolution.
        log: optional progress callback (one line per step).
        tune_malloc: apply :func:`~dualsr.deploy.allocator.tune_allocator` first, as the default
            CPU path of ``dualsr upscale`` does. It is process-wide, so every backend of the run
            (eager included) is timed with it; the report's machine info says whether it was on.
    """
    unknown = [b for b in backends if b not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    say = log or (lambda _msg: None)
    malloc = tune_allocator() if tune_malloc else None
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    load_start = loadavg()
    example = torch.rand(1, 3, *input_hw, generator=torch.Generator().manual_seed(0)) * 255
    results: list[BackendResult] = []
    runners: list[tuple[BackendResult, Runner]] = []
    with torch.inference_mode():
        for name, model in models.items():
            model.eval()
            reference = model(example)[-1]
            macs = count_macs(model, input_hw)
            for backend in backends:
                say(f"building {name} / {backend}")
                start = time.perf_counter()
                result = BackendResult(
                    name, backend, tuple(input_hw), macs, macs, 0.0, backend_precision(backend)
                )
                builder = BUILDERS[backend]
                if backend == "eager" and malloc is not None:
                    builder = _isolated_eager  # plain PyTorch: default malloc settings
                try:
                    fn, result.executed_macs = builder(model, example)
                    out = fn(example)
                    result.setup_s = time.perf_counter() - start
                    result.max_abs_diff = float((out - reference).abs().max())
                    runners.append((result, fn))
                except Exception as exc:  # report it and go on with the other backends
                    text = str(exc).strip().splitlines()
                    result.error = f"{type(exc).__name__}: {text[0] if text else ''}"
                results.append(result)
        precisions = ["fp32"] + (["bf16"] if any(r.precision == "bf16" for r in results) else [])
        ceilings = {p: _new_ceiling(ceiling_shape, p) for p in precisions}
        # (precision, layout) -> the ceiling convolution
        ceiling_fns = {
            (p, layout): fn
            for p in precisions
            for layout, fn in _ceiling_runners(ceiling_shape, _CEILING_DTYPES[p]).items()
        }
        say(f"warm-up ({warmup} calls each)")
        for _ in range(warmup):
            for _result, fn in runners:
                fn(example)
            for fn in ceiling_fns.values():
                fn()
        # the ceiling runs in bursts of about CEILING_BURST_S, so that it is a sustained rate
        # under the same load as the model passes, not a lucky short run
        bursts = {}
        for key, fn in ceiling_fns.items():
            single = min(time_calls(fn, 0, 2))
            bursts[key] = max(3, math.ceil(CEILING_BURST_S / max(single, 1e-6)))
        layout_rates: dict[tuple[str, str], list[float]] = {k: [] for k in ceiling_fns}
        for r in range(rounds):
            say(f"round {r + 1}/{rounds} (load {_fmt_load(loadavg())})")
            for key, fn in ceiling_fns.items():
                calls, macs = bursts[key], ceilings[key[0]].macs
                layout_rates[key].append(calls * macs / sum(time_calls(fn, 0, calls)))
            for result, fn in runners:
                start = time.perf_counter()
                fn(example)
                elapsed = time.perf_counter() - start
                inner = getattr(fn, "inner_seconds", None)  # a child process's own timing
                result.times_s.append(inner if inner is not None else elapsed)
    for _result, fn in runners:
        if isinstance(fn, IsolatedEager):
            fn.close()
    for (prec, layout), rates in layout_rates.items():
        ceilings[prec].layouts[layout] = statistics.median(rates)
    for prec, ceiling in ceilings.items():
        ceiling.layout = max(ceiling.layouts, key=ceiling.layouts.get)
        ceiling.times_s = [ceiling.macs / rate for rate in layout_rates[(prec, ceiling.layout)]]
        ceiling.macs_per_s = ceiling.layouts[ceiling.layout]
        limit = physical_limit(detect_cpu(), threads, prec)
        ceiling.physical_limit_macs_per_s, ceiling.physical_limit_assumptions = limit
    eager = {r.model: r for r in results if r.backend == "eager"}
    for r in results:
        r.finish(ceilings.get(r.precision, ceilings["fp32"]).macs_per_s)
    for r in results:
        base = eager.get(r.model)
        if base is not None and base.median_s and r.median_s:
            r.speedup_vs_eager = base.median_s / r.median_s
    return BenchReport(
        results=results,
        ceiling=ceilings["fp32"],
        ceiling_bf16=ceilings.get("bf16"),
        threads=threads,
        warmup=warmup,
        rounds=rounds,
        loadavg_start=load_start,
        loadavg_end=loadavg(),
        machine={
            **machine_info(),
            "malloc_tuning": malloc,
            "eager_process": "separate process, default malloc" if malloc else "same process",
        },
    )
