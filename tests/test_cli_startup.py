"""`dualsr --version` and `dualsr --help` answer without importing PyTorch (or any subcommand)."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dualsr.cli import COMMANDS, build_parser, requested_command

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_torch(tmp_path: Path) -> dict[str, str]:
    """An environment where `import torch` fails: a fake torch package first on the path."""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('torch must not be imported here')\n")
    path = os.pathsep.join([str(tmp_path / "fake"), str(ROOT / "src")])
    return {**os.environ, "PYTHONPATH": path}


@pytest.mark.parametrize("flag", ["--version", "--help", "-h", None])
def test_version_and_help_do_not_import_torch(no_torch: dict[str, str], flag: str | None) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dualsr", *([flag] if flag else [])],
        env=no_torch,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if flag == "--version":
        assert proc.returncode == 0 and proc.stdout.strip() == "dualsr 0.1.0"
    else:  # the help lists every subcommand with its one-line help
        assert proc.returncode == (0 if flag else 2), proc.stderr
        for name, (_, summary) in COMMANDS.items():
            assert name in proc.stdout and summary.split()[0] in proc.stdout
    # the fake really is first: a subcommand that needs torch fails on it
    proc = subprocess.run(
        [sys.executable, "-c", "import torch"], env=no_torch, capture_output=True, text=True
    )
    assert "torch must not be imported here" in proc.stderr


def test_the_listed_help_is_each_subcommands_own() -> None:
    """COMMANDS (what --help lists without importing) says what each module's parser says."""
    for name, (module, summary) in COMMANDS.items():
        mod = importlib.import_module(f"dualsr.cli.{module}")
        sub = argparse.ArgumentParser().add_subparsers()
        mod.add_parser(sub, name)
        (action,) = sub._choices_actions
        assert action.help == summary, name


def test_the_requested_command_is_the_first_non_option() -> None:
    assert requested_command(["--debug", "train", "--config", "x.yaml"]) == "train"
    assert requested_command(["--version"]) is None
    assert requested_command(["nonsense", "train"]) is None
    assert requested_command([]) is None
    full = build_parser()  # every subcommand, fully
    args = full.parse_args(["eval", "--model", "bicubic", "--data", "Set5"])
    assert args.command == "eval" and callable(args._run)
    with pytest.raises(SystemExit):
        build_parser("").parse_args(["nonsense"])  # an unknown command is still an error


def test_only_the_whole_process_entry_freezes_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dualsr` (main() reading sys.argv) freezes its objects out of the collector, which makes
    its exit faster; main(argv) called from Python (tests, scripts) leaves the collector alone."""
    import gc

    from dualsr.cli import main

    gc.unfreeze()
    try:
        with pytest.raises(SystemExit):  # argparse's --version exits
            main(["--version"])
        assert gc.get_freeze_count() == 0
        monkeypatch.setattr(sys, "argv", ["dualsr", "--version"])
        with pytest.raises(SystemExit):
            main()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
