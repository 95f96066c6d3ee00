"""Reading saved files safely: JSON (:func:`read_json`) and tensors-only torch files
(:func:`torch_load_tensors`); a damaged file raises ``CorruptFileError`` naming it."""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import IO, Any

import torch

from mfinfer.errors import CorruptFileError

__all__ = ["read_json", "torch_load_tensors"]


def _parse_json(raw: bytes, path: Path, fix: str | None = None) -> Any:
    """Decode UTF-8 JSON, naming ``path`` in a ``CorruptFileError``."""
    fix = fix or "restore it from a backup, or delete it and rerun the step that wrote it"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorruptFileError(f"{path}: expected UTF-8 JSON text, got a byte that is not UTF-8 at "
                               f"offset {err.start} (a binary or damaged file); {fix}") from None
    if not text.strip():
        raise CorruptFileError(f"{path}: expected JSON, got an empty file (truncated); {fix}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CorruptFileError(f"{path}: expected JSON, got invalid JSON at line {err.lineno} column "
                               f"{err.colno} ({err.msg}; truncated or damaged); {fix}") from None


def read_json(path: str | Path) -> Any:
    """Read a JSON file (UTF-8).

    Raises:
        FileNotFoundError: the file is missing.
        CorruptFileError: it is not UTF-8 JSON (the message names the file and where it breaks).
    """
    path = Path(path)
    return _parse_json(path.read_bytes(), path)


def _short_reason(err: BaseException) -> str:
    """A one-line description of a loader's error, without its advice (torch suggests
    ``weights_only=False``, which would unpickle arbitrary code)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text.split(". ")[0]
    if "weights_only" in text or "Weights only" in text:
        text = ""
    if isinstance(err, EOFError) and not text:
        text = "the data ended early"
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def torch_load_tensors(
    file: str | Path | IO[bytes],
    path: str | Path,
    *,
    map_location: Any = None,
    fix: str = "write it again or restore it from a backup",
) -> Any:
    """``torch.load(file, weights_only=True)``: tensors, numbers, strings, lists and dicts only.

    ``path`` names the file in errors. Every failure becomes a ``CorruptFileError``: a damaged or
    truncated file, a file that is not a ``torch.save`` file, and a pickle holding other Python
    objects, which is refused (unpickling it could run arbitrary code).
    """
    path = Path(path)
    try:
        size = os.fstat(file.fileno()).st_size if hasattr(file, "fileno") else os.stat(file).st_size
    except (OSError, ValueError, io.UnsupportedOperation):
        size = -1
    if size == 0:
        raise CorruptFileError(f"{path}: expected a PyTorch file (torch.save), got an empty file "
                               f"(0 bytes: the write was cut off); {fix}")
    try:
        with warnings.catch_warnings():  # torch asks to "file an issue" for pickle protocols > 2
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(file, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err) or "WeightsUnpickler" in str(err):
            raise CorruptFileError(
                f"{path}: expected only tensors, numbers, strings, lists and dicts (what mfinfer writes), "
                "got a pickle holding other Python objects (non-tensor objects, or a plain pickle of a "
                "class); it will not be loaded, since unpickling arbitrary objects can run code; "
                f"{fix}") from None
        raise CorruptFileError(f"{path}: expected a PyTorch file (torch.save), got a damaged pickle "
                               f"({_short_reason(err)}); {fix}") from None
    except Exception as err:  # the loader's many ways to fail on bad bytes: zip, EOF, key errors...
        raise CorruptFileError(f"{path}: expected a PyTorch file (torch.save), got a truncated or "
                               f"damaged file ({_short_reason(err)}); {fix}") from None
