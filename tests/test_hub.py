"""Released weights by name: download, cache, verification and errors, against a local server.

Nothing here reaches the internet: a ThreadingHTTPServer on 127.0.0.1 serves files from a
temporary folder, with a handler that counts requests and can cut a transfer short.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import threading
import urllib.parse
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image

import dualsr
from dualsr import hub
from dualsr.checkpoint import load_checkpoint
from dualsr.cli import main
from dualsr.cli.models import print_releases
from dualsr.data.image_io import write_image
from dualsr.errors import CheckpointError, DownloadError
from dualsr.models.drn import count_parameters
from dualsr.models.registry import PRESETS, Preset, create_model
from dualsr.pretrained import resolve_model

from .conftest import random_image, tiny_model

TINY_PRESET = "tiny-hub-x4"
RELEASE = "tiny-x4-test"
FILE = "TinyX4.pt"


class _Handler(BaseHTTPRequestHandler):
    """GET /<name> serves <root>/<name>; names in ``truncate`` send half of the bytes."""

    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        site = self.server.site
        site.requests.append(self.path)
        name = urllib.parse.urlsplit(self.path).path.lstrip("/")
        file = site.root / name
        if not name or "/" in name or not file.is_file():
            self.send_error(404, "Not Found")
            return
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if name in site.truncate:
            data = data[: len(data) // 2]
            self.close_connection = True
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    site: Site


class Site:
    """The running local server: its folder, the requests it saw, and how to stop it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        self.truncate: set[str] = set()
        self.httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.site = self
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.running = True

    def url(self, name: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{name}"

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)
            self.running = False


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    root = tmp_path / "served"
    root.mkdir()
    server = Site(root)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("DUALSR_HOME", str(path))
    return path


def register(monkeypatch: pytest.MonkeyPatch, release: hub.Release, **changes) -> hub.Release:
    """Put ``release`` (with ``changes``) in the registry for this test."""
    release = dataclasses.replace(release, **changes)
    monkeypatch.setitem(hub.RELEASES, release.name, release)
    return release


@pytest.fixture
def release(site: Site, monkeypatch: pytest.MonkeyPatch) -> hub.Release:
    """A release of a tiny preset, served by the local server in the official .pt format."""
    monkeypatch.setitem(PRESETS, TINY_PRESET, Preset(4, 4, 1))
    torch.save(tiny_model().state_dict(), site.root / FILE)
    entry = hub.Release(
        name=RELEASE,
        url=site.url(FILE),
        preset=TINY_PRESET,
        filename=FILE,
        aliases=("TinyAlias",),
        paper={"Set5": (30.12, 0.85), "Set14": (27.5, 0.75)},
    )
    return register(monkeypatch, entry)


def cached_files(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if p.is_file()] if home.exists() else []


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------------------------
def test_download_by_name_then_load(release: hub.Release, site: Site, home: Path) -> None:
    model = resolve_model(RELEASE)
    assert isinstance(model, dualsr.DRN) and not model.training
    expected = tiny_model().state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert hub.cache_path(RELEASE) == home / "weights" / FILE
    assert cached_files(home) == [home / "weights" / FILE]  # no temporary file left over
    # aliases and any capitalisation name the same release and the same cached file
    assert resolve_model("tinyalias").channel_widths() == model.channel_widths()
    assert resolve_model("TINY-X4-TEST") is not None
    assert site.requests == ["/" + FILE]


def test_cache_hit_makes_no_request_and_works_offline(
    release: hub.Release, site: Site, capsys: pytest.CaptureFixture
) -> None:
    path = hub.fetch(RELEASE, progress=False)
    assert hub.fetch(RELEASE) == path and hub.is_cached(RELEASE)
    assert len(site.requests) == 1
    site.stop()
    assert resolve_model(RELEASE).scale == 4
    assert main(["download", RELEASE]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    # --force goes to the network again, and so fails clearly now that the server is gone
    assert main(["download", RELEASE, "--force"]) == 1
    assert path.is_file()  # the cached file survives a failed re-download


def test_cli_download_prints_the_path_and_upscale_uses_the_name(
    release: hub.Release, tmp_path: Path, home: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["download", RELEASE]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(home / "weights" / FILE) and Path(out).is_file()
    image = tmp_path / "photo.png"
    write_image(image, random_image(6, 7, seed=3))
    assert main(["upscale", str(image), "-o", str(tmp_path / "out"), "-m", RELEASE]) == 0
    with Image.open(tmp_path / "out" / "photo_x4.png") as im:
        assert im.size == (28, 24)


def test_list_and_models_show_the_releases(
    release: hub.Release, capsys: pytest.CaptureFixture
) -> None:
    assert main(["download", "--list"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith(RELEASE))
    assert TINY_PRESET in line and "30.12" in line and line.endswith("no")
    assert f"{count_parameters(create_model(TINY_PRESET)):,}" in line
    assert "drn-s-x4-paper" in out and "4,804,065" in out and "32.68" in out
    hub.fetch(RELEASE)
    print_releases()  # the table `dualsr models` appends to the presets
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith(RELEASE))
    assert "30.12" in line and "27.50" in line and line.endswith("yes")
    assert "drn-l-x4-paper" in out and "28.98" in out


def test_truncated_transfer_is_an_error_and_keeps_nothing(
    release: hub.Release, site: Site, home: Path
) -> None:
    site.truncate.add(FILE)
    size = (site.root / FILE).stat().st_size
    with pytest.raises(DownloadError) as info:
        hub.fetch(RELEASE)
    message = str(info.value)
    assert release.url in message and "truncated" in message and "try again" in message
    assert f"got {size // 2:,} of {size:,} bytes" in message
    assert cached_files(home) == []


def test_wrong_architecture_names_the_preset_and_is_not_kept(
    release: hub.Release, site: Site, home: Path
) -> None:
    torch.save(dualsr.DRN(4, 8, 1).state_dict(), site.root / FILE)
    with pytest.raises(DownloadError) as info:
        resolve_model(RELEASE)
    message = str(info.value)
    assert f"expected preset {TINY_PRESET}" in message and "n_feats 4" in message
    assert "the file holds x4, n_feats 8" in message and release.url in message
    assert cached_files(home) == []


def test_a_wrong_file_put_in_the_cache_by_hand_is_refused(release: hub.Release, site: Site) -> None:
    path = hub.cache_path(RELEASE)
    path.parent.mkdir(parents=True)
    torch.save(dualsr.DRN(4, 4, 2).state_dict(), path)
    with pytest.raises(DownloadError, match=f"expected preset {TINY_PRESET}.*--force"):
        resolve_model(RELEASE)
    assert site.requests == []


def test_sha256_is_checked_when_pinned(
    release: hub.Release, site: Site, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, release, sha256="0" * 64)
    with pytest.raises(DownloadError, match="sha256 mismatch") as info:
        hub.fetch(RELEASE)
    assert release.url in str(info.value) and cached_files(home) == []
    digest = hashlib.sha256((site.root / FILE).read_bytes()).hexdigest()
    register(monkeypatch, release, sha256=digest.upper())
    assert hub.fetch(RELEASE).is_file()


def test_offline_gives_the_url_and_local_file_advice(
    release: hub.Release, site: Site, home: Path, capsys: pytest.CaptureFixture
) -> None:
    site.stop()
    assert main(["download", RELEASE]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert release.url in err and "--model /path/to/FILE.pt" in err
    assert str(home / "weights" / FILE) in err
    # the same through a --model option, and for a port nothing listens on
    image = home.parent / "in.png"
    write_image(image, random_image(4, 4))
    assert main(["upscale", str(image), "-o", str(home.parent / "o"), "-m", RELEASE]) == 1
    assert release.url in capsys.readouterr().err
    url = f"http://127.0.0.1:{closed_port()}/model.pt"
    with pytest.raises(DownloadError, match="could not download .*model.pt.*offline"):
        hub.fetch(url)
    assert cached_files(home) == []


def test_http_error_names_the_status(site: Site, home: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        hub.fetch(site.url("missing.pt"))
    assert site.url("missing.pt") in str(info.value) and cached_files(home) == []


def test_a_pickled_module_is_refused_in_one_line(site: Site, home: Path, tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3))
    torch.save(module, site.root / "whole_module.pt")
    url = site.url("whole_module.pt")
    with pytest.raises(CheckpointError) as info:
        resolve_model(url)
    message = str(info.value)
    assert "\n" not in message and message.startswith(url)
    assert "pickled Python object" in message and "never unpickles code" in message
    assert "docs/models.md" in message and "not kept" in message
    assert cached_files(home) == []
    # the same message for a local file
    local = tmp_path / "local_module.pt"
    torch.save(module, local)
    with pytest.raises(CheckpointError, match="pickled Python object .* see docs/models.md$"):
        load_checkpoint(local)
    # a corrupt file is not mistaken for one
    local.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be loaded"):
        load_checkpoint(local)


def test_an_arbitrary_url_downloads_to_its_own_folder(site: Site, home: Path) -> None:
    torch.save(tiny_model(seed=1).state_dict(), site.root / "some%20model.pt")
    url = site.url("some%20model.pt")
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    path = hub.fetch(url, progress=False)
    assert path == home / "weights" / f"url-{digest}" / "some_model.pt"
    assert resolve_model(url).scale == 4 and len(site.requests) == 1


def test_an_interrupted_download_leaves_nothing(
    release: hub.Release, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(hub, "_verify", interrupt)
    with pytest.raises(KeyboardInterrupt):
        hub.fetch(RELEASE)
    with pytest.raises(KeyboardInterrupt):
        hub.fetch(release.url + "?copy=1")  # an arbitrary URL: its url-<hash> folder goes too
    assert cached_files(home) == [] and list((home / "weights").iterdir()) == []


def test_a_preset_without_weights_points_to_its_release(release: hub.Release) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolve_model(TINY_PRESET, random_weights=True)
    assert any(f"released weights: --model {RELEASE}" in str(w.message) for w in caught)
    with pytest.raises(CheckpointError, match=f"no trained weights.*--model {RELEASE}"):
        resolve_model(TINY_PRESET)  # without random_weights: refused, naming the release


def test_unknown_names_and_presets_get_advice(
    release: hub.Release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert main(["download", "no-such-release"]) == 1
    assert "unknown release 'no-such-release'" in capsys.readouterr().err
    assert main(["download", TINY_PRESET]) == 1
    assert f"dualsr download {RELEASE}" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="--model drn-s-x4-paper"):
        resolve_model("DRNS4x.pt")  # the release's file name, not downloaded here


# the papers' parameter counts (DRN-S/L: the DRN paper; DRN-Sxx: built from the released
# searched configurations), independent of the presets' code
PAPER_PARAMS = {
    "drn-s-x4": 4_804_065,
    "drn-l-x4": 9_825_893,
    "drn-s30-x4": 3_116_637,
    "drn-s50-x4": 2_267_417,
    "drn-s70-x4": 1_427_545,
    "drn-s-x8": 5_403_000,
    "drn-l-x8": 10_004_018,
    "drn-s30-x8": 3_490_832,
    "drn-s50-x8": 2_548_420,
    "drn-s70-x8": 1_572_288,
}


def test_the_packaged_registry_matches_the_presets() -> None:
    registry = hub.load_registry()
    assert set(registry) == {f"{preset}-paper" for preset in PAPER_PARAMS}
    for release in registry.values():
        assert release.url.startswith("https://github.com/guoyongcs/")
        assert release.url.endswith("/" + release.filename) and release.sha256 is None
        assert release.params == PAPER_PARAMS[release.preset]
        assert count_parameters(create_model(release.preset)) == release.params, release.name
        assert hub.find_release(release.filename.removesuffix(".pt")).name == release.name
        assert set(release.paper) <= set(hub.PAPER_DATASETS) and "Set5" in release.paper
    full = {r.name for r in registry.values() if set(r.paper) == set(hub.PAPER_DATASETS)}
    assert full == {"drn-s-x4-paper", "drn-l-x4-paper", "drn-s30-x4-paper"}  # x4, all five sets
    assert registry["drn-s70-x8-paper"].paper == {"Set5": (27.16, 0.783)}
    assert registry["drn-l-x8-paper"].url.endswith("/DRN/releases/download/v0.1/DRNL8x.pt")
    assert hub.find_release("drns4x").name == "drn-s-x4-paper"
    assert hub.find_release("DRNS_4x_Prune_30").name == "drn-s30-x4-paper"
    assert hub.find_release(registry["drn-l-x4-paper"].url).name == "drn-l-x4-paper"
    assert hub.cache_path("DRNL4x").name == "DRNL4x.pt" and hub.find_release("drn-s-x4") is None
    assert registry["drn-l-x4-paper"].paper["Urban100"] == (27.03, 0.813)
