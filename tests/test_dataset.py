"""Training data: cached pyramids, aligned patches, augmentation, keyed sampling; data set
names resolved in the data root (--data Set5)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualsr.cli import main
from dualsr.data import dataset as ds
from dualsr.data.dataset import (
    PatchDataset,
    PatchParams,
    StepBatchSampler,
    build_store,
    find_images,
    make_loader,
)
from dualsr.data.image_io import write_image
from dualsr.data.imresize import imresize
from dualsr.data.locate import DATA_ENV, find_dataset, resolve_data_dir, resolve_data_dirs
from dualsr.errors import ConfigError, DualSRError

from .conftest import random_image


def write_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[Path]:
    """Write one random PNG per (height, width) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        paths.append(write_image(folder / f"img{i:02d}.png", random_image(h, w, seed=seed + i)))
    return paths


def make_dataset(folder: Path, scale: int = 4, patch: int = 16, augment: bool = False, **kw):
    store = build_store(find_images(folder, None, scale), scale, patch_size=patch, cache_dir=None)
    return PatchDataset(store, scale, patch, augment, **kw)


def test_patch_equals_crop_of_whole_image_pyramid(tmp_path: Path) -> None:
    (path,) = write_images(tmp_path / "hr", [(42, 53)])  # cropped to 40 x 48 for x4
    data = make_dataset(tmp_path / "hr", scale=4, patch=16)
    hr = np.asarray(Image.open(path).convert("RGB"))[:40, :48]
    whole = [imresize(hr, output_shape=(40 * f // 4, 48 * f // 4)) for f in (1, 2)] + [hr]
    for position in range(6):
        key = (0, 7, 0, position)
        p = data.patch_params(key)
        levels = data[key]
        assert [t.shape for t in levels] == [(3, 4, 4), (3, 8, 8), (3, 16, 16)]
        for lvl, (patch, full) in enumerate(zip(levels, whole, strict=True)):
            f = 2**lvl
            expected = full[p.y * f : (p.y + 4) * f, p.x * f : (p.x + 4) * f]
            assert patch.dtype == np.uint8
            assert np.array_equal(patch.transpose(1, 2, 0), expected)


def test_augmentation_is_identical_at_every_level(tmp_path: Path) -> None:
    write_images(tmp_path / "hr", [(32, 32)])
    plain = make_dataset(tmp_path / "hr", scale=4, patch=16, augment=False)
    aug = make_dataset(tmp_path / "hr", scale=4, patch=16, augment=True)
    seen = set()
    for position in range(40):
        key = (0, 1, 2, position)
        p = aug.patch_params(key)
        seen.add((p.hflip, p.vflip, p.transpose))
        unflipped = PatchParams(p.y, p.x, False, False, False)
        for got, ref in zip(aug.extract(0, p), plain.extract(0, unflipped), strict=True):
            assert np.array_equal(got, ds.augment(ref, p))
    assert len(seen) == 8  # all flips/transposes occur


def test_div2k_layout_reads_premade_lr(tmp_path: Path) -> None:
    write_images(tmp_path / "DIV2K_train_HR", [(32, 40)])
    (tmp_path / "DIV2K_train_HR" / "img00.png").rename(tmp_path / "DIV2K_train_HR" / "0001.png")
    lr_root = tmp_path / "DIV2K_train_LR_bicubic"
    premade = {k: random_image(32 // k, 40 // k, seed=k) for k in (2, 4)}
    for k, img in premade.items():
        (lr_root / f"X{k}").mkdir(parents=True)
        write_image(lr_root / f"X{k}" / f"0001x{k}.png", img)
    records = find_images(tmp_path / "DIV2K_train_HR", lr_root, 4)
    levels = ds.read_pyramid(records[0], 4)
    assert np.array_equal(levels[0], premade[4]) and np.array_equal(levels[1], premade[2])
    assert levels[2].shape == (32, 40, 3)
    with pytest.raises(ConfigError, match="X8"):
        find_images(tmp_path / "DIV2K_train_HR", lr_root, 8)


def test_unreadable_and_small_images_are_skipped_with_one_warning(tmp_path: Path) -> None:
    write_images(tmp_path / "hr", [(24, 24), (8, 40)])
    (tmp_path / "hr" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning) as record:
        data = make_dataset(tmp_path / "hr", scale=4, patch=16)
    messages = [str(w.message) for w in record]
    assert any("unreadable" in m and "broken.png" in m for m in messages)
    assert any("smaller than the 16-pixel" in m and "img01.png" in m for m in messages)
    assert len(data) == 1


def test_no_usable_image_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "a.png").write_bytes(b"nope")
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="no usable training images"):
        make_dataset(tmp_path / "hr")
    with pytest.raises(ConfigError, match="not found"):
        find_images(tmp_path / "missing", None, 4)
    write_images(tmp_path / "ok", [(32, 32)])
    with pytest.raises(ConfigError, match="multiple of the scale"):
        make_dataset(tmp_path / "ok", scale=4, patch=18)


def test_disk_cache_is_reused_and_keyed_by_mtime(tmp_path: Path, monkeypatch) -> None:
    (path,) = write_images(tmp_path / "hr", [(16, 20)])
    cache = tmp_path / "cache"
    records = find_images(tmp_path / "hr", None, 4)
    first = build_store(records, 4, patch_size=8, cache_dir=cache)
    assert len(list(cache.rglob("*.npy"))) == 3
    monkeypatch.setattr(ds, "read_pyramid", lambda *a: pytest.fail("decoded again"))
    again = build_store(records, 4, patch_size=8, cache_dir=cache)
    for a, b in zip(first.levels(0), again.levels(0), strict=True):
        assert isinstance(b, np.memmap) and np.array_equal(a, b)
    monkeypatch.undo()
    os.utime(path, ns=(1, 1))  # a changed file is a new cache entry
    build_store(find_images(tmp_path / "hr", None, 4), 4, patch_size=8, cache_dir=cache)
    assert len(list(cache.rglob("*.npy"))) == 6


def test_sampler_batches_depend_only_on_seed_and_step() -> None:
    full = StepBatchSampler(5, 3, seed=1, repeat=2)
    batches = [b for _, b in zip(range(9), full, strict=False)]
    resumed = StepBatchSampler(5, 3, seed=1, repeat=2, start_step=4)
    assert [b for _, b in zip(range(5), resumed, strict=False)] == batches[4:]
    assert full.steps_per_epoch == 3  # 10 samples per epoch, batches of 3
    epoch0 = [k[0] for b in batches[:3] for k in b]
    counts = np.bincount(epoch0, minlength=5)  # each image twice per epoch (repeat=2)
    assert counts.max() <= 2 and (counts > 0).all()
    other_seed = StepBatchSampler(5, 3, seed=2, repeat=2)
    assert other_seed.batch(0) != full.batch(0)
    # two processes split the global batch of one process with the doubled batch size
    ranks = [StepBatchSampler(5, 2, seed=1, rank=r, world_size=2).batch(3) for r in (0, 1)]
    single = StepBatchSampler(5, 4, seed=1).batch(3)
    assert sorted(ranks[0] + ranks[1]) == sorted(single)


def test_loader_with_workers_gives_the_same_batches(tmp_path: Path) -> None:
    write_images(tmp_path / "hr", [(24, 24), (32, 28), (20, 36)])
    data = make_dataset(tmp_path / "hr", scale=4, patch=16, augment=True)

    def take(workers: int, start: int) -> list[list[torch.Tensor]]:
        sampler = StepBatchSampler(len(data), 2, seed=3, start_step=start)
        loader = make_loader(data, sampler, workers=workers)
        return [b for _, b in zip(range(3), loader, strict=False)]

    plain, parallel, resumed = take(0, 0), take(2, 0), take(0, 1)
    for a, b in zip(plain, parallel, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(torch.equal(x, y) for x, y in zip(plain[1], resumed[0], strict=True))
    assert [t.shape for t in plain[0]] == [(2, 3, 4, 4), (2, 3, 8, 8), (2, 3, 16, 16)]


# ----------------------------------------------------------------------------------------------
# Data set names (dualsr.data.locate): --data Set5 resolved in --data-root / $DUALSR_DATA
# ----------------------------------------------------------------------------------------------
def make_root(root: Path, *names: str) -> Path:
    """A data root holding one tiny image in ``NAME/HR/`` for each name."""
    for name in names:
        write_images(root / name / "HR", [(16, 16)])
    return root


@pytest.fixture
def no_data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No $DUALSR_DATA, and an empty current directory."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return monkeypatch


def test_names_resolve_in_the_env_root_and_the_option_wins(tmp_path: Path, no_data_env) -> None:
    env_root = make_root(tmp_path / "env", "Set5", "T91")
    opt_root = make_root(tmp_path / "opt", "Set5")
    no_data_env.setenv(DATA_ENV, str(env_root))
    assert resolve_data_dir("Set5") == env_root / "Set5"
    assert resolve_data_dir("Set5", opt_root) == opt_root / "Set5"  # --data-root wins
    assert resolve_data_dirs(["T91", "Set5"]) == [str(env_root / "T91"), str(env_root / "Set5")]
    assert resolve_data_dirs(None) is None
    # several roots in the variable, searched in order
    no_data_env.setenv(DATA_ENV, os.pathsep.join([str(opt_root), str(env_root)]))
    assert resolve_data_dir("Set5") == opt_root / "Set5"
    assert resolve_data_dir("T91") == env_root / "T91"


def test_an_existing_path_wins_over_a_name(tmp_path: Path, no_data_env) -> None:
    root = make_root(tmp_path / "root", "Set5")
    write_images(Path("Set5"), [(12, 12)])  # ./Set5 in the current directory
    assert resolve_data_dir("Set5", root) == Path("Set5")
    assert resolve_data_dir(root / "Set5") == root / "Set5"  # absolute path, no root needed


def test_case_aliases_benchmark_and_div2k_layouts(tmp_path: Path, no_data_env) -> None:
    root = make_root(tmp_path / "data", "BSD100", "benchmark/Urban100")
    write_images(root / "DIV2K" / "DIV2K_train_HR", [(12, 12)])
    write_images(root / "DIV2K" / "DIV2K_train_LR_bicubic" / "X4", [(3, 3)])
    assert resolve_data_dir("bsd100", root) == root / "BSD100"
    assert resolve_data_dir("B100", root) == root / "BSD100"  # the other common spelling
    assert resolve_data_dir("Urban100", root) == root / "benchmark" / "Urban100"
    assert resolve_data_dir("DIV2K", root) == root / "DIV2K" / "DIV2K_train_HR"
    assert find_dataset("Manga109", root) is None


def test_missing_names_are_one_clear_line(tmp_path: Path, no_data_env) -> None:
    with pytest.raises(DualSRError) as exc:
        resolve_data_dir("Set5")
    msg = str(exc.value)
    assert "--data Set5" in msg and "no data root is set" in msg
    assert "--data-root DIR" in msg and DATA_ENV in msg and "\n" not in msg
    root = make_root(tmp_path / "root", "Set5")
    no_data_env.setenv(DATA_ENV, str(root))
    with pytest.raises(DualSRError) as exc:
        resolve_data_dir("Set6", option="--val")
    msg = str(exc.value)
    assert msg.startswith("--val Set6:") and str(root) in msg and f"${DATA_ENV}" in msg
    assert "did you mean Set5?" in msg
    with pytest.raises(DualSRError, match=r"missing\).*from --data-root"):
        resolve_data_dir("Set5", tmp_path / "nowhere")
    with pytest.raises(DualSRError, match="folder not found"):
        resolve_data_dir(tmp_path / "absent")


def test_eval_takes_set_names_from_the_data_root(
    tmp_path: Path, no_data_env, capsys: pytest.CaptureFixture
) -> None:
    root = make_root(tmp_path / "root", "Set5", "Set14")
    out = tmp_path / "res"
    args = ["eval", "--model", "bicubic", "--scale", "2", "--out", str(out), "--data", "Set5"]
    assert main([*args, "Set14", "--data-root", str(root)]) == 0
    assert [d["dataset"] for d in json.loads((out / "results.json").read_text())["datasets"]] == [
        "Set5",
        "Set14",
    ]
    capsys.readouterr()
    assert main(args) == 1  # no root: one line saying how to set it
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --data Set5:") and "--data-root" in err and "\n" not in err


@pytest.mark.parametrize(
    "command",
    [
        ["search", "--model", "drn-t50-x4", "--rate", "0.5", "-o", "out"],
        ["prune", "--model", "drn-t50-x4", "--rate", "0.5", "-o", "out.safetensors"],
        ["finetune", "--model", "drn-t50-x4", "-o", "ft"],
    ],
    ids=lambda c: c[0],
)
def test_every_data_command_resolves_names(
    command: list[str], tmp_path: Path, no_data_env, capsys: pytest.CaptureFixture
) -> None:
    root = make_root(tmp_path / "root", "T91")
    assert main([*command, "--data", "T91", "NoSuchSet", "--data-root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "--data NoSuchSet: no such folder here, nor in the data root" in err
    assert "--data T91" not in err  # found in the root
    if command[0] == "search":  # --val takes a name too
        assert main([*command, "--data", "T91", "--val", "Set6", "--data-root", str(root)]) == 1
        assert "--val Set6: no such folder here" in capsys.readouterr().err


def test_training_config_names_resolve_in_the_env_root(tmp_path: Path, no_data_env) -> None:
    from dualsr.training.config import load_config, resolve_paths

    root = make_root(tmp_path / "root", "T91", "Set5")
    no_data_env.setenv(DATA_ENV, str(root))
    cfg = load_config(None, ["model.preset=drn-t-x4", "data.train=[T91]", "val.folders=[Set5]"])
    resolved = resolve_paths(cfg)
    assert resolved.data.train[0].hr == str((root / "T91").resolve())
    assert resolved.val.folders == [str((root / "Set5").resolve())]
    assert resolved.run.dir == str(Path.cwd() / "runs" / "train")  # other paths: cwd as before
    no_data_env.delenv(DATA_ENV)
    assert resolve_paths(cfg).data.train[0].hr == str(Path.cwd() / "T91")  # error comes later
    with pytest.raises(ConfigError, match=DATA_ENV):
        find_images(resolve_paths(cfg).data.train[0].hr, None, 4)
