"""``dualsr.adapt``: fit a model to the user's own LR images with the dual (closed-loop) loss.

The paper's semi-supervised scheme (DRN-Adapt; :mod:`dualsr.adaptation.loss`): every step mixes
unpaired crops of the user's LR images (share ``unpaired_ratio``) with paired synthetic samples;
the primal and the duals are both updated, the primal on the whole loss, the duals on the dual
loss (the only term that depends on them). Paired samples come from ``paired`` HR folders, or,
without them, from the LR images themselves taken as HR (self-pairs: the regulariser that keeps
the model from drifting). A model without duals first gets new duals fitted with the primal
frozen (``dual_fit_steps``).

The run is resumable: the state (model, duals, both optimizers, step, elapsed time, the recipe)
is saved atomically beside the output every ``save_every`` steps and on Ctrl-C/SIGTERM, and
``adapt(..., resume=True)`` continues with exactly the batches an uninterrupted run would see.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import Checkpoint, load_checkpoint, save_model
from ..deploy.precision import resolve_precision
from ..errors import DualSRError
from ..models.drn import DRN, DualModels
from ..runcontrol import StopSignals
from ..training.state import (
    TrainingState,
    encode_state,
    load_training_checkpoint,
)
from .batches import BatchSource
from .degradations import Degradation, parse_degradation
from .estimate import estimate_degradation
from .images import load_lr_images, load_paired_hr
from .loss import adaptation_loss, closed_loops
from .options import AdaptOptions

log = logging.getLogger("dualsr.adapt")
STATE_SUFFIX = ".adapt-state.safetensors"


@dataclass
class AdaptResult:
    """The outcome of :func:`adapt`."""

    output: Path | None  # the adapted checkpoint (None when stopped early)
    state: Path | None  # the resumable state (None when finished)
    step: int
    finished: bool
    stop_reason: str | None
    degradation: Degradation
    metrics: dict[str, float] = field(default_factory=dict)
    model: DRN | None = None
    duals: DualModels | None = None


def state_path(output: str | Path) -> Path:
    """The resumable state file beside ``output`` (``adapted.adapt-state.safetensors``)."""
    output = Path(output)
    return output.with_name(output.stem + STATE_SUFFIX)


def _model_label(spec: str | Path) -> str:
    """What the metadata says about the base model: a name, never a path."""
    text = str(spec)
    if Path(text).expanduser().is_file():
        return "checkpoint file"
    return text


def _load_base(spec: str | Path) -> Checkpoint:
    from ..pretrained import resolve_checkpoint_path

    return load_checkpoint(resolve_checkpoint_path(spec))


def adapt(
    inputs: list[str | Path],
    output: str | Path,
    *,
    model: str | Path = "drn-t-x4",
    paired: list[str | Path] | tuple = (),
    options: AdaptOptions | None = None,
    resume: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> AdaptResult:
    """Adapt ``model`` to the LR images ``inputs`` (files, folders, globs); write ``output``.

    Returns an :class:`AdaptResult`; ``finished`` False (with the state file) when stopped by a
    signal. Raises DualSRError (one line) for bad input, before any training.
    """
    from ..cli.common import check_output_file

    output = Path(output)
    state_file = state_path(output)
    check_output_file(output)
    options = options or AdaptOptions()
    loaded = None
    if resume:
        if not state_file.is_file():
            raise DualSRError(
                f"cannot resume: no state file {state_file}; run without --resume to start"
            )
        loaded = load_training_checkpoint(state_file)
        options = AdaptOptions.from_dict(loaded.state.config["options"])  # the recipe it began
    elif state_file.is_file():
        raise DualSRError(
            f"{state_file} holds an interrupted adaptation; continue it with --resume, or delete "
            "it to start again"
        )
    dev = torch.device(device)
    base = loaded.checkpoint if loaded else _load_base(model)
    net, duals = base.model, base.duals
    scale = net.scale
    lr_images = load_lr_images(inputs)
    paired_hr = load_paired_hr(list(paired), scale)
    if loaded is not None and loaded.state.config.get("images") != len(lr_images):
        raise DualSRError(
            f"cannot resume: the state was made from {loaded.state.config.get('images')} LR "
            f"images, {len(lr_images)} were given; pass the same images"
        )
    if loaded is not None and loaded.state.config.get("paired_images") != len(paired_hr):
        raise DualSRError(
            f"cannot resume: the state was made with {loaded.state.config.get('paired_images')} "
            f"paired images, {len(paired_hr)} were given; pass the same --paired folders"
        )
    degradation, estimate_report = _degradation(options, lr_images, paired_hr, scale, loaded)
    fit_duals = 0
    if duals is None:
        duals = DualModels(scale, net.arch.n_feats)
        fit_duals = options.dual_fit_steps
        log.info("the model has no dual networks: fitting new ones first (%d steps)", fit_duals)
    if loaded is not None:
        fit_duals = int(loaded.state.config.get("dual_fit_steps", 0))
    source = BatchSource(
        lr_images,
        paired_hr or lr_images,
        scale,
        degradation,
        options.n_unpaired,
        options.n_paired,
        options.crop,
        options.seed,
    )
    fmt = torch.channels_last  # about 3x faster convolutions on CPU (docs/training.md)
    net.train().to(dev, memory_format=fmt)
    duals.train().to(dev, memory_format=fmt)
    opt_p = torch.optim.Adam(net.parameters(), lr=options.lr)
    opt_d = torch.optim.Adam(duals.parameters(), lr=options.dual_lr)
    step, elapsed = 0, 0.0
    if loaded is not None:
        opt_p.load_state_dict(loaded.state.optimizers["model"])
        opt_d.load_state_dict(loaded.state.optimizers["dual"])
        step = loaded.state.step
        elapsed = float(loaded.state.extra.get("elapsed", 0.0))
    precision = resolve_precision(options.precision, dev)
    amp = torch.bfloat16 if precision == "bf16" else None
    run = {
        "options": options.to_dict(),
        "images": len(lr_images),
        "paired_images": len(paired_hr),
        "paired_sets": [Path(str(p)).name for p in paired],
        "base": loaded.state.config["base"] if loaded else _model_label(model),
        "degradation": degradation.spec(),
        "estimate": estimate_report,
        "dual_fit_steps": fit_duals,
        "duals": "fitted" if fit_duals else "from the checkpoint",
        "precision": precision,
    }
    total = fit_duals + options.steps
    auto = options.scheme == "estimate" and options.degradation == "auto"
    if auto and degradation.is_clean and loaded is None:
        # nothing to adapt to: self-pairs alone cost 0.3 dB on clean Set5 and the paper's scheme
        # 0.02-0.07 dB on clean Set5/Set14/BSD100 (docs/adaptation.md)
        log.info("the LR images look like clean bicubic downscales: the model is kept as it is")
        run["note"] = "estimated clean bicubic: nothing to adapt to, the model is unchanged"
        total = fit_duals
    ctx = _Context(net, duals, opt_p, opt_d, source, options, amp, dev, run, state_file)
    metrics: dict[str, float] = {}
    stop_reason = None
    bar = _progress(
        total, step, progress, options.minutes * 60 - elapsed if options.minutes else None
    )
    start = time.perf_counter() - elapsed
    with StopSignals() as signals:
        try:
            while step < total:
                dual_only = step < fit_duals
                metrics = _step(ctx, step, dual_only)
                step += 1
                bar.update(step, metrics)
                if signals.received:
                    stop_reason = signals.received
                    break
                if options.minutes and time.perf_counter() - start >= options.minutes * 60:
                    log.info("the %g-minute budget is spent at step %d", options.minutes, step)
                    break
                if step % options.save_every == 0 and step < total:
                    _save_state(ctx, step, time.perf_counter() - start)
        except BaseException:
            if step > 0:
                with contextlib.suppress(Exception):
                    _save_state(ctx, step, time.perf_counter() - start)
                    log.error("stopped at step %d; the state is in %s (--resume)", step, state_file)
            raise
        finally:
            bar.close()
    if stop_reason is not None:
        _save_state(ctx, step, time.perf_counter() - start)
        log.warning(
            "stopped by %s at step %d of %d; saved %s; continue with --resume",
            stop_reason,
            step,
            total,
            state_file,
        )
        return AdaptResult(None, state_file, step, False, stop_reason, degradation, metrics)
    net.eval()
    duals.eval()
    meta = {
        "stage": "adapt",
        "adapt": {**run, "steps_done": step, "seconds": round(time.perf_counter() - start, 1)},
    }
    from ..cli.common import save_or_rescue

    save_or_rescue(lambda p: save_model(p, net, duals, metadata=meta), output)
    state_file.unlink(missing_ok=True)
    return AdaptResult(output, None, step, True, None, degradation, metrics, net, duals)


def _degradation(
    options: AdaptOptions, lr_images: list, paired_hr: list, scale: int, loaded: Any
) -> tuple[Degradation, dict | None]:
    """The paired data's degradation: bicubic for the paper's scheme, else given or estimated."""
    if loaded is not None:
        return parse_degradation(loaded.state.config["degradation"]), loaded.state.config.get(
            "estimate"
        )
    if options.scheme == "paper":
        return Degradation(), None
    if options.degradation != "auto":
        return parse_degradation(options.degradation), None
    # without paired HR the blur cannot be estimated safely (docs/adaptation.md): JPEG only
    est, report = estimate_degradation(
        lr_images, paired_hr, scale, options.seed, estimate_blur=bool(paired_hr)
    )
    report["reference"] = "paired" if paired_hr else "none: JPEG detected, blur not estimated"
    log.info("estimated degradation of the LR images: %s", est.spec())
    return est, report


@dataclass
class _Context:
    net: DRN
    duals: DualModels
    opt_p: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    source: BatchSource
    options: AdaptOptions
    amp: torch.dtype | None
    device: torch.device
    run: dict
    state_file: Path


def _autocast(ctx: _Context) -> contextlib.AbstractContextManager:
    if ctx.amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=ctx.device.type, dtype=ctx.amp)


def _step(ctx: _Context, step: int, dual_only: bool) -> dict[str, float]:
    """One step: both networks (``dual_only``: the duals, primal frozen)."""
    unpaired, paired = ctx.source.batch(step)
    ctx.opt_p.zero_grad(set_to_none=True)
    ctx.opt_d.zero_grad(set_to_none=True)
    ctx.net.requires_grad_(not dual_only)
    paired_terms = unpaired_terms = None
    with _autocast(ctx):
        if paired is not None:
            paired = [t.to(ctx.device, memory_format=torch.channels_last) for t in paired]
            with torch.no_grad() if dual_only else contextlib.nullcontext():
                outputs = ctx.net(paired[0])
            dual_outputs = ctx.duals(outputs)
            paired_terms = (
                [o.float() for o in outputs],
                paired,
                [d.float() for d in dual_outputs],
            )
        if unpaired is not None:
            x = unpaired.to(ctx.device, memory_format=torch.channels_last)
            with torch.no_grad() if dual_only else contextlib.nullcontext():
                outputs_u = ctx.net(x)
            loops = [loop.float() for loop in closed_loops(ctx.duals, outputs_u)]
            unpaired_terms = (x, loops)
    terms = adaptation_loss(
        ctx.options.dual_weight, paired_terms, unpaired_terms, primal_only_paired=not dual_only
    )
    terms.total.backward()
    if not dual_only:
        ctx.opt_p.step()
    ctx.opt_d.step()
    ctx.net.requires_grad_(True)
    return terms.item()


def _save_state(ctx: _Context, step: int, elapsed: float) -> Path:
    """Write the resumable state atomically beside the output."""
    from ..checkpoint import serialize_checkpoint
    from ..fileio import atomic_write_bytes

    state = TrainingState(
        step=step,
        config=ctx.run,
        optimizers={"model": ctx.opt_p.state_dict(), "dual": ctx.opt_d.state_dict()},
        extra={"elapsed": elapsed},
    )
    tensors, header = encode_state(state)
    meta = {"stage": "adapt-state", "step": step}
    data = serialize_checkpoint(ctx.net, ctx.duals, meta, tensors, header)
    return atomic_write_bytes(ctx.state_file, data)


class _progress:
    """A tqdm bar with ETA on a terminal; plain log lines (no escape codes) elsewhere."""

    def __init__(
        self, total: int, initial: int, enabled: bool, seconds_left: float | None = None
    ) -> None:
        self.total = total
        self.seconds_left = seconds_left  # the --minutes budget: the ETA is the sooner end
        self.tty = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self.start = time.perf_counter()
        self.initial = initial
        self.every = max(1, total // 20) if total < 10**8 else 25
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            bounded = seconds_left is None or total < 10**8  # --minutes alone: no step total
            self.bar = tqdm(
                total=total if bounded else None, initial=initial, desc="adapt", dynamic_ncols=True
            )

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            post = {"loss": f"{metrics.get('loss', 0):.3g}"}
            if self.seconds_left is not None:
                left = self.seconds_left - (time.perf_counter() - self.start)
                post["left"] = f"{max(0.0, left) / 60:.1f} min"
            self.bar.set_postfix(post, refresh=False)
        elif self.enabled and (step % self.every == 0 or step == self.total):
            done = step - self.initial
            rate = (time.perf_counter() - self.start) / max(1, done)
            eta = rate * (self.total - step)
            if self.seconds_left is not None:
                eta = min(eta, max(0.0, self.seconds_left - (time.perf_counter() - self.start)))
            of = f"/{self.total}" if self.total < 10**8 else ""
            print(
                f"adapt: step {step}{of}, loss {metrics.get('loss', 0):.4g}, "
                f"{rate:.2f} s/step, ETA {eta / 60:.1f} min",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
