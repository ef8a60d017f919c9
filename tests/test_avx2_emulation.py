"""benchmarks/avx2_emulation: a process run under it sees an AVX2-only CPU, and still works.

Needs Linux on x86-64 with CPUID faulting (the ``cpuid_fault`` flag) and a C compiler; skipped
elsewhere (the emulation refuses to run there, which the first test checks by its message).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "avx2_emulation" / "run.py"


def _load_run():
    spec = importlib.util.spec_from_file_location("avx2_emulation_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_module = _load_run()
usable = (
    platform.machine() == "x86_64"
    and shutil.which("cc") is not None
    and run_module.has_cpuid_faulting()
)
needs_faulting = pytest.mark.skipif(
    not usable, reason="needs x86-64 Linux with CPUID faulting and a C compiler"
)

# Leaf 7 sub-leaf 0, EBX bit 16 (AVX512F) and bit 5 (AVX2), read with the CPUID instruction.
LEAF7 = r"""
#include <stdio.h>
int main(void) {
    unsigned a = 7, b, c = 0, d;
    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    printf("avx2=%u avx512f=%u\n", (b >> 5) & 1u, (b >> 16) & 1u);
    return 0;
}
"""


def _emulated(argv: list[str], tmp_path: Path, **kwargs) -> subprocess.CompletedProcess:
    env_cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, str(RUN), "--", *argv],
        env={**os.environ, **env_cache},
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_refuses_without_cpuid_faulting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module, "has_cpuid_faulting", lambda: False)
    with pytest.raises(SystemExit, match="no CPUID faulting"):
        run_module.main(["--", "true"])


@needs_faulting
def test_cpuid_and_cpuinfo_lose_avx512(tmp_path: Path) -> None:
    source = tmp_path / "leaf7.c"
    source.write_text(LEAF7)
    probe = tmp_path / "leaf7"
    subprocess.run(["cc", "-O1", "-o", str(probe), str(source)], check=True)
    native = subprocess.run([str(probe)], capture_output=True, text=True, check=True).stdout
    emulated = _emulated([str(probe)], tmp_path)
    assert emulated.returncode == 0, emulated.stderr
    assert "avx2=1" in native
    assert emulated.stdout.strip() == "avx2=1 avx512f=0"
    flags = _emulated(
        [sys.executable, "-c", "print(open('/proc/cpuinfo').read())"], tmp_path
    ).stdout
    words = {w for line in flags.splitlines() if line.startswith("flags") for w in line.split()}
    assert "avx2" in words and "fma" in words
    assert not any(w.startswith(("avx512", "amx", "avx_vnni")) for w in words)


@needs_faulting
def test_a_compiler_runs_under_it(tmp_path: Path) -> None:
    # gcc's cc1 installs its SIGSEGV handler with signal(): before the emulation wrapped
    # signal(), cc1's first CPUID went to that handler and it died ("internal compiler error"),
    # so the Winograd kernel could not be built in an emulated benchmark.
    source = tmp_path / "k.c"
    source.write_text("int twice(int x) { return 2 * x; }\n")
    out = tmp_path / "k.so"
    result = _emulated(
        ["cc", "-O3", "-mavx2", "-mfma", "-shared", "-fPIC", "-o", str(out), str(source)], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file()


@needs_faulting
def test_a_real_segfault_still_kills(tmp_path: Path) -> None:
    result = _emulated([sys.executable, "-c", "import ctypes; ctypes.string_at(0)"], tmp_path)
    assert result.returncode in (-signal.SIGSEGV, 128 + signal.SIGSEGV, 256 - signal.SIGSEGV)
