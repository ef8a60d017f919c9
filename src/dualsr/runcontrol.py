"""Run control shared by the long-running loops (training, channel search, adaptation).

- :class:`StopSignals` turns the first SIGINT/SIGTERM into a request to save and stop at the next
  step boundary (a second SIGINT aborts), and puts the previous handlers back afterwards (the
  process-wide SIGTERM handler that :func:`dualsr.cli.sigterm_as_interrupt` installs included);
- :func:`save_after_error` keeps the steps done since the last checkpoint when a loop stops with
  an exception, and says how to continue.

This module depends on nothing else in the package, so the compression code can stop and save
like training does without importing the training loop.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

#: The logger the stop requests have always been reported on (training, search and adaptation).
log = logging.getLogger("dualsr.train")


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a request to save and stop; a second SIGINT aborts.

    Use as a context manager around a loop that checks :attr:`received` (the signal's name, or
    None) after each step. Outside the main thread nothing is installed.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = name
        log.warning("%s received: saving a checkpoint after this step, then stopping", name)


def stop_cause(exc: BaseException) -> str:
    """How a run ended early, for its log line: "interrupted" (Ctrl-C) or "stopped by an error"."""
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by an error"


def save_after_error(
    exc: BaseException,
    step: int,
    save: Callable[[], str],
    resume_command: str,
    logger: logging.Logger,
) -> None:
    """After ``exc`` stopped a run at ``step``, save what can be kept and say how to continue.

    ``save()`` saves (or decides to keep the last checkpoint) and returns what it did, e.g.
    ``"saved PATH"``. If it fails too (a full disk), that is logged and the first error stays the
    one reported; otherwise one line: ``"<cause> at step N: <what save did>; continue with:
    <resume_command>"``.
    """
    try:
        saved = save()
    except Exception as save_exc:  # e.g. the disk is full: say so, and report the first error
        logger.error("could not save a checkpoint after the error either: %s", save_exc)
        return
    logger.error(
        "%s at step %d: %s; continue with: %s", stop_cause(exc), step, saved, resume_command
    )
