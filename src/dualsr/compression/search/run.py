"""The bookkeeping of a running channel search: its mutable state (:class:`SearchRun`) and the
snapshot of it that a checkpoint holds (:class:`SearchState`), the step loop with stop signals and
periodic checkpoints (:func:`run_steps`), saving after an error (:func:`save_after_error`) and
checking that a checkpoint fits the search it resumes (:func:`check_resume`). The search itself is
:class:`dualsr.compression.search.channels.ChannelSearch`; the checkpoint files are written by
:class:`dualsr.compression.search.checkpoints.SearchCheckpoints`, which this module knows only as
a :class:`Checkpointer` (so that it imports no module above it).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from ... import runcontrol
from ...errors import ConfigError
from ...models.drn import DRN, DualModels
from ...runcontrol import StopSignals, stop_cause

log = logging.getLogger("dualsr.search")


@dataclass
class SearchState:
    """Everything a resumed search needs besides the model and dual weights.

    ``step`` steps of ``steps`` are done. ``optimizers`` holds the ``weights`` and ``alphas``
    Adam states, ``schedule`` the weights' LR scheduler state, ``alpha_schedule`` the logits'
    (empty when their learning rate is constant); ``seconds`` is the search time
    spent so far; ``options`` the resolved options of the run (empty from the library) and
    ``info`` what else the caller stored (e.g. the model source).
    """

    step: int
    steps: int
    alphas: list[torch.Tensor]
    optimizers: dict[str, dict[str, Any]]
    schedule: dict[str, Any]
    alpha_schedule: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    rng: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class Checkpointer(Protocol):
    """Where and when the state is saved: what :func:`run_steps` needs of
    :class:`~dualsr.compression.search.checkpoints.SearchCheckpoints`."""

    @property
    def resume_command(self) -> str:
        """The command that continues the search."""
        ...

    def due(self, step: int, steps: int) -> bool:
        """True when a checkpoint is due after ``step`` of ``steps``."""
        ...

    def save(self, model: DRN, duals: DualModels | None, state: SearchState) -> Path:
        """Write the checkpoint of ``state``; its path."""
        ...


class SearchRun:
    """The mutable state of a search: what a checkpoint holds, and how far it is consistent.

    A step first computes the logit gradient (nothing changes), then updates the logits, then
    computes and applies the weight update. An error before the weight update is undone by
    restoring the logits and their optimizer from :attr:`backup`, so the last completed step can
    still be saved; an error during the weight update itself (``updating``) cannot be undone.
    """

    def __init__(
        self,
        model: DRN,
        duals: DualModels,
        alphas: list[torch.Tensor],
        w_opt: torch.optim.Optimizer,
        a_opt: torch.optim.Optimizer,
        sched: torch.optim.lr_scheduler.LRScheduler,
        steps: int,
        start: float,
        a_sched: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        self.model, self.duals, self.alphas = model, duals, alphas
        self.w_opt, self.a_opt, self.sched, self.a_sched = w_opt, a_opt, sched, a_sched
        self.steps = steps
        self.start = start  # perf_counter() at the start of this call
        self.seconds_before = 0.0  # spent before a resume
        self.done = 0  # steps completed
        self.history: list[dict] = []
        self.saved_step: int | None = None  # the step of the newest checkpoint
        self.checkpoint: Path | None = None  # the newest checkpoint written by this call
        self.backup: tuple[list[torch.Tensor], dict] | None = None
        self.updating = False

    def seconds(self) -> float:
        """Search time so far, over every resumed part."""
        return self.seconds_before + time.perf_counter() - self.start

    def restore(self, state: SearchState) -> None:
        """Continue from ``state``: optimizers, schedule, step, history, time and RNG states."""
        from ...training.state import restore_rng  # here: dualsr.training loads its loop

        self.w_opt.load_state_dict(state.optimizers["weights"])
        self.a_opt.load_state_dict(state.optimizers["alphas"])
        self.sched.load_state_dict(state.schedule)
        if (self.a_sched is not None) != bool(state.alpha_schedule):
            saved = "cosine" if state.alpha_schedule else "constant"
            raise ConfigError(
                f"the saved search has a {saved} logit learning rate: resume it with "
                f"alpha_schedule={saved!r} (--alpha-schedule {saved})"
            )
        if self.a_sched is not None:
            self.a_sched.load_state_dict(state.alpha_schedule)
        self.done = self.saved_step = state.step
        self.history = [dict(h) for h in state.history]
        self.seconds_before = state.seconds
        restore_rng(state.rng)

    def state(self) -> SearchState:
        """A snapshot of the state after :attr:`done` steps."""
        from ...training.state import capture_rng  # here: dualsr.training loads its loop

        return SearchState(
            step=self.done,
            steps=self.steps,
            alphas=[a.detach() for a in self.alphas],
            optimizers={"weights": self.w_opt.state_dict(), "alphas": self.a_opt.state_dict()},
            schedule=self.sched.state_dict(),
            alpha_schedule=self.a_sched.state_dict() if self.a_sched is not None else {},
            history=self.history,
            seconds=self.seconds(),
            rng=capture_rng(),
        )

    def save(self, checkpoints: Checkpointer) -> Path:
        """Write a checkpoint of the completed steps."""
        self.checkpoint = checkpoints.save(self.model, self.duals, self.state())
        self.saved_step = self.done
        return self.checkpoint

    def backup_alphas(self) -> None:
        """Remember the logits and their optimizer before they are updated."""
        self.backup = (
            [a.detach().clone() for a in self.alphas],
            copy.deepcopy(self.a_opt.state_dict()),
        )

    def complete(self, record: dict) -> None:
        """Count a finished step."""
        self.history.append(record)
        self.done = record["step"]
        self.backup = None
        self.updating = False

    def roll_back(self) -> bool:
        """Undo a step interrupted before its weight update; False if it cannot be undone."""
        if self.updating:
            return False
        if self.backup is not None:
            values, a_state = self.backup
            with torch.no_grad():
                for a, v in zip(self.alphas, values, strict=True):
                    a.copy_(v)
            self.a_opt.load_state_dict(a_state)
            self.backup = None
        return True


def run_steps(
    run: SearchRun,
    one_step: Callable[[int], dict],
    progress: Callable[[dict], bool | None] | None,
    checkpoints: Checkpointer | None,
    after_step: Callable[[int], None] | None = None,
) -> str | None:
    """The steps from ``run.done`` to the end, or to a stop request (its reason is returned).

    ``after_step(step)`` runs after each completed step, before ``progress`` and the checkpoint
    (so what it adds to the step's history record is saved with it)."""
    signals: Any = None
    if checkpoints is not None:
        signals = StopSignals()
    try:
        with signals if signals is not None else contextlib.nullcontext():
            for step in range(run.done + 1, run.steps + 1):
                run.complete(one_step(step))
                if after_step is not None:
                    after_step(step)
                wants_stop = progress is not None and bool(progress(run.history[-1]))
                received = signals.received if signals is not None else None
                reason = received or ("callback" if wants_stop else None)
                if step == run.steps:  # a stop request after the last step: the search is done
                    reason = None
                if checkpoints is not None and (reason or checkpoints.due(step, run.steps)):
                    run.save(checkpoints)
                if reason:
                    if checkpoints is not None:
                        log.warning(
                            "stopped at step %d of %d (%s): saved %s; continue with: %s",
                            run.done,
                            run.steps,
                            reason,
                            run.checkpoint,
                            checkpoints.resume_command,
                        )
                    return reason
    except BaseException as exc:
        if checkpoints is not None:
            save_after_error(run, checkpoints, exc)
        raise
    return None


def save_after_error(run: SearchRun, checkpoints: Checkpointer, exc: BaseException) -> None:
    """After an error mid-search, save the steps completed since the last checkpoint."""
    if not run.roll_back():
        if run.saved_step is not None:
            log.error(
                "%s during the weight update of step %d, which cannot be saved; the checkpoint "
                "of step %d is kept; continue with: %s",
                stop_cause(exc),
                run.done + 1,
                run.saved_step,
                checkpoints.resume_command,
            )
        return
    if run.done == 0:
        return

    def save() -> str:
        if run.saved_step == run.done:
            return f"the checkpoint of step {run.done} is kept"
        return f"saved {run.save(checkpoints)}"

    runcontrol.save_after_error(exc, run.done, save, checkpoints.resume_command, log)


def check_resume(state: SearchState, steps: int, layers: int, ratios: int) -> None:
    """ConfigError when ``state`` is not from a search with these steps, layers and ratios."""
    if state.steps != steps:
        raise ConfigError(
            f"the saved search runs {state.steps} steps, this one {steps}: resume with the "
            "same steps (or epochs and data)"
        )
    if not 0 <= state.step <= steps:
        raise ConfigError(f"the saved search is at step {state.step} of {steps}")
    shapes = [tuple(a.shape) for a in state.alphas]
    if shapes != [(ratios,)] * layers:
        raise ConfigError(
            f"the saved logits ({len(shapes)} layers, {shapes[0][0] if shapes else 0} "
            f"candidates) do not fit this model and ratios ({layers} layers, {ratios} "
            "candidates)"
        )
