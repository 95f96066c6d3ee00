"""Saving files safely: atomic writes, file pairs checked by SHA-256, safe JSON and torch loading.

- :mod:`~mfinfer.files.temps`: the temps of atomic writes and ``clean_temp`` (the lowest layer);
- :mod:`~mfinfer.files.digests`: ``sha256_file`` and the digests a pair's sidecar records;
- :mod:`~mfinfer.files.atomic`: ``atomic_write``, ``atomic_write_json``, ``atomic_torch_save``;
- :mod:`~mfinfer.files.pairs`: ``atomic_write_pair``, ``open_pair``;
- :mod:`~mfinfer.files.loading`: ``read_json``, ``torch_load_tensors``;
- :mod:`~mfinfer.files.ownership`: ``claim_dir``, ``remove_owned_dir`` (what a run may delete);
- :mod:`~mfinfer.files.lock`: ``directory_lock`` (one process per run directory).

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

Loading (``read_json``, ``torch_load_tensors``)
    A file that is not UTF-8 JSON, or not a tensors-only ``torch.save`` file, raises
    ``CorruptFileError`` naming the file; a pickle of other Python objects is never unpickled.
"""

from mfinfer.files.atomic import (
    TEMP_DIR,
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    clean_temp,
    json_default,
)
from mfinfer.files.loading import read_json, torch_load_tensors
from mfinfer.files.lock import LockedError, directory_lock, locked
from mfinfer.files.ownership import claim_dir, recorded, remove_owned_dir
from mfinfer.files.pairs import atomic_write_pair, open_pair, sha256_file

__all__ = [
    "TEMP_DIR",
    "LockedError",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_pair",
    "claim_dir",
    "clean_temp",
    "directory_lock",
    "json_default",
    "locked",
    "open_pair",
    "read_json",
    "recorded",
    "remove_owned_dir",
    "sha256_file",
    "torch_load_tensors",
]
