"""Atomic writes: a temp file in ``<dir>/.tmp/``, fsynced, then renamed onto the target; and the
removal of temps left by writers that are gone (:func:`clean_temp`). See :mod:`mfinfer.files`."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "TEMP_DIR",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_json",
    "clean_temp",
    "json_default",
]

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
_umask_lock = threading.Lock()


# --------------------------------------------------------------------------------------------
# atomic writes


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (``os.umask`` sets it)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


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


def _write_temp(path: Path, write: Callable[[Any], object], mode: str, pair: bool = False) -> Path:
    """Write ``path``'s content into a new fsynced temp in ``<dir>/.tmp/``; returns the temp."""
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    _clean_once(parent)
    tmpdir = parent / TEMP_DIR
    for attempt in range(5):
        tmpdir.mkdir(exist_ok=True)
        try:
            fd, name = tempfile.mkstemp(dir=tmpdir, prefix=f"{path.name}.{_HOST}-{os.getpid()}.",
                                        suffix=".pair.tmp" if pair else ".tmp")
            break
        except FileNotFoundError:  # another writer removed the empty .tmp/ in between: retry
            if attempt == 4:
                raise
    tmp = Path(name)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            write(f)
            f.flush()
            if os.name == "posix":  # mkstemp made it 0600: give it the mode open() would
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
    except OSError as err:
        tmp.unlink(missing_ok=True)
        _remove_if_empty(tmpdir)
        if err.filename is None and err.errno is not None:  # a failed write (disk full, quota...)
            raise OSError(err.errno, f"{err.strerror} while writing {path}", str(path)) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        _remove_if_empty(tmpdir)
        raise
    return tmp


def atomic_write(path: str | Path, write: Any, mode: str = "wb") -> Path:
    """Call ``write(f)`` on a temporary file in ``<dir>/.tmp/``, then rename it onto ``path``.

    A crash midway leaves any previous file at ``path`` intact (and a temp that the next write
    into the directory, or :func:`clean_temp`, removes). The file gets the mode ``0o666 & ~umask``.
    Text modes write UTF-8.
    """
    path = Path(path)
    tmp = _write_temp(path, write, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _remove_if_empty(tmp.parent)
    _fsync_dir(path.parent)
    return path


def atomic_write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write(path, lambda f: f.write(_json_text(obj)), "w")


def _json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=json_default)


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook: numpy scalars and arrays, paths; anything else is an error."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"expected JSON-serialisable values (numbers, strings, lists, dicts), got "
                    f"{type(obj).__name__}: {obj!r}")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically (tensors, dicts, lists and numbers only, so it reloads with
    ``weights_only=True``)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


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
    from mfinfer.files.pairs import _roll_forward  # here: pairs imports this module

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
