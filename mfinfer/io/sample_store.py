"""Reading a ``simulations:`` sample into on-disk arrays: in chunks, checked, cached by content.

:func:`read_sample` turns the files of a :class:`~mfinfer.io.simulations.SimulationsConfig` into the
arrays training takes, ``theta`` (n, p), ``x`` (n, D) and, when the section names them, ``weight``
(n,) and ``score`` (n, p), all float64:

- each file is read ``step_size`` entries at a time (uproot's ``TTree.iterate``), the expressions
  evaluated per chunk (:mod:`mfinfer.io.expressions`), and the rows written straight into ``.npy``
  files opened as memory maps, so a sample larger than memory never sits in it; the arrays come back
  memory-mapped (``np.load(mmap_mode="r")``);
- with a dask client (``mfinfer run --workers N``) the files are read in parallel, each worker
  writing its file's rows into its slice of the same ``.npy`` files; otherwise one by one, with a
  progress bar on a terminal;
- every row is checked: θ inside the prior, no NaN or inf anywhere; a failure names the count, the
  first file and its entry (:class:`InputError`);
- the result is cached under ``directory/<key>/`` with a ``manifest.json``, the key being the
  SHA-256 of every file's bytes, the section and the prior (:func:`sample_key`): the same files read
  twice are read once, a changed byte reads them again. A file's SHA-256 is reused while its size
  and modification time stay those the manifest recorded.

Lepton collections (``observables: {events: ...}``) go through the selection file by file in memory
(:func:`mfinfer.io.user_files.read_selection`), then to the same ``.npy`` files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mfinfer.caching import canonical, content_key
from mfinfer.errors import InputError
from mfinfer.files import atomic_write_json, read_json, sha256_file
from mfinfer.io.expressions import Expression, parse_expression
from mfinfer.io.root import _awkward, _corrupt, _corrupt_types, _get_tree, _open
from mfinfer.io.simulations import SimulationsConfig, check_files, resolve_files
from mfinfer.utils import progress_bar

__all__ = ["MANIFEST", "load_sample", "read_observables", "read_sample", "sample_key"]

MANIFEST = "manifest.json"
_Groups = Mapping[str, Mapping[str, str]]


def _digests(paths: list[Path], directory: Path) -> list[dict[str, Any]]:
    """Size, modification time and SHA-256 of each file; a SHA-256 recorded by an earlier manifest
    in ``directory`` is reused while size and time match."""
    known: dict[tuple[str, int, int], str] = {}
    for manifest in directory.glob(f"*/{MANIFEST}"):
        try:
            for rec in read_json(manifest).get("files", []):
                known[(rec["path"], rec["size"], rec["mtime_ns"])] = rec["sha256"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    out = []
    for path in paths:
        st = path.stat()
        ident = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        sha = known.get(ident) or sha256_file(path)
        out.append({"path": ident[0], "size": ident[1], "mtime_ns": ident[2], "sha256": sha})
    return out


def sample_key(files: list[dict[str, Any]], cfg: SimulationsConfig, prior: Any) -> str:
    """The content key of a sample: the files' SHA-256 in order, the section and the prior."""
    return content_key("simulations", [f["sha256"] for f in files],
                       canonical({k: v for k, v in cfg.to_dict().items() if k not in ("files",
                                                                                          "step_size")}),
                       canonical(getattr(prior, "to_config", lambda: repr(prior))() or repr(prior)))


def load_sample(directory: str | Path, key: str) -> dict[str, np.ndarray] | None:
    """The cached arrays of ``key`` under ``directory`` (memory-mapped), or None when absent or
    incomplete."""
    sub = Path(directory) / key[:16]
    try:
        manifest = read_json(sub / MANIFEST)
        if manifest.get("key") != key:
            return None
        arrays = {name: np.load(sub / f"{name}.npy", mmap_mode="c") for name in manifest["arrays"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if any(len(a) != manifest["n"] for a in arrays.values()):
        return None
    return arrays


def _parsed(exprs: Mapping[str, str], keys: list[str]) -> dict[str, Expression]:
    return {c: Expression.branch(e, c) if e in keys else parse_expression(e, c) for c, e in exprs.items()}


def _chunks(path: Path, tree: str, groups: _Groups, step_size: int
            ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """``(first entry, {group: (m, k) float64})`` per chunk of ``step_size`` entries."""
    ak = _awkward()
    with _open(path) as f:
        t = _get_tree(f, path, tree)
        keys = list(dict.fromkeys(t.keys() + t.keys(full_paths=False)))
        parsed = {g: _parsed(e, keys) for g, e in groups.items()}
        names = list(dict.fromkeys(n for p in parsed.values() for ex in p.values() for n in ex.names))
        where = f" on tree {tree!r} in {path}"
        try:
            for chunk, report in t.iterate(names, step_size=step_size, library="ak", report=True):
                m, out = len(chunk), {}
                values = {n: chunk[n] for n in names}
                for group, exprs in parsed.items():
                    cols = []
                    for column, ex in exprs.items():
                        a = ex.evaluate(values, m, where)
                        if a.ndim != 1:
                            raise InputError(f"{path}: simulations {group} column {column!r} = "
                                             f"{ex.text!r} in tree {tree!r} is jagged ({a.type}); "
                                             "expected one number per event (reduce it, e.g. "
                                             "'Electron_pt[:, 0]')")
                        cols.append(ak.to_numpy(a).astype(np.float64))
                    out[group] = np.stack(cols, axis=1)
                yield int(report.tree_entry_start), out
        except _corrupt_types() as err:
            raise _corrupt(path, err, f"reading tree {tree!r}") from err


def _problems(path: Path, start: int, arrays: Mapping[str, np.ndarray], prior: Any,
              groups: _Groups, stats: dict[str, Any]) -> None:
    """Count the chunk's non-finite rows and θ outside the prior into ``stats`` (first of each)."""
    bad, first = np.zeros(len(arrays["theta"]), dtype=bool), None
    for group, a in arrays.items():
        finite = np.isfinite(a)
        rows = ~finite.all(axis=1)
        if rows.any():
            i = int(np.argmax(rows))
            if first is None or i < first[0]:
                first = (i, list(groups[group])[int(np.argmax(~finite[i]))])
        bad |= rows
    if first is not None and stats["nonfinite_first"] is None:  # chunks come in entry order
        stats["nonfinite_first"] = [str(path), start + first[0], first[1]]
    stats["nonfinite"] += int(bad.sum())
    outside = ~prior.contains(np.where(np.isfinite(arrays["theta"]), arrays["theta"], 0.0)) & ~bad
    if outside.any():
        i = int(np.argmax(outside))
        if stats["outside_first"] is None:
            stats["outside_first"] = [str(path), start + i, arrays["theta"][i].tolist()]
        stats["outside"] += int(outside.sum())


def _new_stats() -> dict[str, Any]:
    return {"nonfinite": 0, "nonfinite_first": None, "outside": 0, "outside_first": None}


def _read_file(path: Path, tree: str, groups: _Groups, step_size: int, offset: int,
               outputs: Mapping[str, Path], prior: Any, advance: Callable[[int], Any] | None = None
               ) -> dict[str, Any]:
    """Read one file's flat columns into rows ``offset...`` of the ``.npy`` files ``outputs``
    (one per group); returns the file's problem counts. Runs in a dask worker as well."""
    stats = _new_stats()
    maps = {g: np.load(p, mmap_mode="r+") for g, p in outputs.items()}
    for start, arrays in _chunks(path, tree, groups, step_size):
        _problems(path, start, arrays, prior, groups, stats)
        for group, a in arrays.items():
            maps[group][offset + start: offset + start + len(a)] = a if group in ("theta", "x", "score") \
                else a[:, 0]
        if advance is not None:
            advance(len(arrays["theta"]))
    for m in maps.values():
        m.flush()
    return stats


def _raise_problems(stats: list[dict[str, Any]], n: int, prior: Any) -> None:
    total = {k: sum(s[k] for s in stats) for k in ("nonfinite", "outside")}
    if total["nonfinite"]:
        path, entry, column = next(s["nonfinite_first"] for s in stats if s["nonfinite_first"])
        raise InputError(f"simulations: {total['nonfinite']} of {n} rows hold NaN or inf (first: {path} "
                         f"entry {entry}, {column}); fix the files, or exclude those events")
    if total["outside"]:
        path, entry, theta = next(s["outside_first"] for s in stats if s["outside_first"])
        low, high = prior.bounds
        raise InputError(f"simulations.theta: {total['outside']} of {n} rows lie outside the prior "
                         f"support [{low.tolist()}, {high.tolist()}] (first: {path} entry {entry}, θ = "
                         f"{theta}); check the order of the theta branches (the prior's order) and prior:")


def _selected(paths: list[Path], cfg: SimulationsConfig, selection: Any, groups: _Groups, prior: Any
              ) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Lepton collections through ``selection``, file by file in memory; θ/score at the kept entries."""
    from mfinfer.io.user_files import read_selection

    assert cfg.events is not None
    parts: dict[str, list[np.ndarray]] = {}
    stats = []
    flat = {g: e for g, e in groups.items() if g != "weight"}
    for path in paths:
        sel = read_selection(path, cfg.tree, selection, cfg.events.branches, weight=cfg.weight)
        cols = {g: [] for g in flat}  # type: dict[str, list[np.ndarray]]
        for _, arrays in _chunks(path, cfg.tree, flat, cfg.step_size):
            for g, a in arrays.items():
                cols[g].append(a)
        arrays = {g: np.concatenate(v)[sel.entries] for g, v in cols.items()}
        arrays["x"] = sel.x
        if sel.weights is not None:
            arrays["weight"] = sel.weights[:, None]
        s = _new_stats()
        named = {**groups, "x": dict.fromkeys(sel.names, "")}  # column names of the messages
        _problems(path, 0, arrays, prior, named, s)
        if s["nonfinite_first"] is not None:  # report the tree's entry, not the row
            s["nonfinite_first"][1] = int(sel.entries[s["nonfinite_first"][1]])
        if s["outside_first"] is not None:
            s["outside_first"][1] = int(sel.entries[s["outside_first"][1]])
        stats.append(s)
        for g, a in arrays.items():
            parts.setdefault(g, []).append(a)
    return {g: np.concatenate(v) for g, v in parts.items()}, stats


def _fill(tmp: Path, paths: list[Path], entries: Mapping[Path, int], cfg: SimulationsConfig,
          groups: _Groups, prior: Any, selection: Any, client: Any, progress: bool) -> int:
    """Read every file into the ``.npy`` arrays of ``tmp``; returns the number of rows."""
    if selection is not None:
        arrays, stats = _selected(paths, cfg, selection, groups, prior)
        n = len(arrays["x"])
        _raise_problems(stats, n, prior)
        for g, a in arrays.items():
            np.save(tmp / f"{g}.npy", a[:, 0] if g == "weight" else a)
    else:
        n = sum(entries.values())
        outputs = {g: tmp / f"{g}.npy" for g in groups}
        for g, path in outputs.items():
            shape = (n,) if g == "weight" else (n, len(groups[g]))
            np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape).flush()
        offsets = np.concatenate([[0], np.cumsum([entries[p] for p in paths])[:-1]]).tolist()
        args = [(p, cfg.tree, groups, cfg.step_size, int(o), outputs, prior)
                for p, o in zip(paths, offsets, strict=True)]
        if client is not None and len(paths) > 1:
            stats = client.gather([client.submit(_read_file, *a, pure=False) for a in args])
        else:
            with progress_bar(total=n, enabled=progress, unit="events", desc="reading simulations") as bar:
                stats = [_read_file(*a, advance=bar.update) for a in args]
        _raise_problems(stats, n, prior)
    if n < 2:
        raise InputError(f"simulations: the files hold {n} events; training needs at least 2")
    return n


def read_sample(cfg: SimulationsConfig, prior: Any, directory: str | Path, *, selection: Any = None,
                client: Any = None, progress: bool = False, log: Any = None) -> dict[str, np.ndarray]:
    """The sample of ``cfg`` as memory-mapped float64 arrays, read once and cached under ``directory``.

    Arguments:
        cfg: the ``simulations:`` section.
        prior: the run's prior (``contains``, ``bounds``); every θ row must lie in its support.
        directory: the cache folder (the run's ``simulations/``); other samples cached there by an
            earlier pass are removed when a new one is written.
        selection: the event selection for ``observables: {events: ...}`` (else None).
        client: a dask ``Client``: read the files in parallel on its workers.
        progress: a progress bar (shown on a terminal only).
        log: a logger for one line per read.

    Returns:
        ``{"theta": (n, p), "x": (n, D), "weight": (n,), "score": (n, p)}`` (weight and score only
        when the section names them).

    Raises:
        FileNotFoundError: a glob matches no file.
        MissingKeyError: a file lacks the tree or a branch (nearest names first).
        InputError: files of different schemas, NaN/inf rows, θ outside the prior, jagged columns.
    """
    directory = Path(directory).resolve()  # dask workers write there too
    directory.mkdir(parents=True, exist_ok=True)
    paths = resolve_files(cfg)
    files = _digests(paths, directory)
    key = sample_key(files, cfg, prior)
    cached = load_sample(directory, key)
    if cached is not None:
        return cached
    groups = cfg.columns()
    entries = check_files(paths, cfg, groups if selection is None else
                          {g: e for g, e in groups.items() if g != "weight"})
    sub, tmp = directory / key[:16], directory / f".tmp-{key[:16]}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:  # fill tmp/, then publish it whole (manifest included) as sub/
        n = _fill(tmp, paths, entries, cfg, groups, prior, selection, client, progress)
        for f, p in zip(files, paths, strict=True):
            f["entries"] = entries[p]
        names = sorted(p.stem for p in tmp.glob("*.npy"))
        atomic_write_json({"key": key, "n": n, "arrays": names, "files": files, "columns": groups},
                          tmp / MANIFEST)
        shutil.rmtree(sub, ignore_errors=True)
        try:
            os.replace(tmp, sub)
        except OSError:  # another process published the same sample meanwhile
            if load_sample(directory, key) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for other in directory.iterdir():  # samples of earlier passes (this code wrote them)
        if other.is_dir() and other != sub and (other / MANIFEST).exists():
            shutil.rmtree(other, ignore_errors=True)
    if log is not None:
        log.info("read %d simulated events from %d file(s) into %s", n, len(paths), sub)
    out = load_sample(directory, key)
    assert out is not None
    return out


def read_observables(path: str | Path, cfg: SimulationsConfig, tree: str | None = None,
                     selection: Any = None) -> np.ndarray:
    """The observables (n, D) of one file read with the section's settings (``infer --events``):
    only the observable branches are needed, no θ, weight or score."""
    from mfinfer.io.user_files import read_selection

    path, tree = Path(path), tree or cfg.tree
    if selection is not None:
        assert cfg.events is not None
        return read_selection(path, tree, selection, cfg.events.branches).x
    assert cfg.observables is not None
    one = SimulationsConfig(files=[str(path)], theta=cfg.theta, observables=cfg.observables, tree=tree)
    check_files([path], one, {"x": cfg.observables})
    parts = [a["x"] for _, a in _chunks(path, tree, {"x": cfg.observables}, cfg.step_size)]
    x = np.concatenate(parts) if parts else np.empty((0, len(cfg.observables)))
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise InputError(f"{path}: {bad.size} of {len(x)} events hold NaN or inf in the observables "
                         f"(first: entry {int(bad[0])}); fix the file or exclude those events")
    return x
