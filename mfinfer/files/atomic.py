"""Atomic writes: a temp file in ``<dir>/.tmp/``, fsynced, then renamed onto the target. The temps
and their removal once their writer is gone (:func:`clean_temp`, re-exported here) live in
:mod:`mfinfer.files.temps`. See :mod:`mfinfer.files`."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfinfer.files.temps import (
    _HOST,
    TEMP_DIR,
    _clean_once,
    _fsync_dir,
    _remove_if_empty,
    clean_temp,
)

__all__ = [
    "TEMP_DIR",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_json",
    "clean_temp",
    "json_default",
]

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


