"""``dualsr adapt`` / dualsr.adapt: the DRN-Adapt loss, batches, degradations, the CLI end to
end, resume, and each bad input's one line (tiny models, synthetic images)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import dualsr
from dualsr.adaptation import AdaptOptions, adapt, parse_degradation, state_path
from dualsr.adaptation import loop as adapt_loop
from dualsr.adaptation.batches import BatchSource
from dualsr.adaptation.degradations import Degradation, gaussian_blur
from dualsr.adaptation.estimate import estimate_degradation
from dualsr.adaptation.loss import adaptation_loss, closed_loops
from dualsr.cli import main
from dualsr.data.image_io import write_image
from dualsr.errors import ConfigError, DualSRError
from dualsr.losses import DualRegressionLoss

from .conftest import random_image, tiny_model

FAST = {
    "steps": 4,
    "minutes": None,
    "batch": 4,
    "crop": 12,
    "precision": "fp32",
    "save_every": 2,
    "scheme": "paper",
}


@pytest.fixture
def lr_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"p{i}.png", random_image(48, 56, seed=20 + i))
    return folder


@pytest.fixture
def dual_checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    return dualsr.save_model(tmp_path / "tiny.safetensors", tiny_model(), dualsr.DualModels(4, 4))


# ----------------------------------------------------------------------------------------------
# The loss: the indicator and the ratio
# ----------------------------------------------------------------------------------------------
def _pyramids(model: dualsr.DRN, duals: dualsr.DualModels, n: int, m: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    targets = [torch.rand(n, 3, 8 * 2**i, 8 * 2**i, generator=g) * 255 for i in range(3)]
    outputs = model(targets[0])
    x = torch.rand(m, 3, 8, 8, generator=g) * 255
    return (outputs, targets, duals(outputs)), (x, closed_loops(duals, model(x)))


def test_unpaired_samples_get_no_primal_loss() -> None:
    model, duals = tiny_model().train(), dualsr.DualModels(4, 4)
    paired, unpaired = _pyramids(model, duals, 2, 3)
    terms = adaptation_loss(0.1, paired, unpaired)
    alone = DualRegressionLoss(use_dual=False)(paired[0], paired[1])
    assert torch.allclose(terms.primal, alone.primal)
    # unpaired samples alone: the loss is lambda x the closed-loop L1, nothing else
    only = adaptation_loss(0.1, None, unpaired)
    assert float(only.primal) == 0.0
    assert torch.allclose(only.total, 0.1 * only.dual_unpaired)
    # and no gradient reaches the primal from an HR target: the unpaired have none
    model.zero_grad()
    only.total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads  # through the closed loop, as the paper's P update has it


def test_groups_weighted_by_their_share_of_the_batch() -> None:
    model, duals = tiny_model().train(), dualsr.DualModels(4, 4)
    paired, unpaired = _pyramids(model, duals, 3, 1)
    terms = adaptation_loss(0.5, paired, unpaired)
    p_total = terms.primal + 0.5 * terms.dual_paired
    expected = 3 / 4 * p_total + 1 / 4 * 0.5 * terms.dual_unpaired
    assert torch.allclose(terms.total, expected)


def test_ratio_sets_the_batch_mix(lr_folder: Path) -> None:
    opts = AdaptOptions(batch=16, unpaired_ratio=0.3)
    assert (opts.n_unpaired, opts.n_paired) == (5, 11)
    images = [random_image(48, 56, seed=i) for i in range(2)]
    source = BatchSource(images, images, 4, Degradation(), 5, 11, crop=10, seed=0)
    unpaired, paired = source.batch(0)
    assert unpaired.shape == (5, 3, 10, 10)
    assert [t.shape[-1] for t in paired] == [10, 20, 40] and paired[0].shape[0] == 11
    again_u, again_p = source.batch(0)  # a step's batch is a function of (seed, step)
    assert torch.equal(again_u, unpaired) and torch.equal(again_p[2], paired[2])
    assert not torch.equal(source.batch(1)[0], unpaired)
    assert BatchSource(images, images, 4, Degradation(), 0, 4, 10).batch(0)[0] is None


# ----------------------------------------------------------------------------------------------
# Degradations and their estimate
# ----------------------------------------------------------------------------------------------
def test_degradation_specs_round_trip_and_apply() -> None:
    for spec in ("bicubic", "blur=1.6", "blur=1.2,jpeg=75", "down=nearest,noise=5"):
        assert parse_degradation(spec).spec() == spec
    hr = random_image(64, 64, seed=3)
    clean = Degradation().apply(hr, 4)
    assert clean.shape == (16, 16, 3) and np.array_equal(clean, dualsr.imresize(hr, 1 / 4))
    blurred = parse_degradation("blur=2").apply(hr, 4)
    assert (
        np.abs(np.diff(blurred.astype(float), axis=1)).mean()
        < np.abs(np.diff(clean.astype(float), axis=1)).mean()
    )
    nearest = parse_degradation("down=nearest").apply(hr, 4)
    assert np.array_equal(nearest, hr[1::4, 1::4])
    assert not np.array_equal(parse_degradation("jpeg=20").apply(hr, 4), clean)
    for bad in ("blur", "sharpen=2", "jpeg=0", "blur=x", "down=area"):
        with pytest.raises(ConfigError):
            parse_degradation(bad)


def _natural(side: int, seed: int) -> np.ndarray:
    """Noise at several scales (a roughly 1/f spectrum, as photographs have), no period."""
    rng = np.random.default_rng(seed)
    img = sum(s * gaussian_blur(rng.normal(size=(side, side, 3)), s) for s in (0.7, 2, 5, 12))
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return np.rint(img).astype(np.uint8)


def test_estimate_tells_jpeg_and_blur_from_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dualsr.adaptation.estimate.REFERENCE_CROPS", 12)  # fast enough here
    refs = [_natural(256, seed=40 + i) for i in range(4)]
    hrs = [_natural(256, seed=60 + i) for i in range(3)]
    for truth in ("bicubic", "blur=2,jpeg=30", "down=nearest"):
        deg = parse_degradation(truth)
        est, report = estimate_degradation([deg.apply(h, 4) for h in hrs], refs, 4)
        if deg.is_clean:
            assert est.is_clean, report
        elif deg.down == "nearest":
            assert est == Degradation(down="nearest"), report
        else:
            assert est.jpeg is not None and est.blur >= 1.2 and est.down == "bicubic", report


# ----------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------
def test_cli_writes_a_loadable_checkpoint_without_paths(
    lr_folder: Path, dual_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out" / "adapted.safetensors"
    rc = main(
        [
            "adapt",
            str(lr_folder),
            "-o",
            str(out),
            "-m",
            str(dual_checkpoint),
            "--steps",
            "3",
            "--precision",
            "fp32",
            "--threads",
            "1",
            "--scheme",
            "paper",
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "adapt: step 3/3" in err and "ETA" in err and "\x1b" not in err and "\r" not in err
    ckpt = dualsr.load_checkpoint(out)
    assert ckpt.duals is not None
    meta = ckpt.metadata["adapt"]
    assert meta["images"] == 3 and meta["steps_done"] == 3
    assert meta["options"]["scheme"] == "paper" and meta["options"]["unpaired_ratio"] == 0.3
    assert meta["duals"] == "from the checkpoint"
    text = json.dumps(ckpt.metadata)
    assert str(tmp_path) not in text and "photos" not in text and "tiny" not in text
    assert not state_path(out).exists()
    before = dualsr.load_model(dual_checkpoint).state_dict()
    assert any(not torch.equal(v, before[k]) for k, v in ckpt.model.state_dict().items())
    # an ordinary checkpoint: upscale reads it
    assert (
        main(
            [
                "upscale",
                str(lr_folder / "p0.png"),
                "-o",
                str(tmp_path / "sr.png"),
                "--model",
                str(out),
            ]
        )
        == 0
    )


def test_estimate_scheme_with_paired_data(
    lr_folder: Path, dual_checkpoint: Path, tmp_path: Path
) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    write_image(hr / "a.png", random_image(96, 96, seed=5))
    opts = AdaptOptions(**{**FAST, "scheme": "estimate", "degradation": "blur=1.2,jpeg=70"})
    res = adapt(
        [lr_folder], tmp_path / "a.safetensors", model=dual_checkpoint, paired=[hr], options=opts
    )
    assert res.finished and res.degradation.spec() == "blur=1.2,jpeg=70"
    meta = dualsr.load_checkpoint(res.output).metadata["adapt"]
    assert meta["paired_images"] == 1 and meta["paired_sets"] == ["hr"]


def test_estimate_on_clean_bicubic_images_keeps_the_model_even_with_paired_data(
    dual_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dualsr.adaptation.estimate.REFERENCE_CROPS", 12)
    lr, hr = tmp_path / "lr", tmp_path / "hr"
    lr.mkdir(), hr.mkdir()
    for i in range(3):
        write_image(lr / f"{i}.png", dualsr.imresize(_natural(256, seed=70 + i), 1 / 4))
        write_image(hr / f"{i}.png", _natural(256, seed=80 + i))
    opts = AdaptOptions(**{**FAST, "scheme": "estimate"})
    res = adapt([lr], tmp_path / "k.safetensors", model=dual_checkpoint, paired=[hr], options=opts)
    assert res.degradation.is_clean and res.step == 0
    ckpt = dualsr.load_checkpoint(res.output)
    meta = ckpt.metadata["adapt"]
    assert meta["degradation"] == "bicubic" and meta["estimate"]["jpeg_quality"] is None
    assert "the model is unchanged" in meta["note"]
    before = dualsr.load_model(dual_checkpoint).state_dict()
    assert all(torch.equal(v, before[k]) for k, v in ckpt.model.state_dict().items())
    # the paper's scheme adapts on the same images
    opts = AdaptOptions(**{**FAST, "scheme": "paper"})
    res = adapt([lr], tmp_path / "p.safetensors", model=dual_checkpoint, paired=[hr], options=opts)
    assert res.step == 4


def test_resume_after_interrupt_equals_uninterrupted(
    lr_folder: Path, dual_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = AdaptOptions(**FAST)
    full = adapt([lr_folder], tmp_path / "full.safetensors", model=dual_checkpoint, options=opts)

    real_step = adapt_loop._step

    def interrupted(ctx, step, dual_only):  # noqa: ANN001, ANN202
        metrics = real_step(ctx, step, dual_only)
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the second step
        return metrics

    out = tmp_path / "cut.safetensors"
    monkeypatch.setattr(adapt_loop, "_step", interrupted)
    cut = adapt([lr_folder], out, model=dual_checkpoint, options=opts)
    assert not cut.finished and cut.step == 2 and state_path(out).is_file() and not out.exists()
    monkeypatch.setattr(adapt_loop, "_step", real_step)
    with pytest.raises(DualSRError, match="--resume"):  # a plain rerun would lose the state
        adapt([lr_folder], out, model=dual_checkpoint, options=opts)
    two = [lr_folder / "p0.png", lr_folder / "p1.png"]
    with pytest.raises(DualSRError, match="cannot resume: the state was made from 3"):
        adapt(two, out, model=dual_checkpoint, options=opts, resume=True)
    done = adapt([lr_folder], out, model=dual_checkpoint, options=opts, resume=True)
    assert done.finished and done.step == 4 and not state_path(out).exists()
    a, b = full.model.state_dict(), dualsr.load_model(out).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_model_without_duals_gets_fitted_duals(
    lr_folder: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    opts = AdaptOptions(**{**FAST, "dual_fit_steps": 2})
    res = adapt([lr_folder], tmp_path / "o.safetensors", model=tiny_checkpoint, options=opts)
    assert res.step == 6  # 2 dual-fitting steps + 4
    ckpt = dualsr.load_checkpoint(res.output)
    assert ckpt.duals is not None and ckpt.metadata["adapt"]["duals"] == "fitted"


# ----------------------------------------------------------------------------------------------
# Bad input: one line each
# ----------------------------------------------------------------------------------------------
def _one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_bad_inputs_one_line_each(
    capsys: pytest.CaptureFixture,
    tmp_path: Path,
    dual_checkpoint: Path,
    lr_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = str(tmp_path / "o.safetensors")
    base = ["-o", out, "-m", str(dual_checkpoint), "--steps", "1"]
    assert "no such file" in _one_line_error(capsys, ["adapt", str(tmp_path / "nope"), *base])
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    write_image(tiny / "t.png", random_image(10, 12))
    assert "smaller than 16" in _one_line_error(capsys, ["adapt", str(tiny), *base])
    few = tmp_path / "few"
    few.mkdir()
    write_image(few / "f.png", random_image(20, 20))
    assert "too little" in _one_line_error(capsys, ["adapt", str(few), *base])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = _one_line_error(
        capsys,
        ["adapt", str(lr_folder), "-o", str(blocker / "o.safetensors"), "-m", str(dual_checkpoint)],
    )
    assert "a file is in the way" in err
    err = _one_line_error(capsys, ["adapt", str(lr_folder), *base, "--resume"])
    assert "cannot resume" in err
    monkeypatch.setattr("dualsr.adaptation.images.available_memory_bytes", lambda: 1000)
    assert "too large" in _one_line_error(capsys, ["adapt", str(lr_folder), *base])
    assert not Path(out).exists()


def test_minutes_budget_ends_the_run(
    lr_folder: Path, dual_checkpoint: Path, tmp_path: Path
) -> None:
    opts = AdaptOptions(**{**FAST, "steps": 10**9, "minutes": 0.002})
    res = adapt([lr_folder], tmp_path / "m.safetensors", model=dual_checkpoint, options=opts)
    assert res.finished and 1 <= res.step < 10**9
    assert dualsr.load_checkpoint(res.output).metadata["adapt"]["steps_done"] == res.step


def test_without_paired_data_only_jpeg_is_estimated(dual_checkpoint: Path, tmp_path: Path) -> None:
    lr = tmp_path / "lr"
    lr.mkdir()
    deg = parse_degradation("blur=2,jpeg=30")
    for i in range(3):
        write_image(lr / f"{i}.png", deg.apply(_natural(256, seed=90 + i), 4))
    opts = AdaptOptions(**{**FAST, "scheme": "estimate", "steps": 1})
    res = adapt([lr], tmp_path / "j.safetensors", model=dual_checkpoint, options=opts)
    assert res.degradation.blur == 0 and res.degradation.jpeg is not None
    assert (
        "blur not estimated"
        in dualsr.load_checkpoint(res.output).metadata["adapt"]["estimate"]["reference"]
    )


def test_clean_images_without_paired_data_keep_the_model(
    dual_checkpoint: Path, tmp_path: Path
) -> None:
    lr = tmp_path / "lr"
    lr.mkdir()
    for i in range(3):
        write_image(lr / f"{i}.png", dualsr.imresize(_natural(256, seed=70 + i), 1 / 4))
    opts = AdaptOptions(**{**FAST, "scheme": "estimate"})
    res = adapt([lr], tmp_path / "k.safetensors", model=dual_checkpoint, options=opts)
    assert res.degradation.is_clean and res.step == 0
    ckpt = dualsr.load_checkpoint(res.output)
    assert "the model is unchanged" in ckpt.metadata["adapt"]["note"]
    before = dualsr.load_model(dual_checkpoint).state_dict()
    assert all(torch.equal(v, before[k]) for k, v in ckpt.model.state_dict().items())


def test_cli_paired_takes_data_set_names(
    lr_folder: Path, dual_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "datasets"
    (root / "T91").mkdir(parents=True)
    for i in range(2):
        write_image(root / "T91" / f"h{i}.png", random_image(64, 64, seed=10 + i))
    out = tmp_path / "named.safetensors"
    common = ["adapt", str(lr_folder), "-o", str(out), "-m", str(dual_checkpoint), "--steps", "1"]
    common += ["--precision", "fp32", "--threads", "1", "--scheme", "paper"]
    assert main([*common, "--paired", "T91", "--data-root", str(root)]) == 0
    meta = dualsr.load_checkpoint(out).metadata["adapt"]
    assert meta["steps_done"] == 1
    out.unlink()
    assert main([*common, "--paired", "T92", "--data-root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "error: --paired T92: no such folder" in err and str(root) in err and not out.exists()


def test_experiment_summary_averages_seeds_against_the_unadapted_model() -> None:
    from experiments import adapt_degradations as module

    jobs = {
        "Set5|jpeg=40|unadapted": {"psnr": 26.0, "ssim": 0.70},
        "Set5|jpeg=40|bicubic": {"psnr": 25.0, "ssim": 0.60},
    }
    for seed, gain in enumerate((0.2, 0.4, 0.6)):
        row = {"psnr": 26.0 + gain, "ssim": 0.71, "degradation": "jpeg=40"}
        jobs[f"Set5|jpeg=40|estimate|seed{seed}|steps300"] = row
        module.record(jobs, f"Set5|jpeg=40|estimate|seed{seed}|steps300", dict(row, seconds=1))
    (r,) = module.summary_rows(jobs)
    assert r["seeds"] == ["seed0", "seed1", "seed2"] and r["unadapted_psnr"] == 26.0
    assert r["delta_psnr_mean"] == pytest.approx(0.4) and r["delta_psnr_std"] == pytest.approx(0.2)
    assert r["delta_ssim_mean"] == pytest.approx(0.01) and r["paired_lr"] == ["jpeg=40"]
