"""Which CPU path is fastest for DRN-S x4 at a 90x160 input: the investigation behind the default.

Candidates, all timed in one interleaved run beside the ceiling convolution:

- ``eager``: the model as written (NCHW fp32, every pyramid output): the baseline;
- ``channels_last``: the same model and input in NHWC layout;
- ``jit_freeze``: TorchScript trace + ``torch.jit.freeze`` + ``optimize_for_inference`` (oneDNN
  fusion);
- ``fused_nchw``: :class:`dualsr.deploy.FusedDRN` kept in NCHW;
- ``fused_nofold``: FusedDRN in channels_last without folding the upsamplers' 1x1 convs;
- ``fused``: FusedDRN, channels_last, folded (the default of ``dualsr upscale`` on CPU);
- ``compile_eager``: ``torch.compile`` (inductor, freezing) of the model as written;
- ``compile``: ``torch.compile`` of FusedDRN;
- ``onnxruntime_eager_graph``: ONNX Runtime (all graph optimizations) on the model as written;
- ``onnxruntime``: ONNX Runtime on the FusedDRN graph.

Setup time (build, trace, compile or export) is recorded per candidate; compile times are with a
cold inductor cache (``fx_graph_cache`` off).

    python benchmarks/bench_fast_path.py [--threads N] [--rounds R]

Writes benchmarks/results/bench_fast_path.json and .txt.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import tempfile
from pathlib import Path

import torch

import dualsr
from dualsr.deploy import bench, fuse_for_inference
from dualsr.deploy.bench import run_benchmark
from dualsr.deploy.onnx import export_onnx, onnx_session
from dualsr.models.drn import DRN
from dualsr.profiling import count_macs

RESULTS = Path(__file__).parent / "results"


class _SR(torch.nn.Module):
    def __init__(self, model: DRN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[-1]


def _jit_freeze(model: DRN, example: torch.Tensor) -> tuple:
    with torch.no_grad():
        traced = torch.jit.trace(_SR(copy.deepcopy(model)).eval(), example)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    return frozen, count_macs(model, tuple(example.shape[-2:]))


def _fused_variant(**kwargs: bool):  # noqa: ANN202
    def build(model: DRN, example: torch.Tensor) -> tuple:
        fused = fuse_for_inference(model, **kwargs)
        return fused, count_macs(fused, tuple(example.shape[-2:]))

    return build


def _compile_eager(model: DRN, example: torch.Tensor) -> tuple:
    sr = _SR(copy.deepcopy(model).to(memory_format=torch.channels_last)).eval()
    compiled = torch.compile(sr, options={"freezing": True, "fx_graph_cache": False})
    compiled(example)
    return compiled, count_macs(model, tuple(example.shape[-2:]))


def _ort_eager_graph(model: DRN, example: torch.Tensor) -> tuple:
    with tempfile.TemporaryDirectory() as tmp:
        session = onnx_session(export_onnx(model, Path(tmp) / "m.onnx", fused=False))

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(["sr"], {"lr": x.numpy()})[0])

    return run, count_macs(model, tuple(example.shape[-2:]))


EXTRA = {
    "jit_freeze": _jit_freeze,
    "fused_nchw": _fused_variant(channels_last=False),
    "fused_nofold": _fused_variant(fold=False),
    "compile_eager": _compile_eager,
    "onnxruntime_eager_graph": _ort_eager_graph,
}
ORDER = [
    "eager",
    "channels_last",
    "jit_freeze",
    "fused_nchw",
    "fused_nofold",
    "fused",
    "compile_eager",
    "compile",
    "onnxruntime_eager_graph",
    "onnxruntime",
]


def main() -> None:
    """Parse the options, run, write the results."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="drn-s-x4")
    p.add_argument("--input", default="90x160")
    p.add_argument("--backends", default=",".join(ORDER))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--name", default="bench_fast_path")
    args = p.parse_args()
    bench.BUILDERS.update(EXTRA)
    h, w = (int(v) for v in args.input.split("x"))
    report = run_benchmark(
        {args.model: dualsr.create_model(args.model).eval()},
        (h, w),
        args.backends.split(","),
        threads=args.threads,
        warmup=args.warmup,
        rounds=args.rounds,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    command = "python " + shlex.join(sys.argv)
    text = "\n".join(
        [
            f"# {command}",
            f"# {report.machine.get('cpu_model', '')}, {report.machine['cpu_count']} CPUs, "
            f"torch {torch.__version__}; shared machine: load average (1/5/15 min) below",
            report.table(),
        ]
    )
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.txt").write_text(text + "\n")
    doc = {"command": command, **report.to_dict()}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
