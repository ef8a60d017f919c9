"""Atomic file writes: a file is either fully written or not touched at all.

The temporary file of a write is named after its writer (``.NAME.dualsr-MACHINE-PID.XXXXXXXX.tmp``
beside ``NAME``), so that a later write to the same folder can delete the temporary files left by a
writer that no longer exists (killed by SIGKILL, the out-of-memory killer, a power cut) while never
touching those of a live one (:func:`remove_stale_temp_files`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import tempfile
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path

from .errors import DualSRError

TEMP_TAG = "dualsr"
# .NAME.dualsr-MACHINE-PID.RANDOM.tmp (RANDOM: mkstemp's letters, digits and underscores)
_TEMP_RE = re.compile(
    rf"^\..+\.{TEMP_TAG}-(?P<machine>[0-9a-f]{{8}})-(?P<pid>\d+)\.[a-z0-9_]+\.tmp$"
)
_cleaned: set[Path] = set()  # folders already cleaned by this process (see remove_stale_temp_files)
_cleaned_lock = threading.Lock()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, fsync it, then rename.

    The destination is replaced only after the data is safely on disk, so an interrupted run or a
    full disk never leaves a half-written file behind (and never destroys the previous version).
    An exception, Ctrl-C, or a SIGTERM handled as one (the ``dualsr`` command does), removes the
    temporary file; the first write of a process into a folder also removes the temporary files
    that dead writers left there (:func:`remove_stale_temp_files`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_once(path.parent)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DualSRError(
                f"no space left on the device while writing {path}; free some space and retry "
                "(nothing was overwritten)"
            ) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where supported
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


# ----------------------------------------------------------------------------------------------
# Temporary files left by dead writers
# ----------------------------------------------------------------------------------------------
def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files of :func:`atomic_write` in ``folder`` whose writer is gone.

    Only files named by a process of this machine (same host name and PID namespace) whose
    process no longer exists are deleted; those of live processes, of other machines sharing the
    folder, and any other file are left alone. Returns the paths deleted. Not available on
    Windows (nothing is deleted there).
    """
    if os.name == "nt":  # os.kill(pid, 0) is not a liveness probe there
        return []
    machine = _machine_id()
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if match is None or match["machine"] != machine or _alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _clean_once(folder: Path) -> None:
    """:func:`remove_stale_temp_files` on the first write of this process into ``folder`` (one
    scan per folder: writing thousands of images into one folder stays linear)."""
    key = folder.resolve()
    with _cleaned_lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    remove_stale_temp_files(folder)


def _writer_tag() -> str:
    """``dualsr-MACHINE-PID``: who writes a temporary file (the PID changes after a fork)."""
    return f"{TEMP_TAG}-{_machine_id()}-{os.getpid()}"


@cache
def _machine_id() -> str:
    """8 hex digits naming this host and PID namespace: a PID means a process only there."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}\n{namespace}".encode()).hexdigest()[:8]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (an unknown answer counts as alive)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True
