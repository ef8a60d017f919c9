"""Fetching released weights into a local cache, by release name or by URL.

The releases are data (``dualsr/weights/releases.json``): a name, its aliases, the URL, the
preset whose architecture the file must have, an optional sha256, and the paper's scores.
Downloads land in ``$DUALSR_HOME/weights`` (default ``~/.cache/dualsr/weights``); a file from an
arbitrary URL goes to ``weights/url-<first 12 hex of sha256(url)>/<file name>``.

A download is written to a temporary file beside its destination and renamed only after it has
been checked (byte count against Content-Length, the pinned sha256, a ``weights_only`` load, and
for a release the preset's exact architecture), so the final name only ever holds a complete,
verified file. A file already in the cache is used without touching the network.

Why not ``torch.hub.download_url_to_file``: it checks a hash prefix only, and none of the
releases has a pinned hash (``sha256`` is null in ``releases.json``: the files could not be
downloaded where the list was written); the checks that protect users without one are the byte
count, the ``weights_only`` load and the architecture check, which this module does, with its
error messages and atomic rename tested against a local server. Weights shipped inside the
package are pinned (size and sha256 in ``weights/shipped.json``, :mod:`dualsr.pretrained`).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError, DownloadError
from .fileio import atomic_write

if TYPE_CHECKING:  # PyTorch is imported by the functions that load models, not by this module
    from .models.drn import DRN

log = logging.getLogger(__name__)

HOME_ENV = "DUALSR_HOME"
DEFAULT_HOME = "~/.cache/dualsr"
TIMEOUT_S = 30.0
CHUNK = 1 << 20
PAPER_DATASETS = ("Set5", "Set14", "BSD100", "Urban100", "Manga109")


@dataclass(frozen=True)
class Release:
    """One released checkpoint: where it is, what it must contain, what the paper measured."""

    name: str
    url: str
    preset: str
    filename: str
    sha256: str | None = None
    aliases: tuple[str, ...] = ()
    description: str = ""
    params: int | None = None  # the preset's parameter count, as documented
    paper: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # set -> (PSNR, SSIM)


def _parse_release(name: str, entry: Mapping[str, Any]) -> Release:
    paper = {
        str(k): (float(v["psnr"]), float(v["ssim"])) for k, v in (entry.get("paper") or {}).items()
    }
    return Release(
        name=name,
        url=str(entry["url"]),
        preset=str(entry["preset"]),
        filename=str(entry["filename"]),
        sha256=(str(entry["sha256"]).lower() if entry.get("sha256") else None),
        aliases=tuple(str(a) for a in entry.get("aliases") or ()),
        description=str(entry.get("description", "")),
        params=int(entry["params"]) if entry.get("params") is not None else None,
        paper=paper,
    )


def load_registry(text: str | None = None) -> dict[str, Release]:
    """Parse the releases file (the packaged ``releases.json`` unless ``text`` is given)."""
    if text is None:
        text = resources.files("dualsr").joinpath("weights", "releases.json").read_text()
    data = json.loads(text)
    return {name: _parse_release(name, entry) for name, entry in data["releases"].items()}


# name -> Release, loaded once at import; tests and plugins may add entries
RELEASES: dict[str, Release] = load_registry()


# ----------------------------------------------------------------------------------------------
# Names, URLs, cache paths
# ----------------------------------------------------------------------------------------------
def is_url(spec: str) -> bool:
    """Whether ``spec`` is an http(s) URL."""
    return spec.strip().lower().startswith(("http://", "https://"))


def find_release(spec: str) -> Release | None:
    """The release named ``spec`` (case-insensitive, aliases too) or whose URL it is; else None."""
    key = spec.strip().lower()
    for release in RELEASES.values():
        if key == release.name.lower() or key in (a.lower() for a in release.aliases):
            return release
    if is_url(spec):
        for release in RELEASES.values():
            if spec.strip() == release.url:
                return release
    return None


def releases_for_preset(preset: str) -> list[Release]:
    """The releases whose weights are preset ``preset``'s architecture."""
    return [r for r in RELEASES.values() if r.preset.lower() == preset.lower()]


def get_release(name: str) -> Release:
    """Look up a release by name or alias; DownloadError lists the known ones."""
    release = find_release(name)
    if release is None:
        raise DownloadError(
            f"unknown release {name!r}: choose from {', '.join(RELEASES) or '(none)'} "
            "(see `dualsr download --list`), or give an http(s) URL"
        )
    return release


def dualsr_home() -> Path:
    """The cache root: ``$DUALSR_HOME``, default ``~/.cache/dualsr``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def weights_dir() -> Path:
    """Where downloaded weights live: ``<home>/weights``."""
    return dualsr_home() / "weights"


def _url_filename(url: str) -> str:
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "download.pt"


def cache_path(name_or_url: str) -> Path:
    """The path the weights of a release name/alias or an http(s) URL have in the cache."""
    release = find_release(name_or_url)
    if release is not None:
        return weights_dir() / release.filename
    if not is_url(name_or_url):
        get_release(name_or_url)  # raises, listing the releases
    url = name_or_url.strip()
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
    return weights_dir() / f"url-{digest}" / _url_filename(url)


def is_cached(name_or_url: str) -> bool:
    """Whether the weights of a release name or URL are already in the cache."""
    return cache_path(name_or_url).is_file()


# ----------------------------------------------------------------------------------------------
# Fetching
# ----------------------------------------------------------------------------------------------
def fetch(name_or_url: str, force: bool = False, progress: bool = True) -> Path:
    """The local path of a release (name or alias) or of an http(s) URL, downloading if needed.

    A cached file is returned without any network access (``force=True`` downloads again).
    A download is checked before it is kept: the byte count against Content-Length, the sha256
    when the release pins one, a ``weights_only`` load as a DRN checkpoint, and for a release
    the exact architecture and parameter count of its preset. Any failure raises DownloadError
    (or CheckpointError for a file that is not a DRN checkpoint) and leaves nothing in the cache.
    """
    release = find_release(name_or_url)
    dest = cache_path(name_or_url)
    if dest.is_file() and not force:
        return dest
    url = release.url if release is not None else name_or_url.strip()
    if release is not None:
        log.info("downloading %s from %s", release.name, url)
    else:
        log.info("downloading %s", url)

    def write(tmp: Path) -> None:
        _download(url, tmp, dest, progress)
        _verify(tmp, url, dest, release)

    try:
        atomic_write(dest, write)
    except BaseException:
        if dest.parent.name.startswith("url-"):  # leave no empty folder behind
            with contextlib.suppress(OSError):
                dest.parent.rmdir()
        raise
    log.info("saved %s", dest)
    return dest


def _local_file_advice(dest: Path) -> str:
    return (
        f"or download the file another way and pass --model /path/to/FILE.pt, or put it at {dest}"
    )


def _download(url: str, tmp: Path, dest: Path, progress: bool) -> None:
    """Stream ``url`` into ``tmp``; DownloadError on any network failure or short transfer."""
    from . import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"dualsr/{__version__}"})
    got = 0
    expected: int | None = None
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.strip().isdigit() else None
            with open(tmp, "wb") as out, _progress_bar(expected, dest.name, progress) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"could not download {url}: HTTP {exc.code} {exc.reason}; check the URL, "
            f"{_local_file_advice(dest)}"
        ) from None
    except urllib.error.URLError as exc:
        raise DownloadError(
            f"could not download {url} ({_reason(exc.reason)}): you may be offline; check the "
            f"connection and try again, {_local_file_advice(dest)}"
        ) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise DownloadError(
            f"could not download {url} ({_reason(exc)}) after {got:,} bytes; check the "
            f"connection and try again, {_local_file_advice(dest)}"
        ) from None
    if expected is not None and got != expected:
        raise DownloadError(
            f"download of {url} was truncated: got {got:,} of {expected:,} bytes; try again "
            "(nothing was kept)"
        )


def _reason(reason: object) -> str:
    if isinstance(reason, BaseException):
        text = str(reason) or type(reason).__name__
        return f"{type(reason).__name__}: {text}" if type(reason).__name__ not in text else text
    return str(reason)


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        """Nothing to show."""


def _progress_bar(total: int | None, name: str, progress: bool) -> Any:
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    # disable=None: shown on a terminal only (stderr), silent in logs and pipes
    return tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024, disable=None)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _verify(tmp: Path, url: str, dest: Path, release: Release | None) -> None:
    """Check a complete download before it is renamed into the cache."""
    if release is not None and release.sha256:
        actual = _sha256(tmp)
        if actual != release.sha256.lower():
            raise DownloadError(
                f"{url}: sha256 mismatch (expected {release.sha256}, got {actual}); the file was "
                "not kept: try again, and report it if it persists"
            )
    try:
        from .checkpoint import load_checkpoint

        model = load_checkpoint(tmp).model
    except CheckpointError as exc:
        # name the URL, not the temporary file (which is removed)
        message = str(exc).replace(str(tmp), url)
        raise type(exc)(f"{message} (the download was not kept)") from None
    if release is not None:
        check_architecture(model, release, url, hint="the download was not kept")


def describe_model(model: DRN) -> str:
    """A short description of a DRN's architecture: scale, widths, blocks, parameter count."""
    from .models.drn import count_parameters

    arch = model.arch
    pruned = ", pruned widths" if arch.channel_config is not None else ""
    return (
        f"x{arch.scale}, n_feats {arch.n_feats}, {arch.n_blocks} RCABs{pruned}, "
        f"{count_parameters(model):,} params"
    )


def check_architecture(model: DRN, release: Release, source: str, hint: str = "") -> None:
    """Raise DownloadError unless ``model`` has exactly the architecture of the release's preset.

    Compared: scale, parameter count and every searched layer's width
    (``model.channel_widths()``) against ``create_model(release.preset)``.
    """
    from .models.drn import count_parameters
    from .models.registry import create_model

    expected = create_model(release.preset)
    same = (
        model.scale == expected.scale
        and count_parameters(model) == count_parameters(expected)
        and model.channel_widths() == expected.channel_widths()
    )
    if not same:
        raise DownloadError(
            f"{source} does not hold release {release.name}: expected preset {release.preset} "
            f"({describe_model(expected)}), the file holds {describe_model(model)}"
            + (f"; {hint}" if hint else "")
        )
