"""Data set names -> folders: ``--data Set5`` finds ``Set5/`` in a configurable data root.

A ``--data`` value (and a training config's ``data.train`` / ``val.folders`` entry) is a folder
path or a data set name. Resolution, in order:

1. A path that exists is used as given: a real folder always wins over a name.
2. A relative value (``Set5``, ``set5``, ``benchmark/Set5``) is looked up in the data root(s):
   ``--data-root DIR`` when given, otherwise ``$DUALSR_DATA`` (several roots separated by
   ``os.pathsep``, searched in order). The command-line option wins over the variable. In a
   root, ``NAME`` and ``benchmark/NAME`` are tried (the layout of docs/training.md), a single
   name matches case-insensitively, ``B100`` and ``BSD100`` name the same set, and a set whose
   images live in a ``NAME_train_HR`` or ``NAME_HR`` subfolder (DIV2K, Flickr2K) resolves to it.
3. Otherwise :func:`resolve_data_dir` raises one line naming the value, the roots it searched
   and how to set them.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import DualSRError
from .image_io import list_images

#: The environment variable holding the data root(s).
DATA_ENV = "DUALSR_DATA"
#: Data sets the project uses or reports on (benchmarks first, then training sets).
KNOWN_DATASETS = (
    "Set5",
    "Set14",
    "BSD100",
    "Urban100",
    "Manga109",
    "General100",
    "T91",
    "BSD200",
    "DIV2K",
    "Flickr2K",
)
#: Other spellings of a data set's folder name.
ALIASES = {"b100": ("BSD100",), "bsd100": ("B100",)}
#: Subfolders of a root tried before the root itself holds no match (docs/training.md layout).
_ROOT_SUBFOLDERS = ("", "benchmark")


def data_roots(root: str | Path | None = None) -> list[Path]:
    """The data roots: ``[root]`` when given (``--data-root``), else those in ``$DUALSR_DATA``."""
    if root is not None and str(root):
        return [Path(root).expanduser()]
    value = os.environ.get(DATA_ENV, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def find_dataset(name: str | Path, root: str | Path | None = None) -> Path | None:
    """The folder that data set ``name`` (a relative path such as ``Set5``) names in the data
    roots, or None; absolute paths and an unset root give None."""
    spec = Path(str(name)).expanduser()
    if spec.is_absolute() or not str(name).strip():
        return None
    for base in data_roots(root):
        for sub in _ROOT_SUBFOLDERS:
            folder = _match(base / sub if sub else base, spec)
            if folder is not None:
                return _images_folder(folder)
    return None


def resolve_data_dir(
    spec: str | Path,
    root: str | Path | None = None,
    option: str = "--data",
    root_option: str | None = "--data-root",
) -> Path:
    """The folder ``spec`` names: an existing path as given, else a data set in the data roots.

    Raises :class:`~dualsr.errors.DualSRError` (one line: the value, where it looked, how to set
    the root) when neither exists. ``option`` names the value in the message; ``root_option`` is
    the command's root option (None where there is none, e.g. a training config).
    """
    path = Path(str(spec)).expanduser()
    if path.exists():
        return path
    found = find_dataset(spec, root)
    if found is not None:
        return found
    raise DualSRError(_not_found(str(spec), root, option, root_option))


def resolve_data_dirs(
    specs: Sequence[str | Path] | None,
    root: str | Path | None = None,
    option: str = "--data",
    root_option: str | None = "--data-root",
) -> list[str] | None:
    """:func:`resolve_data_dir` of every value (as strings); None stays None. Every value is
    checked before any work starts."""
    if specs is None:
        return None
    return [str(resolve_data_dir(s, root, option, root_option)) for s in specs]


def add_data_root_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--data-root DIR``: where data set names (``--data Set5``) are looked up."""
    parser.add_argument(
        "--data-root",
        metavar="DIR",
        default=None,
        help=f"folder holding the data sets, so that --data takes names such as Set5 or T91 "
        f"(default: ${DATA_ENV}; this option wins over it; an existing path always wins over a "
        "name)",
    )


def _match(base: Path, spec: Path) -> Path | None:
    """``base / spec`` if it is a folder; for a single name also its aliases and any
    case-insensitive match among ``base``'s subfolders."""
    if (base / spec).is_dir():
        return base / spec
    if len(spec.parts) != 1 or not base.is_dir():
        return None
    wanted = {spec.name.casefold(), *(a.casefold() for a in ALIASES.get(spec.name.casefold(), ()))}
    for child in sorted(base.iterdir()):
        if child.name.casefold() in wanted and child.is_dir():
            return child
    return None


def _images_folder(folder: Path) -> Path:
    """``folder``, or its ``NAME_train_HR`` / ``NAME_HR`` subfolder when the images live there
    (DIV2K, Flickr2K). An ``HR/`` subfolder is left to the readers, which keep the set's name."""
    if list_images(folder) or (folder / "HR").is_dir():
        return folder
    for sub in (f"{folder.name}_train_HR", f"{folder.name}_HR"):
        if (folder / sub).is_dir():
            return folder / sub
    return folder


def _not_found(spec: str, root: str | Path | None, option: str, root_option: str | None) -> str:
    """The one-line error for a value that is neither a folder nor a data set in the roots."""
    roots = data_roots(root)
    how = f"pass {root_option} DIR or set {DATA_ENV}=DIR" if root_option else f"set {DATA_ENV}=DIR"
    if Path(spec).expanduser().is_absolute():
        return f"{option} {spec}: data folder not found"
    if not roots:
        return (
            f"{option} {spec}: no such folder here, and no data root is set to look it up as a "
            f"data set name; {how} (DIR holding {Path(spec).name}/), or give the folder's path"
        )
    source = root_option if root is not None and str(root) else f"${DATA_ENV}"
    where = ", ".join(str(r) if r.is_dir() else f"{r} (missing)" for r in roots)
    hint = _suggestion(spec, roots)
    return (
        f"{option} {spec}: no such folder here, nor in the data root {where} (from {source})"
        f"{hint}; put it there, {how} to the folder that holds it, or give the folder's path"
    )


def _suggestion(spec: str, roots: list[Path]) -> str:
    """``" (did you mean Set5?)"`` for a near miss among the known names and the roots' folders."""
    names = set(KNOWN_DATASETS)
    for base in roots:
        for sub in _ROOT_SUBFOLDERS:
            folder = base / sub if sub else base
            if folder.is_dir():
                names.update(c.name for c in folder.iterdir() if c.is_dir())
    close = difflib.get_close_matches(Path(spec).name, sorted(names), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


__all__ = [
    "ALIASES",
    "DATA_ENV",
    "KNOWN_DATASETS",
    "add_data_root_option",
    "data_roots",
    "find_dataset",
    "resolve_data_dir",
    "resolve_data_dirs",
]
