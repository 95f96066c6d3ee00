"""Directories a run created and may delete: :func:`claim_dir` and :func:`remove_owned_dir`.

mfinfer deletes a directory only when all of these hold: it lies strictly inside the root the
caller names (the run directory), is not a symbolic link, and holds the marker ``.mfinfer-owned``
that :func:`claim_dir` wrote when it created the directory, recording its path relative to the
root (so a marker copied elsewhere does not count). A directory from before the markers existed
counts only if the caller's ``legacy`` check recognises it (e.g. its ``identity.json`` names the
same model). Anything else is refused with a ``ConfigError`` naming the directory, and nothing is
deleted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from mfinfer.errors import ConfigError
from mfinfer.files.atomic import atomic_write_json
from mfinfer.files.loading import read_json

__all__ = ["OWNER_MARKER", "claim_dir", "recorded", "remove_owned_dir"]

#: The marker file of a directory mfinfer created (JSON: ``{"created_by", "path"}``).
OWNER_MARKER = ".mfinfer-owned"


def _inside(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (both resolved), refused unless strictly inside it."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    rel = os.path.relpath(real, base)
    if rel == "." or rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        raise ConfigError(f"{path}: refused: lies outside the run directory {root} (or is it); "
                          "mfinfer creates and deletes only directories inside it")
    return rel


def claim_dir(path: str | Path, root: str | Path) -> Path:
    """Create ``path`` (strictly inside ``root``) and mark it as created by this run; a directory
    that already exists is marked only if it is already ours (never adopted)."""
    path, root = Path(path), Path(root)
    rel = _inside(path, root)
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        return path
    atomic_write_json({"created_by": "mfinfer", "path": rel.replace(os.sep, "/")}, path / OWNER_MARKER)
    return path


def _owned(path: Path, rel: str) -> bool:
    try:
        marker = read_json(path / OWNER_MARKER)
    except OSError:
        return False
    return (isinstance(marker, dict) and marker.get("created_by") == "mfinfer"
            and marker.get("path") == rel.replace(os.sep, "/"))


def recorded(file: str, *where: str, equals: str) -> Callable[[Path], bool]:
    """A ``legacy`` check for :func:`remove_owned_dir`: whether the JSON ``file`` in the directory
    holds ``equals`` at ``obj[where[0]][where[1]]...`` (e.g. an ``identity.json`` naming the model)."""
    def check(directory: Path) -> bool:
        try:
            obj = read_json(directory / file)
        except OSError:
            return False
        for key in where:
            obj = obj.get(key) if isinstance(obj, dict) else None
        return obj == equals

    return check


def remove_owned_dir(path: str | Path, root: str | Path,
                     legacy: Callable[[Path], bool] | None = None) -> None:
    """Delete ``path`` and its content if this run owns it (see the module docstring).

    Raises:
        ConfigError: ``path`` is outside ``root``, a symbolic link, or not marked as ours; it is
            left as it is.
    """
    path, root = Path(path), Path(root)
    if path.is_symlink():
        raise ConfigError(f"{path}: refused to delete a symbolic link that mfinfer did not create; "
                          "remove it yourself, then run again")
    rel = _inside(path, root)
    if not (_owned(path, rel) or (legacy is not None and legacy(path))):
        raise ConfigError(f"{path}: not deleted: mfinfer did not create this directory (no "
                          f"{OWNER_MARKER} marker); move it away or delete it yourself, then run again")
    shutil.rmtree(path)
