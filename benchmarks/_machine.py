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
        "command": "python " + shlex.join(sys.argv),
        "note": "2-core CPU shared with other engineers' jobs; the load average is 1/5/15 min",
    }
