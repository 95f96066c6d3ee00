"""Small shared helpers: atomic file writes, safe JSON, seeding, device selection."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_json",
    "json_default",
    "progress_bar",
    "read_json",
    "resolve_device",
    "seed_everything",
]


def atomic_write(path: str | Path, write: Any, mode: str = "wb") -> Path:
    """Call ``write(f)`` on a temporary file next to ``path``, then rename it into place.

    A crash midway leaves any previous file at ``path`` intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write(
        path, lambda f: json.dump(obj, f, indent=2, sort_keys=True, default=json_default), "w"
    )


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


def read_json(path: str | Path) -> Any:
    """Read a JSON file, naming the file in the error if it is corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt JSON ({err}); delete it or restore it from the run") from err


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str | None = None) -> torch.device:
    """``"auto"``/None -> CUDA if available else CPU; otherwise ``torch.device(device)``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def progress_bar(iterable: Any = None, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar that shows only when ``enabled`` and stderr is a terminal (quiet in CI logs,
    ``nohup`` and redirected output)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=None if enabled else True, **kwargs)
