"""Training: config validation, the step and its guards, resume, signals, distillation, CLI."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import dualsr
from dualsr.cli import main
from dualsr.errors import ConfigError, DualSRError
from dualsr.training import (
    TrainConfig,
    apply_overrides,
    distill_loss,
    load_config,
    make_trainer,
    train,
    train_step,
)
from dualsr.training.builders import build_model, lr_at
from dualsr.training.distributed import DistInfo

from .test_dataset import write_images

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path: Path, *overrides: str) -> TrainConfig:
    """A 4-feature, 1-RCAB x4 DRN on 16-pixel HR patches of three small synthetic images."""
    if not (tmp_path / "hr").is_dir():
        write_images(tmp_path / "hr", [(24, 24), (32, 28), (20, 36)])
    base = [
        "model.scale=4",
        "model.n_feats=4",
        "model.n_blocks=1",
        f"data.train=[{tmp_path / 'hr'}]",
        "data.patch_size=16",
        "data.batch_size=2",
        "data.workers=0",
        "data.cache=memory",
        "train.steps=6",
        "train.threads=1",
        f"run.dir={tmp_path / 'run'}",
        "run.log_every=1",
        "run.progress=false",
        "run.tensorboard=false",
    ]
    return load_config(None, [*base, *overrides])


def batch_of(n: int = 2, lr: int = 4, seed: int = 0) -> list[torch.Tensor]:
    """A consistent x4 pyramid: a smooth random HR batch and its bicubic downscales."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, lr, lr, generator=g) * 255
    hr = dualsr.imresize_torch(coarse, 4).clamp(0, 255)
    return [dualsr.imresize_torch(hr, 1 / 4), dualsr.imresize_torch(hr, 1 / 2), hr]


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------
def test_config_overrides_and_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {preset: drn-s-x4}\noptim: {lr: 1e-4}\ndata: {train: [a, {hr: b}]}\n")
    cfg = load_config(path, ["optim.lr=2e-4", "loss.dual=false", "val.folders=[x, y]"])
    assert cfg.optim.lr == 2e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.loss.dual is False and cfg.val.folders == ["x", "y"]
    assert [s.hr for s in cfg.data.train] == ["a", "b"]
    again = apply_overrides(cfg, ["loss.distill.teacher=t.safetensors", "train.steps=1e3"])
    assert again.loss.distill.teacher == "t.safetensors" and again.loss.distill.weight == 1.0
    assert again.train.steps == 1000 and cfg.loss.distill is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr' (did you mean 'optim.lr'?)"),
        ("optimizer.lr=1", "unknown config key 'optimizer'"),
        ("optim.lr=fast", "optim.lr: expected a number, got 'fast'"),
        ("optim.lr=-1", "optim.lr must be > 0"),
        ("data.batch_size=2.5", "data.batch_size: expected an integer"),
        ("train.amp=fp8", "train.amp must be one of none, auto, bf16, fp16"),
        ("loss.dual=maybe", "loss.dual: expected true or false"),
        ("model.preset=drn-xl", "model.preset 'drn-xl' is unknown"),
        ("model.init=m.safetensors", "model.init takes the architecture from the checkpoint"),
        ("train.ema=1.5", "train.ema"),
        ("optim.betas=[0.9]", "optim.betas"),
    ],
)
def test_config_errors_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(None, ["model.preset=drn-s-x4", override])
    assert message in str(exc.value)


def test_config_needs_a_model_and_a_well_formed_override() -> None:
    with pytest.raises(ConfigError, match="model.preset"):
        load_config(None, [])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["model.preset"])


TRAINING_RECIPES = [
    "cpu-drn-x4.yaml",
    "cpu-tiny-x4.yaml",
    "drn-s-x4.yaml",
    "drn-l-x4.yaml",
    "drn-s-x8.yaml",
    "drn-l-x8.yaml",
]


@pytest.mark.parametrize("name", TRAINING_RECIPES)
def test_shipped_recipes_validate(name: str) -> None:
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.data.train and cfg.val.folders


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
def test_model_from_preset_widths_and_file(tmp_path: Path) -> None:
    cfg = load_config(None, ["model.preset=drn-s30-x4"])
    model, duals = build_model(cfg.model)
    assert model.channel_widths() == dualsr.create_model("drn-s30-x4").channel_widths()
    assert duals is None
    widths = [3, 5, 7, 9, 11, 12, 16, 4]
    (tmp_path / "w.txt").write_text("\n".join(map(str, widths)) + "\n")
    for spec in (str(widths).replace(" ", ""), str(tmp_path / "w.txt")):
        over = [
            "model.scale=4",
            "model.n_feats=4",
            "model.n_blocks=2",
            f"model.channel_config={spec}",
        ]
        model, _ = build_model(load_config(None, over).model)
        assert model.channel_widths() == widths
    bad = ["model.scale=4", "model.n_feats=4", "model.n_blocks=2", "model.channel_config=[1,2]"]
    with pytest.raises(ConfigError, match="model: channel configuration has 2 entries"):
        build_model(load_config(None, bad).model)


def test_init_from_a_pruned_checkpoint_trains(tmp_path: Path) -> None:
    pruned = dualsr.DRN(4, 4, 1, channel_config=[3, 6, 9, 12, 4, 5])
    path = dualsr.save_model(tmp_path / "pruned.safetensors", pruned)
    cfg = tiny_config(
        tmp_path,
        "model.scale=null",
        "model.n_feats=null",
        "model.n_blocks=null",
        f"model.init={path}",
        "train.steps=2",
    )
    result = train(cfg)
    assert result.model.channel_widths() == [3, 6, 9, 12, 4, 5]
    assert result.duals is not None  # the pruned file has none: fresh duals were trained
    loaded = dualsr.load_checkpoint(result.latest)
    assert loaded.model.channel_widths() == [3, 6, 9, 12, 4, 5] and loaded.duals is not None
    assert not torch.equal(loaded.model.head.weight, pruned.head.weight)


# ----------------------------------------------------------------------------------------------
# The step
# ----------------------------------------------------------------------------------------------
def make_tiny_trainer(tmp_path: Path, *overrides: str):
    cfg = tiny_config(tmp_path, *overrides)
    torch.manual_seed(0)
    model, duals = build_model(cfg.model)
    return make_trainer(cfg, model, duals, torch.device("cpu"), DistInfo())


def test_schedule_is_cosine_to_min_lr() -> None:
    cfg = load_config(None, ["model.preset=drn-s-x4", "optim.warmup_steps=2"])
    assert lr_at(cfg.optim, 0, 10) == pytest.approx(0.5e-4)
    assert lr_at(cfg.optim, 2, 10) == pytest.approx(1e-4)
    assert lr_at(cfg.optim, 10, 10) == pytest.approx(1e-7)
    assert lr_at(cfg.optim, 6, 10) == pytest.approx(1e-7 + (1e-4 - 1e-7) / 2)


def test_loss_goes_down_on_a_tiny_overfit(tmp_path: Path) -> None:
    t = make_tiny_trainer(tmp_path, "optim.lr=2e-3")
    batch = batch_of(seed=1)
    losses = [train_step(t, batch).metrics["loss"] for _ in range(25)]
    assert losses[-1] < 0.7 * losses[0]
    result = train_step(t, batch)
    assert result.skipped is None and result.metrics["dual"] > 0


def test_exploding_and_non_finite_batches_leave_everything_untouched(tmp_path: Path) -> None:
    t = make_tiny_trainer(tmp_path, "optim.skip_warmup=2", "train.ema=0.9")
    for _ in range(3):
        assert train_step(t, batch_of()).skipped is None
    before = (weights(t.model), weights(t.duals), weights(t.ema.module))
    optim_before = copy.deepcopy(t.optimizers["model"].state_dict())
    running = t.guard.running
    exploding = [x * 1000 for x in batch_of()]
    result = train_step(t, exploding)
    assert result.skipped and "running loss" in result.skipped
    nan_batch = batch_of()
    nan_batch[-1][0, 0, 0, 0] = float("nan")
    assert "non-finite loss" in train_step(t, nan_batch).skipped
    inf_batch = batch_of()
    inf_batch[0][0, 0, 0, 0] = float("inf")
    assert train_step(t, inf_batch).skipped
    for a, b in zip(
        before, (weights(t.model), weights(t.duals), weights(t.ema.module)), strict=True
    ):
        assert_same(a, b)
    after = t.optimizers["model"].state_dict()["state"]
    for i, entry in optim_before["state"].items():
        assert all(torch.equal(v, after[i][k]) for k, v in entry.items())
    assert t.guard.running == running
    assert train_step(t, batch_of()).skipped is None  # training goes on


def test_primal_only_ablation_has_no_dual_optimizer(tmp_path: Path) -> None:
    t = make_tiny_trainer(tmp_path, "loss.dual=false")
    assert set(t.optimizers) == {"model"}
    duals_before = weights(t.duals) if t.duals is not None else {}
    result = train_step(t, batch_of())
    assert result.metrics["dual"] == 0.0
    if t.duals is not None:
        assert_same(duals_before, weights(t.duals))


def test_distillation_changes_the_loss_and_the_gradients(tmp_path: Path) -> None:
    torch.manual_seed(5)
    teacher_path = dualsr.save_model(tmp_path / "teacher.safetensors", dualsr.DRN(4, 6, 1))
    lr = batch_of()[0]
    student = dualsr.DRN(4, 4, 1)
    _, feats = student.forward_with_features(lr)
    teacher = dualsr.load_model(teacher_path)
    loss = distill_loss(feats, teacher, lr)
    loss.backward()
    assert loss > 0 and student.tail[-1].weight.grad is None  # features enter the last tail conv
    assert student.up_blocks[-1][-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())

    plain = make_tiny_trainer(tmp_path)
    distilled = make_tiny_trainer(tmp_path, f"loss.distill.teacher={teacher_path}")
    assert_same(weights(plain.model), weights(distilled.model))
    a, b = train_step(plain, batch_of()), train_step(distilled, batch_of())
    assert b.metrics["distill"] > 0 and b.metrics["loss"] > a.metrics["loss"]
    assert a.metrics["primal"] == b.metrics["primal"]
    changed = [
        not torch.equal(x, y)
        for x, y in zip(plain.model.parameters(), distilled.model.parameters(), strict=True)
    ]
    assert any(changed)
    assert not distilled.teacher.training


def test_bf16_autocast_and_channels_last_run(tmp_path: Path) -> None:
    t = make_tiny_trainer(tmp_path, "train.amp=bf16", "train.channels_last=true")
    result = train_step(t, batch_of())
    assert result.skipped is None and torch.isfinite(torch.tensor(result.metrics["loss"]))
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        make_tiny_trainer(tmp_path, "train.amp=fp16")


# ----------------------------------------------------------------------------------------------
# Checkpoints and resume
# ----------------------------------------------------------------------------------------------
def stop_after(k: int):
    return lambda info: info.step >= k


def test_resume_is_bit_exact(tmp_path: Path) -> None:
    extra = ("train.ema=0.9", "optim.skip_warmup=1", "run.save_every=100")
    straight = train(tiny_config(tmp_path / "a", *extra))
    assert straight.finished and straight.step == 6

    cfg = tiny_config(tmp_path / "b", *extra)
    first = train(cfg, callbacks=[stop_after(3)])
    assert (first.step, first.finished, first.stop_reason) == (3, False, "callback")
    resumed = train(cfg, resume=True)
    assert resumed.finished and resumed.step == 6

    assert_same(weights(straight.model), weights(resumed.model))
    assert_same(weights(straight.duals), weights(resumed.duals))
    assert_same(weights(straight.ema_model), weights(resumed.ema_model))
    rows = [
        [json.loads(line) for line in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
        for r in (straight, resumed)
    ]
    assert [r["loss"] for r in rows[0]] == [r["loss"] for r in rows[1]]
    assert [r["step"] for r in rows[1]] == [1, 2, 3, 4, 5, 6]
    # a training checkpoint is an ordinary model checkpoint too
    model = dualsr.load_model(resumed.latest)
    assert_same(weights(model), weights(resumed.model))


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "run.save_every=2", "run.keep=2")
    result = train(cfg)
    steps = sorted(p.name for p in (result.run_dir / "checkpoints").iterdir())
    assert steps == ["step-000004.safetensors", "step-000006.safetensors"]  # keep the last 2
    for name in ("checkpoints/step-000006.safetensors", "latest.safetensors"):
        path = result.run_dir / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(UserWarning) as caught:
        resumed = train(apply_overrides(cfg, ["train.steps=7"]), resume=True)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2  # the newest step file, then latest: both cut in half
    assert "step-000006.safetensors" in messages[0] and "truncated" in messages[0]
    assert "falling back to" in messages[1] and messages[1].endswith("step-000004.safetensors")
    assert resumed.step == 7
    rows = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]


def test_resume_and_fresh_run_errors(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    with pytest.raises(DualSRError, match="holds no checkpoints"):
        train(cfg, resume=True)
    train(apply_overrides(cfg, ["train.steps=1"]))
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg)
    dualsr.save_model(tmp_path / "run" / "latest.safetensors", dualsr.DRN(4, 4, 1))
    for p in (tmp_path / "run" / "checkpoints").iterdir():
        p.unlink()
    with pytest.warns(UserWarning, match="no training state"), pytest.raises(DualSRError):
        train(cfg, resume=True)


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "train.steps=50", "run.save_every=100")
    previous = signal.getsignal(signal.SIGTERM)

    def send_sigterm(info) -> None:
        if info.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    result = train(cfg, callbacks=[send_sigterm])
    assert (result.step, result.stop_reason, result.finished) == (2, "SIGTERM", False)
    assert (result.run_dir / "checkpoints" / "step-000002.safetensors").is_file()
    assert signal.getsignal(signal.SIGTERM) is previous


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------
def write_tiny_yaml(tmp_path: Path, steps: int = 4) -> Path:
    write_images(tmp_path / "hr", [(24, 24), (32, 28), (20, 36)])
    write_images(tmp_path / "val", [(32, 36)], seed=9)
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"""
model: {{scale: 4, n_feats: 4, n_blocks: 0}}
data: {{train: [{tmp_path / "hr"}], patch_size: 16, batch_size: 2, workers: 0, cache: disk,
        cache_dir: {tmp_path / "cache"}}}
train: {{steps: {steps}, threads: 1}}
val: {{folders: [{tmp_path / "val"}], every: 2}}
run: {{dir: {tmp_path / "run"}, log_every: 1, save_every: 2, progress: false}}
"""
    )
    return path


def test_cli_train_resume_and_upscale(tmp_path: Path, capsys) -> None:
    config = write_tiny_yaml(tmp_path)
    assert main(["train", "--config", str(config), "--set", "optim.lr=1e-3"]) == 0
    run = tmp_path / "run"
    assert "done: 4 steps" in capsys.readouterr().out
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "latest.safetensors",
        "best.safetensors",
    }
    assert load_config(run / "config.yaml").optim.lr == 1e-3
    assert main(["train", "--resume", str(run), "--set", "train.steps=6"]) == 0
    assert dualsr.load_checkpoint(run / "latest.safetensors").metadata["step"] == 6
    out = tmp_path / "sr.png"
    img = next((tmp_path / "val").iterdir())
    assert (
        main(["upscale", str(img), "-o", str(out), "--model", str(run / "best.safetensors")]) == 0
    )
    assert out.is_file()
    assert main(["train", "--config", str(config), "--set", "optim.lrr=1"]) == 1
    assert "unknown config key 'optim.lrr'" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 1
    assert main(["train", "--config", str(config), "--print-config"]) == 0
    assert "dual_weight: 0.1" in capsys.readouterr().out


@pytest.mark.slow  # a real subprocess or end-to-end run: `make test` runs it
def test_cli_sigint_in_a_real_process_saves_and_exits(tmp_path: Path) -> None:
    config = write_tiny_yaml(tmp_path, steps=100_000)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dualsr", "train", "--config", str(config)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (metrics.is_file() and metrics.stat().st_size > 0):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "SIGINT received" in err and "--resume" in err
    ckpt = dualsr.load_checkpoint(tmp_path / "run" / "latest.safetensors")
    assert ckpt.metadata["step"] >= 1


# ----------------------------------------------------------------------------------------------
# Failures mid-run: nothing lost, no hang
# ----------------------------------------------------------------------------------------------
def test_an_error_mid_run_saves_the_steps_done(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "train.steps=20", "run.save_every=100")

    def boom(info) -> None:
        if info.step == 3:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        train(cfg, callbacks=[boom])
    ckpt = dualsr.load_checkpoint(tmp_path / "run" / "latest.safetensors")
    assert ckpt.metadata["step"] == 3
    resumed = train(cfg, resume=True)
    assert resumed.finished and resumed.step == 20


@pytest.mark.slow  # a real subprocess or end-to-end run: `make test` runs it
def test_an_error_with_loader_workers_exits_instead_of_hanging(tmp_path: Path) -> None:
    """The DataLoader's workers ignore SIGTERM; left alive after an error they used to keep
    the process from ever exiting."""
    write_images(tmp_path / "hr", [(24, 24), (32, 28), (20, 36)])
    script = f"""
import sys
from dualsr.training import load_config, train
cfg = load_config(None, ["model.scale=4", "model.n_feats=4", "model.n_blocks=1",
    "data.train=[{tmp_path / "hr"}]", "data.patch_size=16", "data.batch_size=2",
    "data.workers=2", "data.cache=memory", "train.steps=50", "train.threads=1",
    "run.dir={tmp_path / "run"}", "run.progress=false", "run.tensorboard=false",
    "run.save_every=100"])
def boom(info):
    if info.step == 2:
        raise RuntimeError("boom")
try:
    train(cfg, callbacks=[boom])
except RuntimeError:
    sys.exit(7)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 7, proc.stderr
    assert "stopped by an error at step 2" in proc.stderr and "--resume" in proc.stderr
    assert (tmp_path / "run" / "latest.safetensors").is_file()


def test_validation_images_are_checked_at_start(tmp_path: Path) -> None:
    from PIL import Image

    val = tmp_path / "val"
    write_images(val, [(32, 36)], seed=9)
    Image.new("RGB", (8, 30)).save(val / "small.png")
    cfg = tiny_config(tmp_path, f"val.folders=[{val}]")
    with pytest.raises(ConfigError, match=r"small.png is 8x30, too small to validate at x4"):
        train(cfg)
    (val / "small.png").unlink()
    (val / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ConfigError, match=r"val.folders\[0\]: .*broken.png"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing started


def test_amp_auto_is_bf16_only_where_native(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dualsr.deploy import precision
    from dualsr.training.trainer import resolve_amp

    cfg = tiny_config(tmp_path, "train.amp=auto")
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ("avx512_bf16",))
    assert resolve_amp(cfg, cpu) == "bf16"
    assert make_tiny_trainer(tmp_path, "train.amp=auto").amp_dtype == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ())
    assert resolve_amp(cfg, cpu) == "none"
    assert make_tiny_trainer(tmp_path, "train.amp=auto").amp_dtype is None
    assert resolve_amp(tiny_config(tmp_path, "train.amp=bf16"), cpu) == "bf16"


# ----------------------------------------------------------------------------------------------
# The dual HR term (loss.dual_hr)
# ----------------------------------------------------------------------------------------------
def test_dual_hr_config_needs_the_dual_term() -> None:
    assert load_config(None, ["model.preset=drn-s-x4"]).loss.dual_hr is False
    cfg = load_config(None, ["model.preset=drn-s-x4", "loss.dual_hr=true"])
    assert cfg.loss.dual_hr is True and cfg.loss.dual is True
    with pytest.raises(ConfigError) as exc:
        load_config(None, ["model.preset=drn-s-x4", "loss.dual=false", "loss.dual_hr=true"])
    assert "loss.dual_hr" in str(exc.value) and "loss.dual: true" in str(exc.value)
    with pytest.raises(ConfigError, match="loss.dual_hr: expected true or false"):
        load_config(None, ["model.preset=drn-s-x4", "loss.dual_hr=maybe"])


def test_dual_hr_training_step_adds_the_term_and_trains_both(tmp_path: Path) -> None:
    plain = make_tiny_trainer(tmp_path)
    looped = make_tiny_trainer(tmp_path, "loss.dual_hr=true")
    assert looped.loss_fn.dual_hr and not plain.loss_fn.dual_hr
    assert_same(weights(plain.model), weights(looped.model))
    assert_same(weights(plain.duals), weights(looped.duals))
    batch = batch_of()
    # the HR-loop output the step will use, before the weights change
    with torch.no_grad():
        _, _, _, cycle = looped.net(batch[0], batch[-1])
    expected_hr = float((cycle - batch[-1]).abs().mean())
    a, b = train_step(plain, batch), train_step(looped, batch)
    assert a.skipped is None and b.skipped is None
    assert a.metrics["dual_hr"] == 0.0
    assert b.metrics["dual_hr"] == pytest.approx(expected_hr, rel=1e-6)
    assert a.metrics["primal"] == b.metrics["primal"] and a.metrics["dual"] == b.metrics["dual"]
    assert b.metrics["loss"] == pytest.approx(
        b.metrics["primal"] + 0.1 * b.metrics["dual"] + 0.1 * b.metrics["dual_hr"], rel=1e-6
    )
    # the extra term changed the update of the primal and of the duals
    for x, y in ((plain.model, looped.model), (plain.duals, looped.duals)):
        changed = [
            not torch.equal(p, q) for p, q in zip(x.parameters(), y.parameters(), strict=True)
        ]
        assert any(changed)


def test_dual_hr_resume_is_bit_exact(tmp_path: Path) -> None:
    extra = ("loss.dual_hr=true", "train.steps=4", "optim.skip_warmup=1", "run.save_every=100")
    straight = train(tiny_config(tmp_path / "a", *extra))
    assert straight.finished and straight.step == 4

    cfg = tiny_config(tmp_path / "b", *extra)
    first = train(cfg, callbacks=[stop_after(2)])
    assert (first.step, first.finished) == (2, False)
    resumed = train(cfg, resume=True)
    assert resumed.finished and resumed.step == 4

    assert_same(weights(straight.model), weights(resumed.model))
    assert_same(weights(straight.duals), weights(resumed.duals))
    rows = [
        [json.loads(line) for line in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
        for r in (straight, resumed)
    ]
    assert [r["loss"] for r in rows[0]] == [r["loss"] for r in rows[1]]
    assert [r["dual_hr"] for r in rows[0]] == [r["dual_hr"] for r in rows[1]]
    assert all(r["dual_hr"] > 0 for r in rows[1])
