"""Content keys and seeds by name: what lets a run directory reuse a result only for the same inputs.

A *content key* is the SHA-256 of a result's inputs written as canonical JSON (sorted keys, no
whitespace), arrays entering by :func:`array_digest` (their shape and float64 bytes). Two results
with the same key were computed from the same inputs, wherever they live; a changed input (the
events, the model's weights, the MCMC settings, the seed...) changes the key.

Seeds are derived from names, never from positions in a list: :func:`seed_sequence` feeds numpy's
``SeedSequence`` with ``[seed, stage code, *label words]``, where each label (a model name, a true
point) enters as :func:`stable_words`, four 32-bit words of its UTF-8 SHA-256 (Python's ``hash``
is salted per process and is never used). :func:`torch_seed` turns such a sequence into a
``torch.manual_seed`` value.

Stored keys are read back by :func:`npz_key`, :func:`json_key` and :func:`pair_key`, which give
None for a missing or damaged file: the result is then computed again.

Example:
    >>> content_key({"a": 1, "b": [1.5, None]}) == content_key({"b": [1.5, None], "a": 1})
    True
    >>> stable_words("AF")
    [3990106523, 617318131, 3664874532, 4144122978]
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mfinfer.files import open_pair, read_json

__all__ = ["KEY_VERSION", "array_digest", "canonical", "content_key", "json_key", "npz_key", "pair_key",
           "seed_sequence", "stable_words", "torch_seed"]

#: Enters every content key; raise it when the meaning of cached results changes.
KEY_VERSION = 1


#: Rows of a memory-mapped array hashed at a time by :func:`array_digest`.
DIGEST_CHUNK_ROWS = 65_536


def array_digest(*arrays: Any) -> str:
    """SHA-256 (64 hex digits) of arrays: each one's shape and float64 C-order bytes (None: a
    marker), so the same values give the same digest whatever their dtype or memory layout.

    Arguments:
        arrays: numpy arrays (memory-mapped ones read in chunks, never copied whole), torch
            tensors (moved to the CPU) or None.
    """
    digest = hashlib.sha256()
    for a in arrays:
        if a is None:
            digest.update(b"none;")
            continue
        if hasattr(a, "detach"):  # a torch tensor
            a = a.detach().cpu().numpy()
        if isinstance(a, np.memmap) and a.ndim:  # on disk: the same bytes, read in chunks
            digest.update(f"{a.shape};".encode())
            for start in range(0, len(a), DIGEST_CHUNK_ROWS):
                chunk = a[start:start + DIGEST_CHUNK_ROWS]
                digest.update(np.ascontiguousarray(chunk, dtype=np.float64).tobytes())
            continue
        a = np.ascontiguousarray(a, dtype=np.float64)
        digest.update(f"{a.shape};".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def canonical(obj: Any) -> Any:
    """``obj`` as plain JSON values, as a JSON round trip gives them: tuples become lists, keys
    strings, numpy scalars Python numbers, arrays ``{"array_sha256": digest}``."""
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"array_sha256": array_digest(obj)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"content_key: expected JSON-like values (dicts, lists, numbers, strings, "
                    f"arrays), got {type(obj).__name__}: {obj!r}")


def content_key(*parts: Any) -> str:
    """The content key (64 hex digits) of ``parts``: SHA-256 of their canonical JSON, with
    ``KEY_VERSION``. Dict order and list/tuple types do not matter; arrays enter by digest."""
    text = json.dumps([KEY_VERSION, canonical(list(parts))], sort_keys=True, separators=(",", ":"),
                      allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _lookup(obj: Any, where: tuple[str, ...]) -> str | None:
    for k in where:
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj if isinstance(obj, str) else None


def npz_key(path: str | Path) -> str | None:
    """The string array ``key`` of an npz file; None when the file is missing, damaged or has none."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return str(f["key"]) if "key" in f.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def json_key(path: str | Path, *where: str) -> str | None:
    """The string at ``obj[where[0]][where[1]]...`` of a JSON file; None when the file is missing
    or damaged or lacks it."""
    try:
        return _lookup(read_json(path), where)
    except OSError:
        return None


def pair_key(sidecar: str | Path, member: str, *where: str) -> str | None:
    """Like :func:`json_key` for the sidecar of a file pair (:func:`mfinfer.files.open_pair`), but
    None also when ``member`` does not match the SHA-256 the sidecar records."""
    try:
        with open_pair(sidecar, [member]) as (fields, _):
            return _lookup(fields, where)
    except OSError:
        return None


def stable_words(label: str) -> list[int]:
    """Four 32-bit words (little-endian) of the first 16 bytes of ``label``'s UTF-8 SHA-256."""
    raw = hashlib.sha256(label.encode("utf-8")).digest()[:16]
    return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, 16, 4)]


def seed_sequence(seed: int, stage: int, *labels: str | int) -> np.random.SeedSequence:
    """``SeedSequence([seed, stage, *words])``: integer labels enter as they are, strings as
    :func:`stable_words`."""
    words: list[int] = [seed, stage]
    for label in labels:
        words += [label] if isinstance(label, int) else stable_words(label)
    return np.random.SeedSequence(words)


def torch_seed(seq: np.random.SeedSequence) -> int:
    """A ``torch.manual_seed`` value (63 bits) drawn from ``seq``."""
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))
