"""Official-checkpoint compatibility and dualsr's safetensors format."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dualsr
from dualsr.checkpoint import infer_arch

from .conftest import FIXTURES, tiny_model

OFFICIAL = torch.load(FIXTURES / "official_tiny_x4.pt", weights_only=True)


def _check_official_outputs(ckpt: dualsr.Checkpoint) -> None:
    with torch.no_grad():
        outs = ckpt.model.eval()(OFFICIAL["input"])
        for ours, theirs in zip(outs, OFFICIAL["outputs"], strict=True):
            assert (ours - theirs).abs().max() < 1e-3
        assert ckpt.duals is not None
        for ours, theirs in zip(ckpt.duals(outs), OFFICIAL["dual_outputs"], strict=True):
            assert (ours - theirs).abs().max() < 1e-3


def test_official_tiny_checkpoint_reproduces_outputs() -> None:
    ckpt = dualsr.load_checkpoint(FIXTURES / "official_tiny_x4.pt")
    assert ckpt.format == "official"
    arch = ckpt.model.arch
    assert (arch.scale, arch.n_feats, arch.n_blocks) == (4, 4, 2)
    _check_official_outputs(ckpt)


def test_official_state_dict_with_module_prefix(tmp_path: Path) -> None:
    path = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in OFFICIAL["state_dict"].items()}, path)
    model = dualsr.load_model(path)
    with torch.no_grad():
        out = model(OFFICIAL["input"])[-1]
    assert (out - OFFICIAL["outputs"][-1]).abs().max() < 1e-3


def test_safetensors_round_trip_keeps_outputs_and_metadata(tmp_path: Path) -> None:
    ckpt = dualsr.load_checkpoint(FIXTURES / "official_tiny_x4.pt")
    path = dualsr.save_model(
        tmp_path / "m.safetensors",
        ckpt.model,
        ckpt.duals,
        metadata={"steps": 12, "psnr": {"Set5": 30.1}},
    )
    again = dualsr.load_checkpoint(path)
    assert again.format == "dualsr"
    assert again.metadata == {"steps": 12, "psnr": {"Set5": 30.1}}
    _check_official_outputs(again)


def test_pruned_model_round_trip(tmp_path: Path) -> None:
    cfg = [3, 5, 7, 9, 11, 12, 16, 4]
    model = dualsr.DRN(4, 4, 2, channel_config=cfg).eval()
    x = torch.rand(1, 3, 6, 6) * 255
    path = dualsr.save_model(tmp_path / "p.safetensors", model)
    again = dualsr.load_model(path)
    assert again.channel_widths() == cfg
    with torch.no_grad():
        assert torch.equal(model(x)[-1], again(x)[-1])
    # the same weights as an official-style .pt: widths inferred from shapes
    torch.save(model.state_dict(), tmp_path / "p.pt")
    assert dualsr.load_model(tmp_path / "p.pt").channel_widths() == cfg


def test_infer_arch_reads_released_layout() -> None:
    model = dualsr.create_model("drn-s50-x8")
    arch = infer_arch(model.state_dict())
    assert arch.scale == 8 and arch.n_feats == 8 and arch.n_blocks == 30
    assert list(arch.channel_config) == model.channel_widths()
    assert infer_arch(dualsr.create_model("drn-l-x4").state_dict()).channel_config is None


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_file_is_reported(tmp_path: Path, suffix: str) -> None:
    src = tmp_path / f"full{suffix}"
    if suffix == ".pt":
        torch.save(tiny_model().state_dict(), src)
    else:
        dualsr.save_model(src, tiny_model())
    data = src.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(dualsr.CheckpointError, match="truncated"):
        dualsr.load_model(cut)


def test_foreign_files_are_rejected_with_what_was_found(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(dualsr.CheckpointError, match="not a DRN checkpoint.*fc.weight"):
        dualsr.load_model(other)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(dualsr.CheckpointError, match="could not be loaded"):
        dualsr.load_model(text)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(dualsr.CheckpointError, match="empty"):
        dualsr.load_model(empty)
    with pytest.raises(dualsr.CheckpointError, match="not found"):
        dualsr.load_model(tmp_path / "missing.pt")


def test_dual_checkpoint_passed_as_primal_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "dual.pt"
    torch.save(OFFICIAL["dual_state_dicts"][0], path)
    with pytest.raises(dualsr.CheckpointError, match="dual-model checkpoint"):
        dualsr.load_model(path)


def test_save_is_atomic_and_keeps_previous_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = dualsr.save_model(tmp_path / "m.safetensors", tiny_model(seed=1))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", boom)
    with pytest.raises(dualsr.DualSRError, match="no space left"):
        dualsr.save_model(path, tiny_model(seed=2))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def test_written_files_get_normal_permissions(tmp_path: Path) -> None:
    import os

    path = dualsr.save_model(tmp_path / "perm.safetensors", tiny_model())
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
