"""File pairs: data files plus a JSON sidecar holding their SHA-256, written as one unit
(:func:`atomic_write_pair`) and read back verified (:func:`open_pair`). See :mod:`mfinfer.files`
for the protocol."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from mfinfer.errors import CorruptFileError
from mfinfer.files.atomic import _json_text, _write_temp
from mfinfer.files.digests import _sha256_of, sha256_file
from mfinfer.files.loading import _parse_json
from mfinfer.files.temps import TEMP_DIR, _fsync_dir, _remove_if_empty, _roll_forward, _stale, _temps

__all__ = ["atomic_write_pair", "open_pair", "sha256_file"]

_READ_ATTEMPTS = 40  # x 0.05 s: how long open_pair waits for a live writer between its renames


def atomic_write_pair(
    members: Mapping[str | Path, Callable[[BinaryIO], object]],
    sidecar: str | Path,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Write data files and a JSON sidecar that records their SHA-256, as one unit.

    Args:
        members: ``{path: write}``; ``write(f)`` writes the file's bytes to the binary file ``f``.
            Every path must lie in the sidecar's directory.
        sidecar: the JSON file readers check (e.g. ``model.json``); it holds ``meta`` plus
            ``"sha256": {member file name: hex digest}`` and is renamed into place last.
        meta: further JSON fields of the sidecar.

    Returns:
        ``{member file name: SHA-256}``. See the module docstring for the protocol;
        :func:`open_pair` reads such a pair.
    """
    sidecar = Path(sidecar)
    directory = sidecar.parent
    fields = dict(meta or {})
    if "sha256" in fields:
        raise ValueError("meta: the key 'sha256' is reserved for the digests of the members")
    paths = [Path(p) for p in members]
    names = [p.name for p in paths]
    if len(set(names)) != len(names) or sidecar.name in names:
        raise ValueError(f"members: expected distinct file names other than {sidecar.name!r}, got {names}")
    for p in paths:
        if os.path.abspath(p.parent) != os.path.abspath(directory):
            raise ValueError(f"members: expected files in the sidecar's directory {directory}, got {p}")
    _json_text(fields)  # fail on a bad field before anything is written
    temps: list[tuple[Path, Path]] = []
    committed = False
    try:
        digests = {}
        for p, write in zip(paths, members.values(), strict=True):
            tmp = _write_temp(p, write, "wb")
            temps.append((tmp, p))
            digests[p.name] = sha256_file(tmp)
        text = _json_text({**fields, "sha256": digests}) + "\n"
        temps.append((_write_temp(sidecar, lambda f: f.write(text), "w", pair=True), sidecar))
        committed = True
        for tmp, target in temps:  # the sidecar comes last
            os.replace(tmp, target)
    except BaseException:
        if committed:  # interrupted between the renames: finish them if we can
            for tmp, target in temps:
                if tmp.exists():
                    try:
                        os.replace(tmp, target)
                    except OSError:
                        break
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _remove_if_empty(directory / TEMP_DIR)
    _fsync_dir(directory)
    return digests


def _recover(sidecar: Path) -> tuple[bool, bool]:
    """``(rolled forward, a live writer is writing this pair)`` after looking at the pair temps."""
    busy = False
    for path, match, mtime in _temps(sidecar.parent):
        if match["target"] != sidecar.name or not match["pair"]:
            continue
        if not _stale(match, mtime):
            busy = True
        elif _roll_forward(sidecar, path):
            return True, busy
    return False, busy


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def open_pair(
    sidecar: str | Path,
    members: Sequence[str],
    *,
    fix: str = "write it again or restore it from a backup",
    hint: str = "a file pair written by atomic_write_pair",
    require_sidecar: bool = True,
) -> Iterator[tuple[dict[str, Any], dict[str, BinaryIO]]]:
    """Open the data files ``members`` (names in the sidecar's directory) of a pair, verified.

    Yields ``(sidecar fields, {name: open binary file})``; each file has been hashed and matched
    against the sidecar's SHA-256, and is positioned at its start (it is the very inode that was
    hashed, whatever renames happen meanwhile). A legacy sidecar without ``"sha256"``, or a
    missing one when ``require_sidecar`` is false (fields ``{}``), gives unchecked files.

    Raises:
        FileNotFoundError: the sidecar (when required) or a member is missing (``hint`` says
            what was expected).
        CorruptFileError: the sidecar is not a JSON object, lacks a member's digest, or a member
            does not match its digest (``fix`` says what to do).
    """
    sidecar = Path(sidecar)
    directory = sidecar.parent
    bad: tuple[Path, str, str] | None = None
    for _ in range(_READ_ATTEMPTS):
        raw = _read_or_none(sidecar)
        fields: dict[str, Any] = {}
        digests: dict[str, str] | None = None
        if raw is None:
            rolled, busy = _recover(sidecar)
            if rolled or busy:
                time.sleep(0 if rolled else 0.05)
                continue
            if require_sidecar:
                raise FileNotFoundError(f"{sidecar}: missing; expected {hint}")
        else:
            fields, digests = _sidecar_fields(raw, sidecar, members, fix)
        bad = None
        with contextlib.ExitStack() as stack:
            files: dict[str, BinaryIO] = {}
            for name in members:
                path = directory / name
                try:
                    files[name] = stack.enter_context(open(path, "rb"))
                except FileNotFoundError:
                    raise FileNotFoundError(f"{path}: missing; expected {hint}") from None
                if digests is not None and bad is None:
                    got = _sha256_of(files[name])
                    files[name].seek(0)
                    if got != digests[name]:
                        bad = (path, digests[name], got)
            if bad is None:
                yield fields, files
                return
        rolled, busy = _recover(sidecar)
        if not (rolled or busy or _read_or_none(sidecar) != raw):
            break  # a stable mismatch: the file is damaged
        time.sleep(0 if rolled else 0.05)
    if bad is None:
        raise CorruptFileError(f"{sidecar}: kept changing while being read (another process keeps "
                               "writing this pair); read it again once that process is done")
    path, expected, got = bad
    raise CorruptFileError(
        f"{path}: SHA-256 does not match {sidecar.name} (expected {expected[:16]}…, got {got[:16]}…); "
        f"the file was changed or damaged after it was written; {fix}"
    )


def _sidecar_fields(
    raw: bytes, sidecar: Path, members: Sequence[str], fix: str
) -> tuple[dict[str, Any], dict[str, str] | None]:
    """The sidecar's fields and the digests of ``members`` (None for a sidecar without digests)."""
    fields = _parse_json(raw, sidecar, fix)
    if not isinstance(fields, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(fields), "number")
        raise CorruptFileError(f"{sidecar}: expected a JSON object, got a JSON {kind}; {fix}")
    if "sha256" not in fields:
        return fields, None
    digests = fields["sha256"]
    for name in members:
        if not isinstance(digests, dict) or name not in digests:
            raise CorruptFileError(f"{sidecar}: key 'sha256': expected the digest of {name!r}, "
                                   f"got {digests!r}; {fix}")
        if not (isinstance(digests[name], str) and re.fullmatch(r"[0-9a-f]{64}", digests[name])):
            raise CorruptFileError(f"{sidecar}: key 'sha256': expected 64 hex digits for {name!r}, "
                                   f"got {digests[name]!r}; {fix}")
    return fields, {name: digests[name] for name in members}
