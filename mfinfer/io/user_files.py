"""A user's own ROOT files: trees, branch expressions and per-event collections.

The user names the tree and the branch expressions (:func:`read_user_events`). Flat branches become
columns; per-event collections (jagged branches such as ``Electron_pt``) go through an
:class:`EventSelection`, an object that names the branches it needs and turns them into one row of
observables per selected event. Simulators provide theirs (``simulator.event_selection()``, e.g. the
2e2mu ``simulators.higgs4l.LeptonSelection``); this module knows nothing about what is selected.
:func:`read_selection` also returns the entry numbers of the selected events and a per-event weight
branch (:mod:`mfinfer.io.events` drives it from a config's ``events:`` section).

Expressions never reach uproot's ``eval``: :mod:`mfinfer.io.expressions` checks and evaluates them.
Errors are those of :mod:`mfinfer.io.root`; a bad expression, or a jagged branch without a
selection rule, raises :class:`InputError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mfinfer.errors import InputError
from mfinfer.io.expressions import Expression, branch_expressions, parse_expression
from mfinfer.io.root import _awkward, _corrupt, _corrupt_types, _get_tree, _missing, _open

__all__ = ["EventSelection", "SelectedEvents", "read_selection", "read_user_events", "tree_branches"]

_log = logging.getLogger(__name__)  # "selected N of M events from FILE" (INFO)


@runtime_checkable
class EventSelection(Protocol):
    """What :func:`read_user_events` needs to turn per-event collections into events.

    Any object with these two methods will do (structural typing; simulators provide one through
    ``simulator.event_selection()``, e.g. ``simulators.higgs4l.LeptonSelection``).
    """

    def inputs(self) -> list[str]:
        """Canonical names of the branches the selection reads (e.g. ``"Electron_pt"``); a
        ``branches`` mapping given to :func:`read_user_events` may map any of them to an expression
        in the user's file."""
        ...

    def select(self, arrays: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
        """Select events and compute their observables.

        Arguments:
            arrays: jagged awkward arrays (``var * number``) keyed by the :meth:`inputs` names, n
                events each.

        Returns:
            ``(x, names)``: events (m, D) float64 for the m selected events, and the D column names.
        """
        ...


def _check_selection(selection: Any) -> None:
    missing = [m for m in ("inputs", "select") if not callable(getattr(selection, m, None))]
    if missing:
        raise TypeError(
            "selection: expected an EventSelection (an object with inputs() -> list[str] and "
            f"select(arrays) -> (x, names), e.g. simulator.event_selection()) or None, got "
            f"{type(selection).__name__} without {' and '.join(f'{m}()' for m in missing)}"
        )


def _read_arrays(t, path: Path, tree: str, exprs: Mapping[str, str]) -> dict[str, Any]:
    """Evaluate {column: expression} on tree ``t`` -> {column: awkward array, one entry per event}.

    Every expression is checked first (:func:`parse_expression`; an exact branch name, identifier or
    not, is read as is). Then the branches they name are read (failures there mean a corrupt file),
    then the expressions are evaluated on those arrays (failures there are the expression's).
    """
    keys = list(dict.fromkeys(t.keys() + t.keys(full_paths=False)))
    parsed = {c: Expression.branch(e, c) if e in keys else parse_expression(e, c) for c, e in exprs.items()}
    for column, ex in parsed.items():
        for name in (n for n in ex.names if n not in keys):
            used = f" (column {column!r} = {ex.text!r})" if ex.text != name else ""
            raise _missing("branch", name, path, f"tree {tree!r}{used}", keys)
    values = {}
    for name in dict.fromkeys(n for ex in parsed.values() for n in ex.names):
        try:
            values[name] = t[name].array(library="ak")
        except _corrupt_types() as err:
            raise _corrupt(path, err, f"reading branch {name!r} of tree {tree!r}") from err
    where = f" on tree {tree!r} in {path}"
    return {column: ex.evaluate(values, t.num_entries, where) for column, ex in parsed.items()}


def read_user_events(
    path: str | os.PathLike,
    tree: str,
    branches: Mapping[str, str] | Sequence[str] | None = None,
    selection: EventSelection | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Read events from a user's ROOT file.

    Without ``selection`` every requested branch must be flat (one number per event); the result
    has one column per branch. With an :class:`EventSelection` (any object with ``inputs()`` and
    ``select(arrays)``, e.g. ``simulator.event_selection()``) the collections it names are read as
    jagged arrays and the result is what its ``select`` makes of them: one row per selected event.

    Arguments:
        path: ROOT file.
        tree: name of the ``TTree`` in it.
        branches: without selection: branch names (list) or ``{column: expression}``
            (expressions such as ``"pt * cosh(eta)"`` in the grammar of
            :mod:`mfinfer.io.expressions`, which rejects anything else); with a selection: optional
            ``{canonical input: expression}`` overrides, canonical inputs being
            ``selection.inputs()`` (e.g. ``{"Electron_pt": "el_pt"}``).
        selection: rule for jagged per-event collections, or None for flat branches.

    Returns:
        ``(x, names)``: events (m, D) float64 and the D column names (m is the number of
        selected events). The count is logged at INFO level on ``mfinfer.io.user_files`` as
        ``selected m of M events from FILE`` (M: the tree's entries).

    Raises:
        InputError: besides bad arguments, when no event is selected (the message names the file,
            the tree and the selection).
    """
    path = Path(path)
    if selection is not None:
        sel = read_selection(path, tree, selection, branches)
        return sel.x, sel.names
    exprs = branch_expressions({} if branches is None else branches)
    if not exprs:
        raise InputError(
            "branches: expected branch names or {column: expression}, got none; e.g. ['pt', 'eta'] "
            "or {'pt2': 'pt**2'}, or pass an EventSelection"
        )
    with _open(path) as f:
        t = _get_tree(f, path, tree)
        entries = int(t.num_entries)
        cols = []
        for name, a in _read_arrays(t, path, tree, exprs).items():
            expr = "" if exprs[name] == name else f" = {exprs[name]!r}"
            what = f"{path}: column {name!r}{expr} in tree {tree!r}"
            if a.ndim != 1:
                raise InputError(
                    f"{what} is jagged ({a.type.content}), expected one number per event; pass "
                    "an EventSelection (e.g. simulators.higgs4l.LeptonSelection()) to build "
                    "observables from collections, or reduce it (e.g. 'Electron_pt[:, 0]')"
                )
            cols.append(_flat(a, what))
            _refuse_nonfinite(cols[-1], what, "its values")
    x = np.stack(cols, axis=1)
    _selected(len(x), entries, path, tree, None)
    return x, list(exprs)


@dataclass(frozen=True)
class SelectedEvents:
    """The events :func:`read_selection` kept.

    Attributes:
        x: observables (m, D) float64 of the m selected events.
        names: the D column names.
        entries: tree entry number of each selected event, (m,) int64.
        weights: the weight branch at the selected events, (m,) float64, or None.
        n_entries: the tree's number of entries M.
        path: the file read.
    """

    x: np.ndarray
    names: list[str]
    entries: np.ndarray
    weights: np.ndarray | None
    n_entries: int
    path: Path


def read_selection(
    path: str | os.PathLike,
    tree: str,
    selection: EventSelection,
    branches: Mapping[str, str] | Sequence[str] | None = None,
    weight: str | None = None,
) -> SelectedEvents:
    """Read per-event collections through a selection, with entry numbers and weights.

    Arguments:
        path: ROOT file.
        tree: name of the ``TTree`` in it.
        selection: an :class:`EventSelection`; with ``weight`` it must also have
            ``select_entries(arrays) -> (x, names, entries)`` (as ``LeptonSelection`` has).
        branches: optional ``{canonical input: branch or expression}`` overrides (see
            :func:`read_user_events`).
        weight: a flat branch or expression giving each event's weight; None: no weights.

    Returns:
        The :class:`SelectedEvents`; ``selected m of M events from FILE`` is logged at INFO level.

    Raises:
        InputError: no event selected (naming the file, the tree and the selection's cuts), a
            jagged weight, or weights that are NaN or inf at selected events.
    """
    path = Path(path)
    _check_selection(selection)
    exprs = branch_expressions({} if branches is None else branches)
    inputs = selection.inputs()
    unknown = [k for k in exprs if k not in inputs]
    if unknown:
        raise _missing("selection input", unknown[0], path, "the selection's inputs", inputs)
    with_entries = getattr(selection, "select_entries", None)
    if weight is not None and not callable(with_entries):
        raise InputError(
            f"weight: the selection {type(selection).__name__} has no select_entries(arrays), so "
            "its events cannot be matched to a weight branch; drop the weight or use a selection "
            "that reports the entries it keeps"
        )
    exprs = {k: exprs.get(k, k) for k in inputs}
    with _open(path) as f:
        t = _get_tree(f, path, tree)
        entries = int(t.num_entries)
        arrays = _read_arrays(t, path, tree, exprs)
        for name in inputs:
            if arrays[name].ndim != 2:
                raise InputError(
                    f"{path}: expected {name!r} in tree {tree!r} to be a per-event collection "
                    f"(var * number), got {arrays[name].type}"
                )
            expr = "" if exprs[name] == name else f" = {exprs[name]!r}"
            _refuse_nonfinite(arrays[name], f"{path}: input {name!r}{expr} in tree {tree!r}",
                              "its values")
        w_all = None
        if weight is not None:
            w_arr = _read_arrays(t, path, tree, {"weight": weight})["weight"]
            what = f"{path}: weight {weight!r} in tree {tree!r}"
            if w_arr.ndim != 1:
                raise InputError(f"{what} is jagged ({w_arr.type.content}), expected one number per "
                                 "event; name a flat branch (e.g. genWeight, EventWeight)")
            w_all = _flat(w_arr, what)
    collections = {k: arrays[k] for k in inputs}
    if callable(with_entries):
        x, names, kept = with_entries(collections)
        kept = np.asarray(kept, dtype=np.int64).reshape(-1)
    else:
        x, names = selection.select(collections)
        kept = None
    x, names = np.asarray(x, dtype=np.float64), [str(n) for n in names]
    if x.ndim != 2 or x.shape[1] != len(names) or (kept is not None and len(kept) != len(x)):
        raise InputError(
            f"selection: {type(selection).__name__}.select returned events of shape {x.shape} and "
            f"{len(names)} names; expected shape (m, {len(names)})"
        )
    _refuse_nonfinite(x, f"{path}: the observables that {type(selection).__name__} computed from "
                      f"tree {tree!r}", "the inputs (the branches and expressions it reads)", kept)
    _selected(len(x), entries, path, tree, selection)
    weights = None
    if w_all is not None and kept is not None:
        weights = w_all[kept]
        bad = ~np.isfinite(weights)
        if bad.any():
            raise InputError(
                f"{path}: weight {weight!r} in tree {tree!r} is NaN or inf at {int(bad.sum())} of the "
                f"{len(weights)} selected events (entries {kept[bad][:5].tolist()}"
                f"{', ...' if bad.sum() > 5 else ''}); fix the file, or replace them with an "
                f"expression such as 'where({weight} == {weight}, {weight}, 0)'"
            )
    return SelectedEvents(x, names, np.arange(len(x)) if kept is None else kept, weights, entries, path)


def tree_branches(path: str | os.PathLike) -> dict[str, list[str]]:
    """The branch names of every ``TTree`` in a ROOT file: ``{tree: [branch, ...]}`` (names as
    :func:`read_user_events` accepts them, full paths and leaf names both)."""
    path = Path(path)
    with _open(path) as f:
        try:
            classes = {k.split(";")[0]: v for k, v in f.classnames().items()}
        except _corrupt_types() as err:
            raise _corrupt(path, err, "reading the file's keys") from err
        out = {}
        for name, cls in classes.items():
            if cls in ("TTree", "TNtuple"):
                t = _get_tree(f, path, name)
                out[name] = list(dict.fromkeys(t.keys() + t.keys(full_paths=False)))
    return out


def _flat(a: Any, what: str) -> np.ndarray:
    """A flat awkward array as float64 numpy."""
    try:
        return _awkward().to_numpy(a).astype(np.float64)
    except (ValueError, TypeError) as err:
        raise InputError(f"{what}: expected one number per event, got {a.type}") from err


def _refuse_nonfinite(a: Any, what: str, fix: str, entries: np.ndarray | None = None) -> None:
    """Raise ``InputError`` if the flat (n,), jagged (n, var) or (n, D) array ``a`` holds NaN or
    inf, naming ``what``, how many of its events and the first entries."""
    bad: np.ndarray
    if isinstance(a, np.ndarray):
        bad = np.asarray(~np.isfinite(a).reshape(len(a), -1).all(axis=1) if a.size else
                         np.zeros(len(a), dtype=bool), dtype=bool)
    else:
        ak = _awkward()
        finite = np.isfinite(a)
        bad = np.asarray(ak.to_numpy(~ak.all(finite, axis=1) if a.ndim == 2 else ~finite), dtype=bool)
    if bad.any():
        idx = np.flatnonzero(bad) if entries is None else np.asarray(entries)[bad]
        raise InputError(f"{what} is NaN or inf in {int(bad.sum())} of {len(bad)} events (entries "
                         f"{idx[:5].tolist()}{', ...' if bad.sum() > 5 else ''}); fix {fix} (e.g. a "
                         "division by zero or the log or sqrt of a negative number) or the file")


def _selected(m: int, entries: int, path: Path, tree: str, selection: EventSelection | None) -> None:
    """Log how many of the tree's entries were kept; refuse an empty result."""
    if m == 0:
        describe = getattr(selection, "describe", None)
        rule = ("" if selection is None else f" by the selection {type(selection).__name__} (cuts: "
                f"{describe()})" if callable(describe) else f" by the selection {selection!r}")
        raise InputError(f"{path}: no events selected{rule} from the {entries} entries of tree "
                         f"{tree!r}; check the file, the tree and the selection")
    _log.info("selected %d of %d events from %s", m, entries, path)
