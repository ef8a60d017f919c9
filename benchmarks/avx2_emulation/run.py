"""Run a command as if this CPU were AVX2-only (no AVX-512, AVX-VNNI, AVX512_BF16 or AMX).

    python benchmarks/avx2_emulation/run.py -- python benchmarks/bench_upscale_process.py ...

For measuring dualsr's AVX2 paths on a machine that has AVX-512. It builds ``hide_avx512.so``
(``hide_avx512.c`` beside this file; needs a C compiler) into ``$XDG_CACHE_HOME/dualsr`` and
runs the command with it preloaded: CPUID (through Linux's CPUID faulting, the ``cpuid_fault``
flag) and ``/proc/cpuinfo`` then report no AVX-512, so PyTorch, oneDNN, ONNX Runtime and dualsr's
detection all take their AVX2 kernels. The cores stay what they are (clock, caches, execution
units): results are an emulation of an AVX2 CPU, not a measurement of one, and the benchmarks
say so (``DUALSR_CPU_EMULATION`` is set for them to read).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "hide_avx512.c"
#: glibc's own string functions were picked before the preload runs: mask them too.
GLIBC_TUNABLES = (
    "glibc.cpu.hwcaps=-AVX512F,-AVX512CD,-AVX512ER,-AVX512PF,-AVX512VL,-AVX512DQ,-AVX512BW"
)
#: What the benchmarks record as the emulation (``_machine.py``).
LABEL = "avx2 emulated: AVX-512, AVX-VNNI, AVX512_BF16 and AMX hidden (CPUID faulting)"


def build() -> Path:
    """The preload library, compiled once per source version."""
    code = SOURCE.read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dualsr"
    lib = cache / f"hide_avx512-{hashlib.sha256(code).hexdigest()[:12]}.so"
    if lib.exists():
        return lib
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        sys.exit("avx2 emulation: no C compiler (set CC or install gcc)")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE), "-ldl"], check=True)
    tmp.replace(lib)
    return lib


def has_cpuid_faulting() -> bool:
    """Whether Linux reports the CPU flag that the emulation needs."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(
        line.startswith("flags") and "cpuid_fault" in line.split() for line in text.splitlines()
    )


def main(argv: list[str]) -> int:
    """Run ``argv`` (after ``--``) under the emulation; its exit status."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        sys.exit(__doc__)
    if not has_cpuid_faulting():
        sys.exit(
            "avx2 emulation: this CPU or kernel has no CPUID faulting (flag cpuid_fault), "
            "so a process cannot be shown an AVX2-only CPU here; measure on an AVX2 machine"
        )
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(filter(None, [str(build()), env.get("LD_PRELOAD", "")]))
    env["GLIBC_TUNABLES"] = GLIBC_TUNABLES
    env["DUALSR_CPU_EMULATION"] = LABEL
    return subprocess.call(argv, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
