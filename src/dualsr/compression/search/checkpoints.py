"""Checkpoints of a channel number search (``dualsr search``): save, stop, resume.

A search checkpoint is a training checkpoint (:mod:`dualsr.training.state`, the same safetensors
format and helpers) of the search's model and duals, plus the search state:

* ``optim.weights.*`` / ``optim.alphas.*``: the Adam states of the weights and of the logits;
* ``train.tensor.alpha.<i>``: the architecture logits of every searched layer;
* ``train.rng.*`` and the header: the step, the resolved options (``config``), the LR schedules
  (the schedulers' states: the weights', and the logits' when it is annealed), the history
  recorded so far, the seconds spent, the Python, numpy and torch RNG states, and what the
  caller adds (``info``: the model source, the data).

Files: ``OUT/checkpoints/search-step-000123.safetensors``, written atomically; the last
``keep`` (2) are kept. :func:`load_search_checkpoint` reads the newest usable one and falls back
to the previous one, with a warning, when the newest is unreadable.
"""

from __future__ import annotations

import shlex
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, DualSRError
from ...models.drn import DRN, DualModels
from ...training.state import (
    CHECKPOINT_DIR,
    TrainingState,
    load_for_resume,
    run_has_checkpoints,
    save_training_checkpoint,
    step_checkpoints,
)
from .options import DEFAULT_SAVE_EVERY, parse_save_every
from .run import SearchState

PREFIX = "search-step"  # checkpoints/search-step-000123.safetensors
KIND = "search"
KEEP = 2
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class LoadedSearch:
    """A search checkpoint read back: the model, the duals and the search state."""

    path: Path
    model: DRN
    duals: DualModels | None
    state: SearchState
    metadata: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# When to save
# ----------------------------------------------------------------------------------------------
def save_interval(value: str | int) -> tuple[int, float]:
    """``(steps, seconds)`` of a :func:`parse_save_every` value (0 where not used)."""
    parsed = parse_save_every(value)
    if isinstance(parsed, int):
        return parsed, 0.0
    return 0, float(parsed[:-1]) * _SECONDS[parsed[-1]]


class SearchCheckpoints:
    """Where and when :func:`~dualsr.compression.search.search_channels` saves its state.

    What :mod:`~dualsr.compression.search.run` needs of it is its
    :class:`~dualsr.compression.search.run.Checkpointer` protocol.

    Args:
        out_dir: the search's output folder (checkpoints go to ``OUT/checkpoints/``).
        every: steps (``50``) or a duration (``"5m"``) between saves; 0: only at the end, on a
            stop request (SIGINT/SIGTERM, a callback) and after an error.
        options: the resolved options, stored so that a resumed run needs no other flags.
        info: anything else JSON-serialisable to store (e.g. the model source).
        metadata: extra provenance in the checkpoint header.
        keep: how many checkpoints to keep.
    """

    def __init__(
        self,
        out_dir: str | Path,
        every: str | int = DEFAULT_SAVE_EVERY,
        *,
        options: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        keep: int = KEEP,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.every_steps, self.every_seconds = save_interval(every)
        self.options = dict(options or {})
        self.info = dict(info or {})
        self.metadata = dict(metadata or {})
        self.keep = keep
        self.last_save = time.monotonic()

    @property
    def resume_command(self) -> str:
        """The command that continues the search."""
        return shlex.join(["dualsr", "search", "--resume", str(self.out_dir)])

    def due(self, step: int, steps: int) -> bool:
        """True when a checkpoint is due after ``step`` of ``steps``."""
        if step >= steps:
            return True
        if self.every_steps and step % self.every_steps == 0:
            return True
        return bool(self.every_seconds) and time.monotonic() - self.last_save >= self.every_seconds

    def save(self, model: DRN, duals: DualModels | None, state: SearchState) -> Path:
        """Write the checkpoint of ``state`` (atomically) and drop all but the last ``keep``."""
        path = save_training_checkpoint(
            self.out_dir,
            model,
            duals,
            encode_search_state(state, self.options, self.info),
            keep=self.keep,
            metadata={"stage": KIND, "steps": state.steps, **self.metadata},
            prefix=PREFIX,
            latest=None,
        )
        self.last_save = time.monotonic()
        return path

    def clear(self) -> None:
        """Delete the checkpoints (the search finished and its result files are written)."""
        clear_search_checkpoints(self.out_dir)


def encode_search_state(
    state: SearchState,
    options: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
) -> TrainingState:
    """``state`` as a :class:`~dualsr.training.state.TrainingState` (what the files hold)."""
    return TrainingState(
        step=state.step,
        config=dict(options if options is not None else state.options),
        optimizers=state.optimizers,
        extra={
            "kind": KIND,
            "steps": state.steps,
            "schedule": state.schedule,
            "alpha_schedule": state.alpha_schedule,
            "history": state.history,
            "seconds": state.seconds,
            "info": dict(info if info is not None else state.info),
        },
        rng=state.rng,
        tensors={f"alpha.{i}": a.detach() for i, a in enumerate(state.alphas)},
    )


def decode_search_state(state: TrainingState, path: Path) -> SearchState:
    """Inverse of :func:`encode_search_state`; CheckpointError if ``path`` is no search state."""
    extra = state.extra
    if extra.get("kind") != KIND:
        raise CheckpointError(
            f"{path} is a training checkpoint, not a search checkpoint (no search state)"
        )
    try:
        count = len([k for k in state.tensors if k.startswith("alpha.")])
        alphas = [state.tensors[f"alpha.{i}"] for i in range(count)]
        for name in ("weights", "alphas"):
            if name not in state.optimizers:
                raise KeyError(f"optimizer {name!r}")
        return SearchState(
            step=state.step,
            steps=int(extra["steps"]),
            alphas=alphas,
            optimizers=state.optimizers,
            schedule=dict(extra["schedule"]),
            alpha_schedule=dict(extra.get("alpha_schedule") or {}),
            history=list(extra.get("history", [])),
            seconds=float(extra.get("seconds", 0.0)),
            rng=state.rng,
            options=dict(state.config),
            info=dict(extra.get("info", {})),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: damaged search state ({exc!r})") from exc


# ----------------------------------------------------------------------------------------------
# Finding and loading
# ----------------------------------------------------------------------------------------------
def search_checkpoints(out_dir: str | Path) -> list[Path]:
    """The search checkpoints in ``out_dir``, oldest first."""
    return [p for _, p in step_checkpoints(out_dir, PREFIX)]


def has_search_checkpoints(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds an unfinished search's checkpoints."""
    return run_has_checkpoints(out_dir, PREFIX, None)


def clear_search_checkpoints(out_dir: str | Path) -> None:
    """Delete the search checkpoints of ``out_dir`` (and their folder once it is empty)."""
    for path in search_checkpoints(out_dir):
        path.unlink(missing_ok=True)
    folder = Path(out_dir) / CHECKPOINT_DIR
    if folder.is_dir() and not any(folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


def load_search_checkpoint(out_dir: str | Path) -> LoadedSearch:
    """The newest usable search checkpoint of ``out_dir``.

    An unreadable (e.g. truncated) newest checkpoint is reported with a warning and the previous
    one is used. DualSRError when ``out_dir`` holds none, or none that can be read.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise DualSRError(f"cannot resume: {out} is not a folder (give the -o of the search)")
    if not has_search_checkpoints(out):
        finished = " (its search.json says it finished)" if (out / "search.json").is_file() else ""
        raise DualSRError(
            f"cannot resume: {out} holds no search checkpoints ({CHECKPOINT_DIR}/{PREFIX}-"
            f"*.safetensors){finished}; start a new search without --resume"
        )
    loaded = load_for_resume(out, PREFIX, None)
    state = decode_search_state(loaded.state, loaded.path)
    ckpt = loaded.checkpoint
    return LoadedSearch(loaded.path, ckpt.model, ckpt.duals, state, ckpt.metadata)
