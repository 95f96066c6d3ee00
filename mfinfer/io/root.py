"""Event samples in ROOT files, through uproot and awkward (imported lazily): mfinfer's own files.

Files written by :func:`write_events` hold one ``TTree`` with a float64 branch per observable and
per parameter (``theta_0``, ``theta_1``, ...) plus a JSON ``TObjString`` with the metadata (seed,
simulator, ...); :func:`read_events` gives them back exactly. A user's own files are read by
:mod:`mfinfer.io.user_files`, on the file access helpers of this module.

Every error names the file and the object: a missing file raises :class:`FileNotFoundError`, a
missing tree or branch :class:`MissingKeyError` (a ``KeyError`` listing what exists, nearest first),
a truncated or corrupt file :class:`CorruptFileError` (an ``OSError``; only reading bytes raises it),
a bad argument :class:`InputError`.

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ev.root")
    >>> x = np.arange(6.0).reshape(3, 2)
    >>> _ = write_events(path, x, theta=np.zeros((3, 1)), names=["m1", "m2"], metadata={"seed": 1})
    >>> x2, theta2, meta = read_events(path)
    >>> bool(np.array_equal(x, x2)), meta
    (True, {'seed': 1})
"""

from __future__ import annotations

import difflib
import json
import os
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mfinfer._validation import nonfinite_rows
from mfinfer.errors import CorruptFileError, InputError, MissingKeyError
from mfinfer.files import atomic_write, json_default

__all__ = ["CorruptFileError", "InputError", "MissingKeyError", "read_events", "write_events"]

FORMAT = "mfinfer-events/1"
_CHUNK = 100_000  # rows per basket when writing
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _uproot():
    try:
        import uproot
    except ImportError as err:  # pragma: no cover - uproot is a core dependency
        raise ImportError(
            "mfinfer.io.root needs uproot>=5 and awkward>=2: pip install 'uproot>=5' 'awkward>=2'"
        ) from err
    return uproot


def _awkward():
    try:
        import awkward
    except ImportError as err:  # pragma: no cover - awkward is a core dependency
        raise ImportError("mfinfer.io.root needs awkward>=2: pip install 'awkward>=2'") from err
    return awkward


def _nearest(name: str, choices: Sequence[str], n: int = 8) -> list[str]:
    """Choices ordered by similarity to ``name`` (closest first), at most ``n``."""
    choices = list(dict.fromkeys(choices))
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.0)
    return close + [c for c in choices if c not in close][: max(0, n - len(close))]


def _missing(
    what: str, name: str, path: Path, where: str, available: Sequence[str]
) -> MissingKeyError:
    avail, total = _nearest(name, available), len(set(available))
    more = f" (and {total - len(avail)} more)" if total > len(avail) else ""
    listing = ", ".join(repr(a) for a in avail) or "none"
    return MissingKeyError(
        f"{path}: no {what} {name!r} in {where}; available (nearest first): {listing}{more}"
    )


def _corrupt_types() -> tuple[type[BaseException], ...]:
    """Exceptions that, while the file's bytes are read, mean "not a (whole) ROOT file"."""
    return (struct.error, zlib.error, ValueError, OSError, EOFError, IndexError, TypeError,
            AssertionError, OverflowError, _uproot().deserialization.DeserializationError)  # fmt: skip


def _corrupt(path: Path, err: BaseException, doing: str) -> CorruptFileError:
    return CorruptFileError(
        f"{path}: truncated or corrupt ROOT file ({doing} failed: {type(err).__name__}: "
        f"{str(err).splitlines()[0] if str(err) else ''}); re-create or re-download the file"
    )


def _open(path: str | os.PathLike):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, f"no such ROOT file: {path}", str(path))
    if path.is_dir():
        raise IsADirectoryError(21, f"expected a ROOT file, got a directory: {path}", str(path))
    uproot = _uproot()
    try:
        f = uproot.open(path)
        end = int(f.file.fEND)
    except PermissionError:
        raise
    except _corrupt_types() as err:
        raise _corrupt(path, err, "opening") from err
    size = path.stat().st_size
    if size < end:  # the header records the file's length; uproot reads lazily and would not notice
        f.close()
        raise CorruptFileError(
            f"{path}: truncated ROOT file: its header records {end} bytes, the file has {size}; "
            "re-create or re-download the file"
        )
    return f


def _get_tree(file, path: Path, tree: str):
    try:
        classes = {k.split(";")[0]: v for k, v in file.classnames().items()}
    except _corrupt_types() as err:
        raise _corrupt(path, err, "reading the file's keys") from err
    if tree not in classes:
        trees = [k for k, v in classes.items() if v in ("TTree", "TNtuple", "ROOT::RNTuple")]
        raise _missing("tree", tree, path, "the file", trees or list(classes))
    if classes[tree] not in ("TTree", "TNtuple"):
        raise InputError(f"{path}: expected {tree!r} to be a TTree, got a {classes[tree]}; name a TTree")
    try:
        return file[tree]
    except _corrupt_types() as err:
        raise _corrupt(path, err, f"reading tree {tree!r}") from err


def _meta_key(tree: str) -> str:
    return "metadata" if tree == "events" else f"{tree}_metadata"


def write_events(
    path: str | os.PathLike,
    x: np.ndarray,
    theta: np.ndarray | None = None,
    names: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    tree: str = "events",
    extra: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write events (and their parameters) to a ROOT file as a ``TTree``, atomically.

    The file holds the tree (a float64 branch per observable, then ``theta_0``, ``theta_1``, ...)
    and a JSON ``TObjString`` ``metadata`` (``<tree>_metadata`` for other tree names) with the names
    and the user's ``metadata``. The file is written to a temporary file in ``.tmp/`` next to it and
    moved into place (:func:`mfinfer.files.atomic_write`), so readers never see half a file. An
    existing file at ``path`` is replaced.

    Arguments:
        path: output file, usually ``*.root``.
        x: events, shape (n, D).
        theta: parameters of each event, shape (n, p), or None.
        names: D branch names (identifiers); default ``x0, x1, ...``.
        metadata: JSON-serialisable facts to keep with the sample (seed, simulator, options).
        tree: name of the tree.
        extra: more float64 branches of one number per event, ``{name: (n,)}`` (a weight, scores).

    Returns:
        The path written.

    Raises:
        InputError: bad shapes or names, or NaN or inf anywhere in ``x``, ``theta`` or ``extra``
            (nothing is written).
    """
    uproot = _uproot()
    path = Path(path)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"x: expected shape (n, D), got {x.shape}")
    n, d = x.shape
    names = [f"x{i}" for i in range(d)] if names is None else [str(s) for s in names]
    if len(names) != d:
        raise InputError(f"names: expected {d} names to match x (n, {d}), got {len(names)}")
    if theta is not None:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.ndim == 1 and len(theta) == n:
            theta = theta[:, None]
        if theta.ndim != 2 or theta.shape[0] != n:
            raise InputError(f"theta: expected shape ({n}, p) to match x, got {theta.shape}")
    theta_names = [] if theta is None else [f"theta_{j}" for j in range(theta.shape[1])]
    more = {str(k): np.asarray(v, dtype=np.float64) for k, v in (extra or {}).items()}
    for k, v in more.items():
        if v.shape != (n,):
            raise InputError(f"extra[{k!r}]: expected shape ({n},) to match x, got {v.shape}")
    bad = [s for s in names + list(more) if not _NAME.match(s)]
    if bad:
        raise InputError(f"names: expected identifiers ([A-Za-z_][A-Za-z0-9_]*), got {bad[:5]}")
    every = names + theta_names + list(more)
    dup = sorted({s for s in every if every.count(s) > 1})
    if dup:
        raise InputError(
            f"names: expected unique branch names (theta_j are reserved), got duplicates {dup}"
        )
    if not _NAME.match(tree):
        raise InputError(f"tree: expected an identifier, got {tree!r}")
    arrays = [("x", x), ("theta", theta), *((f"extra[{k!r}]", v[:, None]) for k, v in more.items())]
    for label, a in arrays:
        rows = np.empty(0, dtype=np.int64) if a is None else nonfinite_rows(a)
        if rows.size:
            raise InputError(f"{label}: {rows.size} of {n} events hold NaN or inf (first: row "
                             f"{int(rows[0])}); {path} was not written: remove or fix them")
    info = {
        "format": FORMAT,
        "tree": tree,
        "observables": names,
        "parameters": theta_names,
        "extra": list(more),
        "n_events": n,
        "metadata": dict(metadata or {}),
    }
    text = json.dumps(info, default=json_default, sort_keys=False)

    columns = dict(zip(names, x.T, strict=True)) | (
        {} if theta is None else dict(zip(theta_names, theta.T, strict=True))
    ) | more

    def write(tmp: BinaryIO) -> None:
        # uproot closes the file it is given and needs it readable: give it a read-write duplicate
        # of the temp's descriptor, so the atomic writer can still flush and fsync its own.
        with os.fdopen(os.dup(tmp.fileno()), "w+b") as dup, uproot.recreate(dup) as f:
            # mktree + extend: a plain f[tree] = {...} writes an RNTuple with uproot >= 5.7.
            t = f.mktree(tree, {k: np.float64 for k in columns})
            for start in range(0, max(n, 1), _CHUNK):
                t.extend(
                    {k: np.ascontiguousarray(v[start : start + _CHUNK]) for k, v in columns.items()}
                )
            f[_meta_key(tree)] = text

    atomic_write(path, write)
    return path


def read_events(
    path: str | os.PathLike, tree: str = "events", branches: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Read a sample written by :func:`write_events`, exactly as written.

    Arguments:
        path: ROOT file.
        tree: tree name.
        branches: observables to read, in this order; default all of them.

    Returns:
        ``(x, theta, metadata)``: events (n, D) float64, parameters (n, p) or None when none were
        written, and the metadata dict given to :func:`write_events`.
    """
    path = Path(path)
    with _open(path) as f:
        t = _get_tree(f, path, tree)
        key = _meta_key(tree)
        try:
            text = str(f[key])
        except _uproot().KeyInFileError:
            raise InputError(
                f"{path}: tree {tree!r} has no {key!r} entry, so it was not written by mfinfer's "
                "write_events; read it with mfinfer.io.read_user_events(path, tree, branches)"
            ) from None
        except _corrupt_types() as err:
            raise _corrupt(path, err, f"reading {key!r}") from err
        try:
            info = json.loads(text)
            if not isinstance(info, dict) or info.get("format") != FORMAT:
                raise ValueError(f"expected format {FORMAT!r}")
            if not all(isinstance(b, str) for b in info["observables"] + info["parameters"]):
                raise TypeError("branch names that are not strings")
            n = int(info["n_events"])
            dict(info["metadata"])
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(
                f"{path}: {key!r} is not mfinfer event metadata ({type(err).__name__}: {err}); "
                "read the file with mfinfer.io.read_user_events(path, tree, branches)"
            ) from err
        branches = [branches] if isinstance(branches, str) else branches
        names = list(info["observables"]) if branches is None else list(branches)
        for b in names:
            if b not in info["observables"]:
                raise _missing("observable", b, path, f"tree {tree!r}", info["observables"])
        absent = [b for b in names + info["parameters"] if b not in t.keys()]
        if absent:
            raise CorruptFileError(
                f"{path}: {key!r} lists branches {absent[:5]} that tree {tree!r} lacks; "
                "re-create the file with mfinfer.io.write_events"
            )
        arrays = {}
        for b in names + info["parameters"]:  # read branch by branch: names never reach uproot's eval
            try:
                arrays[b] = t[b].array(library="np")
            except _corrupt_types() as err:
                raise _corrupt(path, err, f"reading branch {b!r} of tree {tree!r}") from err
        x = np.stack([arrays[b] for b in names], axis=1) if names else np.empty((n, 0))
        params = [arrays[b] for b in info["parameters"]]
        theta = np.stack(params, axis=1) if params else None
        if len(x) != n:
            raise CorruptFileError(f"{path}: expected {n} events in tree {tree!r}, got {len(x)}")
        for what, a in (("observables", x), ("parameters", theta)):
            rows = np.empty(0, dtype=np.int64) if a is None or not a.size else nonfinite_rows(a)
            if rows.size:
                raise InputError(f"{path}: the {what} in tree {tree!r} are NaN or inf in {rows.size} "
                                 f"of {n} events (first: entry {int(rows[0])}); fix or re-create the file")
    return x.astype(np.float64), theta, info["metadata"]
