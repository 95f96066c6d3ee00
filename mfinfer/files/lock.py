"""A lock on a run directory, so two processes never work in one at once (:func:`directory_lock`).

The lock is ``<dir>/.lock``, held with ``fcntl.flock`` while a process works in the directory; it
records the holder's PID and host. A second process that asks for it gets :class:`LockedError`
naming that PID (or waits up to ``wait`` seconds for it). The kernel drops the lock when its holder
exits, however it exits, so a lock file left by a killed process is stale by construction: it is
reused, never trusted. Within one process the lock is re-entrant (nested stages of one run).
Where ``fcntl`` is missing (Windows) the lock is a no-op.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from mfinfer.errors import MfinferError

__all__ = ["LOCK_FILE", "LockedError", "directory_lock", "locked"]

#: The lock file's name inside the locked directory.
LOCK_FILE = ".lock"

F = TypeVar("F", bound=Callable[..., Any])
_held: dict[str, tuple[int, int]] = {}  # absolute path -> (fd, depth), this process's locks
_guard = threading.Lock()


class LockedError(MfinferError, OSError):
    """Another process works in the directory; the message names its PID."""


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"process {int(info['pid'])} on host {info['host']!r}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def directory_lock(directory: str | Path, wait: float = 0.0, what: str = "run") -> Iterator[Path]:
    """Hold the lock of ``directory`` (created if missing) for the ``with`` block.

    Args:
        directory: the directory to lock.
        wait: seconds to wait for another holder to finish (0: fail at once).
        what: what works there, for the message (``"run"``).

    Raises:
        LockedError: another process holds it (after ``wait`` seconds); names its PID.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield Path(directory)
        return
    directory = Path(directory)
    path = os.path.abspath(directory / LOCK_FILE)
    with _guard:
        if path in _held:
            fd, depth = _held[path]
            _held[path] = (fd, depth + 1)
            reentrant = True
        else:
            reentrant = False
    if not reentrant:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(fd)
                    os.close(fd)
                    raise LockedError(
                        f"{directory}: in use by {holder} (lock {path}); wait for that {what} to "
                        f"finish or stop it, or use another output_dir") from None
                time.sleep(0.1)
            except BaseException:
                os.close(fd)
                raise
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        with _guard:
            _held[path] = (fd, 1)
    try:
        yield directory
    finally:
        with _guard:
            fd, depth = _held[path]
            if depth > 1:
                _held[path] = (fd, depth - 1)
            else:
                del _held[path]
                os.close(fd)  # releases the flock; the file stays (removing it would race)


def locked(method: F) -> F:
    """A method of an object with a ``dir`` attribute that runs holding ``directory_lock(self.dir)``
    (the stages of :class:`mfinfer.pipeline.Run`)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with directory_lock(self.dir):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
