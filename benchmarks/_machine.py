"""What a benchmark ran on: shared by the benchmark scripts (run as ``python benchmarks/X.py``)."""

from __future__ import annotations

import os
import platform
import shlex
import sys

import torch


def machine() -> dict:
    """What the numbers were measured on (the machine is shared: see the load average)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "loadavg": os.getloadavg(),
        **cpu(),
        "command": "python " + shlex.join(sys.argv),
        "note": "2-core CPU shared with other engineers' jobs; the load average is 1/5/15 min",
    }


def cpu() -> dict:
    """The CPU model, the flags that decide which kernels run (bf16, int8 dot products, vector
    width) and its kind, as dualsr's ``--backend auto`` sees them (:mod:`dualsr.deploy.cpu`);
    ``-emulated`` is added to the kind under ``benchmarks/avx2_emulation/run.py``."""
    from dualsr.deploy.cpu import cpu_kind, detect_cpu

    info = detect_cpu()
    kind = cpu_kind(info)
    # Run under benchmarks/avx2_emulation/run.py: the CPU's features are hidden, its cores are
    # not. The kind says so, and with it the names of the result files.
    emulation = os.environ.get("DUALSR_CPU_EMULATION")
    if emulation:
        kind += "-emulated"
    return {
        "cpu_model": info.model,
        "cpu_flags": list(info.flags),
        "cpu_kind": kind,
        **({"cpu_emulation": emulation} if emulation else {}),
    }
