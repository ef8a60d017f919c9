"""The weight files that ship in ``dualsr/weights``: each is the network its preset names, runs,
and carries measured scores and a recipe without machine paths; each default of ``dualsr upscale``
that ships is a model of its own scale."""

from __future__ import annotations

import json
import re

import pytest
import torch

from dualsr import count_parameters, create_model, load_model, pretrained
from dualsr.models.registry import PRESETS

SHIPPED = sorted(name for name in PRESETS if pretrained.shipped_weights(name) is not None)
LOCAL_PATH = re.compile(r"(^|[\s\"'=\[,])(/|~/|[A-Za-z]:\\)")


def test_the_package_ships_weights() -> None:
    assert {"drn-t-x4", "drn-t50-x4", "drn-t-x8"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_are_their_preset(name: str) -> None:
    model = load_model(pretrained.shipped_weights(name))
    reference = create_model(name)
    assert model.scale == reference.scale
    assert model.channel_widths() == reference.channel_widths()
    assert count_parameters(model) == count_parameters(reference)
    lr = torch.rand(1, 3, 6, 5) * 255
    with torch.no_grad():
        sr = model(lr)
    out = sr[-1] if isinstance(sr, (list, tuple)) else sr
    assert out.shape == (1, 3, 6 * model.scale, 5 * model.scale)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_provenance_is_measured_and_portable(name: str) -> None:
    prov = pretrained.shipped_provenance(name)
    scores = prov["eval"]
    assert set(scores) >= {"Set5", "Set14", "BSD100"}
    assert all(15.0 < scores[d]["psnr"] < 45.0 for d in scores)
    assert prov["speed"]["ms"] > 0 and prov["speed"]["output"] == "1280x720"
    if "cost" in prov:  # training runs record it; a model repackaged from an old file may not
        assert prov["cost"]["steps"] > 0 and prov["cost"]["cpu_hours"] > 0
    text = json.dumps(prov.get("recipe", {}))
    assert not LOCAL_PATH.search(text), f"{name}: the recipe names a local path: {text}"


@pytest.mark.parametrize("scale", sorted(pretrained.DEFAULT_PRESETS))
def test_shipped_defaults_match_their_scale(scale: int) -> None:
    name = pretrained.default_model_name(scale)
    if name is None:
        pytest.skip(f"no x{scale} default ships")
    assert PRESETS[name].scale == scale


def test_the_path_check_flags_machine_paths() -> None:
    flagged = [{"dir": "/root/runs"}, {"t": ["~/data/T91"]}, {"c": "C:\\data"}]
    assert all(LOCAL_PATH.search(json.dumps(r)) for r in flagged)
    assert not LOCAL_PATH.search(json.dumps({"train": ["T91", "BSD200"], "lr": 0.001}))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_file_matches_its_recorded_size_and_sha256(name: str) -> None:
    record = pretrained.shipped_manifest()[name]
    assert pretrained.file_record(pretrained.shipped_weights(name)) == record
    assert record["bytes"] > 100_000 and len(record["sha256"]) == 64


def test_the_manifest_lists_only_shipped_files() -> None:
    assert set(pretrained.shipped_manifest()) == set(SHIPPED)


def _tampered(tmp_path, monkeypatch: pytest.MonkeyPatch, edit) -> None:  # noqa: ANN001
    """Point drn-t-x4's shipped path at a copy changed by ``edit(bytes) -> bytes``."""
    source = pretrained.shipped_weights("drn-t-x4")
    copy = tmp_path / "drn-t-x4.safetensors"
    copy.write_bytes(edit(source.read_bytes()))
    monkeypatch.setattr(pretrained, "shipped_weights", lambda name: copy)


def test_a_damaged_shipped_file_is_refused_with_the_fix(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    def flip_last_byte(data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1])

    _tampered(tmp_path, monkeypatch, flip_last_byte)
    with pytest.raises(pretrained.CheckpointError, match="sha256 .*reinstall dualsr"):
        pretrained.resolve_model("drn-t-x4")
    _tampered(tmp_path, monkeypatch, lambda data: data[:-10])
    with pytest.raises(pretrained.CheckpointError, match="damaged or replaced \\(bytes"):
        pretrained.resolve_model("drn-t-x4")


def test_shipped_weights_of_another_architecture_are_refused(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    other = pretrained.shipped_weights("drn-t50-x4")  # a valid file, recorded, but pruned
    monkeypatch.setattr(pretrained, "shipped_weights", lambda name: other)
    monkeypatch.setattr(
        pretrained,
        "shipped_manifest",
        lambda: {"drn-t-x4": pretrained.file_record(other)},
    )
    with pytest.raises(pretrained.CheckpointError, match="not preset drn-t-x4's architecture"):
        pretrained.resolve_model("drn-t-x4")
