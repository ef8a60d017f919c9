"""The README as a user reads it: every ```python block runs as written, every `dualsr ...` line
of a ```bash block parses with the real command line, and the repository files it names exist.

Nothing is downloaded: command lines (``dualsr download ...`` included) are only parsed, and the
Python blocks use the weights shipped in the package.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from dualsr.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Tokens starting with these name files of the repository, which must exist.
REPO_DIRS = ("configs/", "benchmarks/", "experiments/", "docs/", "src/", "tests/")


def blocks(language: str) -> list[tuple[int, str]]:
    """(first line number, text) of every fenced block of ``language`` in the README."""
    found, lines = [], README.read_text(encoding="utf-8").splitlines()
    start = None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == f"```{language}":
            start = number + 1
        elif start is not None and line.strip() == "```":
            found.append((start, "\n".join(lines[start - 1 : number - 1])))
            start = None
    return found


def commands() -> list[tuple[int, list[str]]]:
    """(line number, tokens) of every command in the bash blocks: continuations joined,
    comments dropped."""
    found = []
    for first, text in blocks("bash"):
        pending, at = "", first
        for offset, line in enumerate(text.splitlines()):
            if not pending:
                at = first + offset
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            tokens = shlex.split(pending + line, comments=True)
            pending = ""
            if tokens:
                found.append((at, tokens))
    return found


def dualsr_args(tokens: list[str]) -> list[str] | None:
    """The arguments of a ``dualsr`` invocation (also ``python -m dualsr``, ``torchrun ... -m
    dualsr``), or None for another program."""
    if tokens[0] == "dualsr":
        return tokens[1:]
    for i in range(len(tokens) - 1):
        if tokens[i] == "-m" and tokens[i + 1] == "dualsr":
            return tokens[i + 2 :]
    return None


def test_readme_has_the_blocks_this_test_checks() -> None:
    assert blocks("python"), "no ```python block: the test would check nothing"
    parsed = [args for _, tokens in commands() if (args := dualsr_args(tokens)) is not None]
    assert len(parsed) >= 15 and {a[0] for a in parsed} >= {"eval", "search", "prune", "train"}


@pytest.mark.parametrize(
    "first, code", [pytest.param(*b, id=f"README.md:{b[0]}") for b in blocks("python")]
)
def test_python_blocks_run_as_written(
    first: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # whatever the block writes stays here
    exec(compile("\n" * (first - 1) + code, str(README), "exec"), {"__name__": "__main__"})


def test_every_dualsr_command_line_parses(capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    bad = []
    for line, tokens in commands():
        args = dualsr_args(tokens)
        if args is None:
            continue
        if not args or args[0] not in COMMANDS:
            bad.append(f"README.md:{line}: unknown subcommand in {shlex.join(tokens)}")
            continue
        try:
            parser.parse_args(args)
        except SystemExit:
            error = capsys.readouterr().err.strip().splitlines()[-1]
            bad.append(f"README.md:{line}: {shlex.join(tokens)}\n    {error}")
    assert not bad, "\n".join(bad)


def test_named_repository_files_links_and_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(extras.get("optional-dependencies", {}))
    missing = []
    for line, tokens in commands():
        for token in tokens:
            path = token.split("#")[0]
            if path.startswith(REPO_DIRS) and not (ROOT / path).exists():
                missing.append(f"README.md:{line}: {path}")
            wanted = re.fullmatch(r"\.?\[([\w,-]+)\]", token)  # pip install -e ".[onnx,demo]"
            if wanted:
                unknown = [e for e in wanted[1].split(",") if e not in extras]
                missing += [f"README.md:{line}: pip extra {e}" for e in unknown]
        if tokens[0] == "make" and not re.search(rf"^{tokens[1]}:", makefile, re.M):
            missing.append(f"README.md:{line}: make target {tokens[1]}")
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        if not (ROOT / target).exists():
            missing.append(f"link {target}")
    assert not missing, "\n".join(missing)
