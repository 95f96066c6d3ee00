"""A user's own simulations in ROOT files: the config's ``simulations:`` section and its file checks.

A :class:`SimulationsConfig` says where the training sample lives and which branches hold what::

    simulations:
      files: ["sims/higgs_*.root", "extra/more.root"]   # globs, relative to the working directory
      tree: events
      theta: [a2, a3]                                   # one branch or expression per parameter,
                                                        # in the prior's order
      observables: [m_4l, "pt_l1 * cosh(eta_l1)"]       # branches / expressions (names = themselves),
      # observables: {m4l: m_4l, E1: "pt_l1 * cosh(eta_l1)"}   or {column: expression}
      # observables: {events: {preset: nanoaod}}      or lepton collections through a selection
      weight: genWeight                                 # optional, one number per event
      score: [score_a2, score_a3]                       # optional: the joint score t(x, z | θ), one
                                                        # branch per parameter
      manifold_dim: 11                                  # the M-flow's d when no simulator declares it

Expressions are those of :mod:`mfinfer.io.expressions` (checked, never given to ``eval``). Lepton
collections (``observables: {events: {...}}``) are read with the ``events:`` settings of
:class:`~mfinfer.io.events.EventsConfig` through a simulator's ``event_selection`` (the run's
simulator, or ``selection: <registered simulator>`` when the run names none).

:func:`resolve_files` expands the globs; :func:`check_files` opens every file once and checks that
each has the tree and every branch the section reads (a missing or misspelled branch is a
:class:`MissingKeyError` listing the tree's branches nearest first) and that all files hold the same
branches (an :class:`InputError` naming both files and the differing branches). Reading is
:mod:`mfinfer.io.sample_store`.

Example:
    >>> cfg = SimulationsConfig.from_dict({"files": "sims/*.root", "theta": ["mu"],
    ...                                    "observables": ["x", "y"], "weight": "w"})
    >>> cfg.files, cfg.observables, cfg.data_dim, cfg.param_dim
    (['sims/*.root'], {'x': 'x', 'y': 'y'}, 2, 1)
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfinfer.errors import ConfigError, InputError
from mfinfer.io.events import EventsConfig
from mfinfer.io.expressions import Expression, parse_expression
from mfinfer.io.root import _get_tree, _missing, _open
from mfinfer.schema import check, unknown

__all__ = ["SimulationsConfig", "check_files", "resolve_files", "write_simulations"]

_FIELDS = ("files", "tree", "theta", "observables", "weight", "score", "manifold_dim", "selection",
           "step_size")


def _expression(text: Any, where: str) -> str:
    """``text`` checked as a branch name or expression (ConfigError naming ``where``)."""
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{where}: expected a branch name or expression string, got {text!r} "
                          f"({type(text).__name__})")
    try:
        parse_expression(text, where)
    except InputError as err:
        if text.isidentifier() or not any(c in text for c in "()+-*/[]<>=&|~% "):
            return text  # a branch whose name is not an identifier: read as it is
        raise ConfigError(f"{where}: {err}") from None
    return text


def _names(value: Any, where: str) -> list[str]:
    """A branch list: one string, or a list of strings (each checked)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of branch names or expressions, got "
                          f"{value!r:.80} ({type(value).__name__})")
    return [_expression(v, f"{where}[{i}]") for i, v in enumerate(value)]


@dataclass(frozen=True)
class SimulationsConfig:
    """Where a training sample lives and how its columns are read (see the module docstring).

    Attributes:
        files: globs of ROOT files, relative to the working directory; read in sorted order per glob.
        tree: the ``TTree`` in every file.
        theta: one branch or expression per parameter, in the prior's order, (p,).
        observables: ``{column: branch or expression}`` (D columns), or None with :attr:`events`.
        events: lepton-collection settings (``observables: {events: {...}}``), or None.
        weight: a flat branch or expression with each event's weight, or None (all 1).
        score: one branch or expression per parameter with the joint score, or None.
        manifold_dim: the manifold dimension d of manifold models when no simulator gives it.
        selection: the registered simulator whose ``event_selection`` reads :attr:`events` when
            the run names no simulator.
        step_size: entries per chunk read at once.
    """

    files: list[str]
    theta: list[str]
    observables: dict[str, str] | None = None
    tree: str = "events"
    events: EventsConfig | None = None
    weight: str | None = None
    score: list[str] | None = None
    manifold_dim: int | None = None
    selection: str | None = None
    step_size: int = 100_000

    @classmethod
    def from_dict(cls, data: Any, where: str = "simulations") -> SimulationsConfig:
        """Build from the config's mapping; ``ConfigError`` naming the field on any problem."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping with files:, tree:, theta:, observables: "
                              f"(and optional weight:, score:), got {data!r:.80} ({type(data).__name__})")
        for key in data:
            if key not in _FIELDS:
                unknown(key, list(_FIELDS), where)
        for key in ("files", "theta", "observables"):
            if key not in data:
                raise ConfigError(f"{where}.{key}: missing; the section needs files:, theta: and "
                                  "observables: (see mfinfer.io.simulations)")
        files = [data["files"]] if isinstance(data["files"], str) else data["files"]
        check(files, list[str], f"{where}.files", {"min_len": 1})
        tree = data.get("tree", "events")
        check(tree, str, f"{where}.tree", {"min_len": 1})
        obs, events = data["observables"], None
        if isinstance(obs, Mapping) and list(obs) == ["events"] and isinstance(obs["events"], Mapping):
            given = {"tree": tree} if "tree" in data else {}  # else the preset's tree
            events = EventsConfig.from_dict({**obs["events"], **given}, f"{where}.observables.events")
            tree, observables = events.tree, None
        elif isinstance(obs, Mapping):
            if not obs:
                raise ConfigError(f"{where}.observables: expected at least one column, got {{}}")
            observables = {str(k): _expression(v, f"{where}.observables.{k}") for k, v in obs.items()}
        else:
            observables = {n: n for n in _names(obs, f"{where}.observables")}
        theta = _names(data["theta"], f"{where}.theta")
        score = None if data.get("score") is None else _names(data["score"], f"{where}.score")
        if score is not None and len(score) != len(theta):
            raise ConfigError(f"{where}.score: expected one branch per parameter ({len(theta)}, as "
                              f"theta: {theta}), got {len(score)}: {score}")
        weight = data.get("weight")
        if weight is not None:
            _expression(weight, f"{where}.weight")
        for key, spec in (("manifold_dim", {"min": 1}), ("step_size", {"min": 1})):
            if data.get(key) is not None:
                check(data[key], int, f"{where}.{key}", spec)
        if data.get("selection") is not None:
            check(data["selection"], str, f"{where}.selection", {"min_len": 1})
            if events is None:
                raise ConfigError(f"{where}.selection: applies only with observables: {{events: ...}} "
                                  "(lepton collections); remove it for flat branches")
        return cls(files=list(files), theta=theta, observables=observables, tree=tree, events=events,
                   weight=weight, score=score, manifold_dim=data.get("manifold_dim"),
                   selection=data.get("selection"), step_size=data.get("step_size", 100_000))

    @property
    def param_dim(self) -> int:
        return len(self.theta)

    @property
    def data_dim(self) -> int | None:
        """D for flat observables; None for lepton collections (the selection decides)."""
        return None if self.observables is None else len(self.observables)

    def columns(self) -> dict[str, dict[str, str]]:
        """The flat columns read per event, by group: ``theta``, ``x`` (flat observables only),
        ``weight`` and ``score`` (when given), each ``{column: branch or expression}``."""
        groups = {"theta": {f"theta[{j}]": e for j, e in enumerate(self.theta)}}
        if self.observables is not None:
            groups["x"] = dict(self.observables)
        if self.weight is not None:
            groups["weight"] = {"weight": self.weight}
        if self.score is not None:
            groups["score"] = {f"score[{j}]": e for j, e in enumerate(self.score)}
        return groups

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["events"] = None if self.events is None else self.events.to_dict()
        return out


def resolve_files(cfg: SimulationsConfig, where: str = "simulations.files") -> list[Path]:
    """The files the globs match, sorted per glob, without repeats.

    Raises:
        FileNotFoundError: a glob matches no file (naming it and the working directory).
    """
    out: dict[Path, None] = {}
    for i, pattern in enumerate(cfg.files):
        found = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True))
        found = [p for p in found if p.is_file()]
        if not found:
            raise FileNotFoundError(f"{where}[{i}]: {pattern!r} matches no file (relative to "
                                    f"{Path.cwd()}); check the path, or write the files with "
                                    "`mfinfer simulate CONFIG --out FILE.root`")
        out.update(dict.fromkeys(found))
    return list(out)


def _needed(exprs: Mapping[str, str], keys: list[str]) -> dict[str, str]:
    """``{branch: column}`` for every branch the expressions read."""
    out: dict[str, str] = {}
    for column, expr in exprs.items():
        ex = Expression.branch(expr, column) if expr in keys else parse_expression(expr, column)
        for name in ex.names:
            out.setdefault(name, column)
    return out


def check_files(paths: list[Path], cfg: SimulationsConfig, groups: Mapping[str, Mapping[str, str]]
                ) -> dict[Path, int]:
    """Open every file once: the tree, the branches ``groups`` read, the same branches everywhere.

    Arguments:
        paths: the files (:func:`resolve_files`).
        cfg: the section (tree, step size).
        groups: ``{group: {column: branch or expression}}`` to read (:meth:`SimulationsConfig.columns`).

    Returns:
        ``{path: number of entries}``.

    Raises:
        MissingKeyError: a file lacks the tree or a branch (the nearest names first).
        InputError: two files hold different branches (both files and the differing branches named).
    """
    entries: dict[Path, int] = {}
    first: tuple[Path, list[str]] | None = None
    for path in paths:
        with _open(path) as f:
            t = _get_tree(f, path, cfg.tree)
            keys = list(dict.fromkeys(t.keys() + t.keys(full_paths=False)))
            entries[path] = int(t.num_entries)
        if first is not None and set(keys) != set(first[1]):
            only_a = sorted(set(first[1]) - set(keys))[:5]
            only_b = sorted(set(keys) - set(first[1]))[:5]
            raise InputError(f"simulations.files: the trees {cfg.tree!r} differ: {first[0]} has "
                             f"{only_a or 'no other'} branches that {path} lacks, {path} has "
                             f"{only_b or 'no other'} that {first[0]} lacks; give files of one schema")
        if first is None:
            first = (path, keys)
            for group, exprs in groups.items():
                for name, column in _needed(exprs, keys).items():
                    if name not in keys:
                        field_ = column if group in ("weight",) else f"{group} column {column!r}"
                        raise _missing("branch", name, path,
                                       f"tree {cfg.tree!r} (for simulations {field_})", keys)
    return entries


def write_simulations(path: str | os.PathLike, theta: Any, x: Any, *, names: list[str] | None = None,
                      weight: Any = None, score: Any = None, metadata: Mapping[str, Any] | None = None,
                      parts: int = 1, tree: str = "events") -> tuple[list[Path], dict[str, Any]]:
    """Write a training sample as flat ROOT trees that a ``simulations:`` section reads as it is.

    Branches (float64, one ``TTree`` written with ``mktree``): the observables (``names``, default
    ``x_0, x_1, ...``), ``theta_0, theta_1, ...``, ``weight`` and ``score_0, score_1, ...`` (when
    given), plus the JSON metadata of :func:`mfinfer.io.write_events`.

    Arguments:
        path: the file; with ``parts > 1`` the files ``<stem>_0<suffix>`` ... (rows split in order).
        theta: (n, p); x: (n, D); weight: (n,) or None; score: (n, p) or None.
        names: D observable names (identifiers).
        metadata: JSON facts kept in every file (simulator, seed...).
        parts: the number of files.
        tree: the tree's name.

    Returns:
        ``(paths written, the simulations: section that reads them)``.
    """
    from mfinfer.io.root import write_events

    theta, x = np.atleast_2d(np.asarray(theta, dtype=np.float64)), np.asarray(x, dtype=np.float64)
    if isinstance(parts, bool) or not isinstance(parts, int) or not 1 <= parts <= max(len(x), 1):
        raise InputError(f"parts: expected an integer in [1, {len(x)}] (one file holds >= 1 event), "
                         f"got {parts!r}")
    names = [f"x_{i}" for i in range(x.shape[1])] if names is None else [str(n) for n in names]
    path = Path(path)
    paths = [path] if parts == 1 else [path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(parts)]
    bounds = np.linspace(0, len(x), parts + 1).round().astype(int)
    for i, p in enumerate(paths):
        rows = slice(bounds[i], bounds[i + 1])
        extra = {} if weight is None else {"weight": np.asarray(weight, dtype=np.float64)[rows]}
        if score is not None:
            s = np.asarray(score, dtype=np.float64)[rows]
            extra |= {f"score_{j}": s[:, j] for j in range(s.shape[1])}
        write_events(p, x[rows], theta[rows], names=names, tree=tree, extra=extra,
                     metadata={**(metadata or {}), "part": i, "parts": parts})
    section: dict[str, Any] = {
        "files": str(path) if parts == 1 else str(path.with_name(f"{path.stem}_*{path.suffix}")),
        "tree": tree, "theta": [f"theta_{j}" for j in range(theta.shape[1])], "observables": names}
    if weight is not None:
        section["weight"] = "weight"
    if score is not None:
        section["score"] = [f"score_{j}" for j in range(theta.shape[1])]
    return paths, section
