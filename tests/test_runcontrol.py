"""Run control shared by the loops, and imports that run one way (no cycles between modules)."""

from __future__ import annotations

import ast
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dualsr.runcontrol import StopSignals, save_after_error

ROOT = Path(__file__).resolve().parents[1]


def test_save_after_error_says_what_was_kept(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("dualsr.test")
    with caplog.at_level(logging.ERROR, logger="dualsr.test"):
        save_after_error(
            KeyboardInterrupt(), 3, lambda: "saved ckpt.pt", "dualsr x --resume r", log
        )
    assert caplog.messages == [
        "interrupted at step 3: saved ckpt.pt; continue with: dualsr x --resume r"
    ]
    caplog.clear()

    def full_disk() -> str:
        raise OSError("No space left on device")

    with caplog.at_level(logging.ERROR, logger="dualsr.test"):
        save_after_error(ValueError("boom"), 3, full_disk, "dualsr x --resume r", log)
    assert caplog.messages == [
        "could not save a checkpoint after the error either: No space left on device"
    ]


def test_stop_signals_turn_sigterm_into_a_request_and_restore_the_handler() -> None:
    def previous(signum: int, frame: object) -> None:
        raise AssertionError("the previous handler must not run inside the block")

    old = signal.signal(signal.SIGTERM, previous)
    try:
        with StopSignals() as signals:
            os.kill(os.getpid(), signal.SIGTERM)
            assert signals.received == "SIGTERM"
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports from, anywhere in it (relative ones with their dots)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_imports_run_one_way() -> None:
    """Compression does not load the training loop (its run control is :mod:`dualsr.runcontrol`)
    and the search options do not import the search; the deploy primitives import neither the
    fused nor the portable graphs, and the fused graph does not import the portable one."""
    src = ROOT / "src" / "dualsr"
    for path in sorted((src / "compression").rglob("*.py")):
        assert not any(m.endswith("training.loop") for m in _imports(path)), path.name
    # the search's options module gives the search its defaults, so it imports no sibling
    siblings = {m for m in _imports(src / "compression" / "search" / "options.py")}
    assert not {m for m in siblings if m.startswith(".") and not m.startswith("..")}
    assert not {m for m in _imports(src / "deploy" / "resample.py") if m.startswith(".")}
    assert ".portable" not in _imports(src / "deploy" / "fused.py")
    code = "import sys, dualsr.compression.search.channels as m; "
    code += "assert 'dualsr.training.loop' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": str(src.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
