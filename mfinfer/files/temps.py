"""The temporary files of atomic writes: where they go, whose they are, and the clean-up after
writers that are gone (:func:`clean_temp`), which finishes a pair write that died between its
renames. The lowest layer of :mod:`mfinfer.files`: ``atomic`` and ``pairs`` build on it."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import threading
import time
from pathlib import Path

from mfinfer.files.digests import _matches, _recorded_digests

__all__ = ["FOREIGN_TEMP_AGE_S", "TEMP_DIR", "clean_temp"]

#: The folder, inside the target's directory, that holds the temporary files of atomic writes.
TEMP_DIR = ".tmp"
#: Temps written on another host (their writer's liveness cannot be checked) count as stale after
#: this many seconds without modification.
FOREIGN_TEMP_AGE_S = 24 * 3600.0

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_START = time.time()  # temps named with our pid but older than this are from an earlier process
_TEMP_RE = re.compile(
    r"^(?P<target>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d{1,10})\.[a-z0-9_]+(?P<pair>\.pair)?\.tmp$"
)
_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()


def _fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable (a no-op where directories cannot be fsynced)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _remove_if_empty(tmpdir: Path) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(tmpdir)


# --------------------------------------------------------------------------------------------
# stale temps


def _alive(pid: int) -> bool:
    """Whether process ``pid`` (on this host) still runs; a zombie counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OSError, OverflowError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[:1]
        return state != [b"Z"]
    except OSError:
        return True


def _stale(match: re.Match[str], mtime: float) -> bool:
    """Whether the temp named by ``match`` was left by a writer that is gone."""
    if match["host"] != _HOST:
        return time.time() - mtime > FOREIGN_TEMP_AGE_S
    pid = int(match["pid"])
    if pid == os.getpid():
        return mtime < _START
    return not _alive(pid)


def _temps(directory: Path) -> list[tuple[Path, re.Match[str], float]]:
    """``(path, name match, mtime)`` of our temp files in ``directory/.tmp/``, newest first."""
    try:
        entries = list(os.scandir(directory / TEMP_DIR))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        out.append((Path(entry.path), match, mtime))
    return sorted(out, key=lambda t: -t[2])


def clean_temp(directory: str | Path) -> list[Path]:
    """Remove the temps in ``directory/.tmp/`` left by writers that are gone; returns them.

    A temp is stale when its writer (pid and host are in its name) no longer runs, or it has our
    pid but predates this process, or it comes from another host and is older than
    ``FOREIGN_TEMP_AGE_S``. Temps of live writers are kept. A stale committed pair sidecar whose
    data files are already in place is renamed into place instead (the writer died between the
    renames). Writers call this once per directory per process; a pipeline may call it at start.
    """
    directory = Path(directory)
    with _cleaned_lock:
        _cleaned.add(os.path.abspath(directory))
    removed = []
    for path, match, mtime in _temps(directory):
        if not _stale(match, mtime):
            continue
        if match["pair"] and _roll_forward(directory / match["target"], path):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    _remove_if_empty(directory / TEMP_DIR)
    return removed


def _clean_once(directory: Path) -> None:
    with _cleaned_lock:
        if os.path.abspath(directory) in _cleaned:
            return
    with contextlib.suppress(OSError):  # best effort: the write itself reports real problems
        clean_temp(directory)


def _roll_forward(sidecar: Path, temp: Path) -> bool:
    """Finish an interrupted pair write: rename its committed sidecar ``temp`` onto ``sidecar``
    if the data files in place match it and the present sidecar does not match them."""
    try:
        digests = _recorded_digests(json.loads(temp.read_bytes()))
    except (OSError, ValueError):
        return False
    if digests is None or not _matches(sidecar.parent, digests):
        return False
    try:
        current = _recorded_digests(json.loads(sidecar.read_bytes()))
    except FileNotFoundError:
        current = None
    except (OSError, ValueError):
        current = None
    if current is not None and _matches(sidecar.parent, current):
        return False
    try:
        os.replace(temp, sidecar)
        _fsync_dir(sidecar.parent)
    except OSError:
        return False
    _remove_if_empty(temp.parent)
    return True
