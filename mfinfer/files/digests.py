"""SHA-256 digests of files, and the ``"sha256"`` map that a pair's sidecar records (see
:mod:`mfinfer.files`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    with open(path, "rb") as f:
        return _sha256_of(f)


def _sha256_of(f: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _recorded_digests(fields: Any) -> dict[str, str] | None:
    """The ``"sha256"`` map of a sidecar's fields if well formed (plain file names -> hex)."""
    if not isinstance(fields, dict):
        return None
    digests = fields.get("sha256")
    if not isinstance(digests, dict) or not digests:
        return None
    for name, value in digests.items():
        if (not isinstance(value, str) or not isinstance(name, str) or name in ("", ".", "..")
                or "/" in name or os.sep in name):
            return None
    return digests


def _matches(directory: Path, digests: Mapping[str, str]) -> bool:
    try:
        return all(sha256_file(directory / name) == value for name, value in digests.items())
    except OSError:
        return False
