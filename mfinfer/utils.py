"""Small shared helpers: atomic file writes, file pairs checked by SHA-256, safe JSON and torch
loading, seeding, device selection.

Atomic writes (``atomic_write``, ``atomic_write_json``, ``atomic_torch_save``)
    The data goes to a temporary file ``<dir>/.tmp/<name>.<host>-<pid>.<random>.tmp``, which is
    flushed, fsynced and given the mode ``0o666 & ~umask`` (0644 under umask 022), then renamed
    onto ``<dir>/<name>`` with ``os.replace``; ``<dir>`` is fsynced after the rename. A crash
    leaves the previous file intact plus at most one temp file in ``.tmp/``. Temps whose writer
    is gone are removed by :func:`clean_temp`, which every writer calls once per directory per
    process (before its first write there) and which a pipeline may call at start; ``.tmp/`` is
    removed whenever it is left empty.

Pairs (``atomic_write_pair`` + ``open_pair``): data files plus a JSON sidecar, as one unit
    1. every data file is written to its temp and fsynced; its SHA-256 is taken from the temp;
    2. the sidecar's temp (``….pair.tmp``) holds the caller's fields plus
       ``"sha256": {data file name: hex digest}`` and is fsynced;
    3. the data files are renamed into place first, the sidecar LAST, then the directory is fsynced.
    A reader trusts a data file only if its SHA-256 matches the sidecar's, so it never uses half a
    pair, nor a file changed or damaged after it was written (``CorruptFileError``). A writer killed
    before step 3 leaves the old pair intact; one killed between the renames of step 3 leaves new
    data, the old (or no) sidecar, and the new sidecar in ``.tmp/``: :func:`open_pair` and
    :func:`clean_temp` finish that write (rename the sidecar into place) when the data in place
    match it. With several data files, a kill between their renames is reported as a mismatch.
    A sidecar without ``"sha256"`` (written before the digests existed) is read without a check.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import pickle
import random
import re
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
import torch

from mfinfer.errors import CorruptFileError

__all__ = [
    "TEMP_DIR",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_pair",
    "clean_temp",
    "json_default",
    "open_pair",
    "progress_bar",
    "read_json",
    "resolve_device",
    "seed_everything",
    "sha256_file",
    "torch_load_tensors",
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
_CHUNK = 1 << 20
_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()
_umask_lock = threading.Lock()
_READ_ATTEMPTS = 40  # x 0.05 s: how long open_pair waits for a live writer between its renames


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


# --------------------------------------------------------------------------------------------
# pairs


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    with open(path, "rb") as f:
        return _sha256_of(f)


def _sha256_of(f: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


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


def _roll_forward(sidecar: Path, temp: Path) -> bool:
    """Finish an interrupted pair write: rename its committed sidecar ``temp`` onto ``sidecar``
    if the data files in place match it and the present sidecar does not match them."""
    try:
        digests = _recorded_digests(json.loads(temp.read_bytes()))
    except (OSError, ValueError):
        return False
    if digests is None or not _matches(sidecar.parent, digests):
        return False
    try:
        current = _recorded_digests(json.loads(sidecar.read_bytes()))
    except FileNotFoundError:
        current = None
    except (OSError, ValueError):
        current = None
    if current is not None and _matches(sidecar.parent, current):
        return False
    try:
        os.replace(temp, sidecar)
        _fsync_dir(sidecar.parent)
    except OSError:
        return False
    _remove_if_empty(temp.parent)
    return True


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


# --------------------------------------------------------------------------------------------
# reading JSON and tensors


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


# --------------------------------------------------------------------------------------------
# misc


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
