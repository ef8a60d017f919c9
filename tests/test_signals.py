"""SIGTERM is handled like Ctrl-C by every subcommand, and no temporary file outlives its writer.

``timeout``, ``docker stop`` and Slurm stop a job with SIGTERM: the command must remove the
temporary file of a write in progress and exit with 143; a writer killed without a chance to
clean up (SIGKILL) leaves a temporary file that the next write into that folder removes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dualsr
from dualsr import fileio
from dualsr.cli import EXIT_SIGTERM, main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}

# A child process that starts an atomic write, says so (the marker file), and waits inside it.
# With "cli" it runs as a `dualsr` subcommand (through dualsr.cli.main); with "bare" it writes
# outside the command line, so nothing handles SIGTERM.
SLOW_WRITER = textwrap.dedent(
    """
    import sys, time, types
    from pathlib import Path

    from dualsr.fileio import atomic_write

    how, out, marker = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"x" * 100_000)
            fh.flush()
        marker.write_text(str(tmp))
        time.sleep(60)

    if how == "bare":
        atomic_write(out, write)
        sys.exit(0)

    import dualsr.cli as cli

    def add_parser(sub, name):
        p = sub.add_parser(name)
        p.add_argument("out")
        return p

    def run(args):
        atomic_write(args.out, write)
        return 0

    module = types.ModuleType("dualsr.cli._slow_write")
    module.add_parser, module.run = add_parser, run
    sys.modules[module.__name__] = module
    cli.COMMANDS["slow-write"] = ("_slow_write", "write slowly")
    sys.exit(cli.main(["slow-write", str(out)]))
    """
)


def start_slow_writer(how: str, out: Path, marker: Path) -> tuple[subprocess.Popen, Path]:
    """Start :data:`SLOW_WRITER`; return it, once it is inside the write, and its temp file."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, how, str(out), str(marker)],
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if not marker.exists():
        proc.kill()
        pytest.fail(f"the writer never started its write: {proc.communicate()[1]}")
    time.sleep(0.1)  # the marker is written just before the sleep; let it get there
    return proc, Path(marker.read_text())


def test_sigterm_during_a_write_removes_the_temp_file_and_exits_143(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    proc, tmp = start_slow_writer("cli", folder / "model.safetensors", tmp_path / "started")
    assert tmp.is_file() and tmp.parent == folder
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_SIGTERM == 143, err
    assert err.strip().splitlines()[-1] == "terminated (SIGTERM)", err
    assert "Traceback" not in err
    assert list(folder.iterdir()) == []  # neither the temp file nor a half-written file


def test_a_dead_writers_temp_file_is_removed_by_the_next_write_a_live_ones_kept(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "out"
    dead, dead_tmp = start_slow_writer("bare", folder / "a.bin", tmp_path / "a")
    live, live_tmp = start_slow_writer("bare", folder / "b.bin", tmp_path / "b")
    try:
        dead.kill()  # SIGKILL: no handler runs, the temp file stays
        dead.communicate(timeout=60)
        assert dead_tmp.is_file() and live_tmp.is_file()
        assert f"-{dead.pid}." in dead_tmp.name  # the writer's pid is in the name
        other = folder / ".c.bin.unrelated.tmp"  # not ours: never touched
        other.write_bytes(b"keep")
        fileio.atomic_write_bytes(folder / "c.bin", b"new")
        assert not dead_tmp.exists()
        assert live_tmp.is_file() and other.is_file()
        assert (folder / "c.bin").read_bytes() == b"new"
    finally:
        live.kill()
        live.communicate(timeout=60)
    assert fileio.remove_stale_temp_files(folder) == [live_tmp]  # now its writer is gone too


def test_temp_files_of_another_machine_are_left_alone(tmp_path: Path) -> None:
    other_machine = "0" * 8 if fileio._machine_id() != "0" * 8 else "1" * 8
    foreign = tmp_path / f".x.bin.{fileio.TEMP_TAG}-{other_machine}-999999999.abc_123.tmp"
    mine = tmp_path / f".x.bin.{fileio.TEMP_TAG}-{fileio._machine_id()}-999999999.abc_123.tmp"
    foreign.write_bytes(b"")
    mine.write_bytes(b"")
    assert fileio.remove_stale_temp_files(tmp_path) == [mine]  # pid 999999999 does not exist
    assert foreign.is_file()


def test_main_restores_the_previous_sigterm_handler(capsys: pytest.CaptureFixture) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    assert main(["env"]) == 0
    assert signal.getsignal(signal.SIGTERM) is previous


def test_train_still_saves_a_checkpoint_on_sigterm_under_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The training loop's own handler replaces the command's while it runs: SIGTERM saves a
    checkpoint and `dualsr train` exits with 143, as before."""
    from dualsr import training
    from dualsr.data.image_io import write_image

    from .conftest import random_image

    (tmp_path / "hr").mkdir()
    for i in range(3):
        write_image(tmp_path / "hr" / f"{i}.png", random_image(24, 24, seed=i))
    real_train = training.train

    def train_with_sigterm(cfg, resume=False, callbacks=()):  # noqa: ANN001, ANN202
        def send(info) -> None:  # noqa: ANN001
            if info.step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

        return real_train(cfg, resume=resume, callbacks=[*callbacks, send])

    monkeypatch.setattr(training, "train", train_with_sigterm)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"""
model: {{scale: 4, n_feats: 4, n_blocks: 0}}
data: {{train: [{tmp_path / "hr"}], patch_size: 16, batch_size: 2, workers: 0, cache: memory}}
train: {{steps: 50, threads: 1}}
run: {{dir: {tmp_path / "run"}, save_every: 100, progress: false, tensorboard: false}}
"""
    )
    args = ["train", "--config", str(config)]
    previous = signal.getsignal(signal.SIGTERM)
    assert main(args) == EXIT_SIGTERM
    assert (tmp_path / "run" / "checkpoints" / "step-000002.safetensors").is_file()
    assert signal.getsignal(signal.SIGTERM) is previous
    assert dualsr.load_checkpoint(tmp_path / "run" / "checkpoints" / "step-000002.safetensors")
