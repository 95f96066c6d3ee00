"""Reader settings for lepton events in users' ROOT files: the config's ``events:`` section.

An :class:`EventsConfig` says how to read a file of per-event lepton collections: the tree, the
momentum convention, the collection prefixes and charge field, a branch map, the cuts, the weight
branch and the off-manifold gate. Two file schemas ship as presets (:data:`PRESETS`); any other key
overrides the preset's value (``branches`` and ``cuts`` key by key)::

    events: {preset: nanoaod}                       # Events; Electron_pt/eta/phi/mass/charge, Muon_...
    events: {preset: cms-tutorial}                  # events; Electron_Px/Py/Pz/E/Charge, Muon_...
    events:
      preset: nanoaod
      weight: genWeight                             # simulated NanoAOD: the generator weight
      branches: {Muon_pt: "Muon_pt * Muon_corr"}    # canonical name -> branch or safe expression
      cuts: {pt_e: 7, pt_mu: 5, abs_eta: 2.5, m_Z1: [40, 120], m_Z2: [12, 120], m_4l: [105, 140]}
      gate: {quantile: 0.99}

Conventions: GeV; canonical input names are ``<electron>_<field>`` and ``<muon>_<field>`` with the
fields of the momentum convention (``ptetaphim``: pt, eta, phi, mass; ``ptetaphi``: pt, eta, phi,
massless; ``cartesian``: E, px, py, pz) plus the charge field; ``branches`` maps any of them to the
file's branch name or to an expression of :mod:`mfinfer.io.expressions`. Lepton cuts are inclusive
(``pT >= pt_e``, ``|eta| <= abs_eta``), mass windows exclusive (``lo < m < hi``), with ``m_Z1 =
m(e- e+)`` and ``m_Z2 = m(mu- mu+)`` (pairing by flavour). Which events are kept is the simulator's
selection (``simulator.event_selection(**config.selection_options())``, e.g.
``simulators.higgs4l.LeptonSelection``, whose docstring lists the rejected topologies).

Example:
    >>> cfg = EventsConfig.from_dict({"preset": "cms-tutorial", "cuts": {"pt_mu": 5}})
    >>> cfg.tree, cfg.momentum, cfg.charge, cfg.branches["Muon_px"], cfg.weight
    ('events', 'cartesian', 'Charge', 'Muon_Px', 'EventWeight')
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfinfer.errors import ConfigError, MissingKeyError
from mfinfer.io.expressions import parse_expression
from mfinfer.io.user_files import SelectedEvents, read_selection, tree_branches
from mfinfer.schema import choice, unknown

__all__ = ["CUT_KEYS", "GATE_KEYS", "MOMENTA", "PRESETS", "EventsConfig", "read_lepton_events"]

#: Per-lepton momentum fields of each convention (the charge field comes on top).
MOMENTA: dict[str, tuple[str, ...]] = {
    "ptetaphim": ("pt", "eta", "phi", "mass"),
    "ptetaphi": ("pt", "eta", "phi"),
    "cartesian": ("E", "px", "py", "pz"),
}

_CMS_MAP = {f"{c}_{f}": f"{c}_{f.capitalize()}" for c in ("Electron", "Muon") for f in ("px", "py", "pz")}

#: The file schemas selected by ``events: {preset: NAME}``.
PRESETS: dict[str, dict[str, Any]] = {
    # CMS NanoAOD: jagged Electron_pt/eta/phi/mass/charge and Muon_...; no weight by default (data
    # files have none; simulated ones: add weight: genWeight).
    "nanoaod": {"tree": "Events", "momentum": "ptetaphim", "electron": "Electron", "muon": "Muon",
                "charge": "charge", "branches": {}, "weight": None},
    # The CMS HEP tutorial (e.g. HZZ.root): jagged Muon_Px/Py/Pz/E and Muon_Charge, Electron_...,
    # a flat EventWeight, tree "events".
    "cms-tutorial": {"tree": "events", "momentum": "cartesian", "electron": "Electron", "muon": "Muon",
                     "charge": "Charge", "branches": _CMS_MAP, "weight": "EventWeight"},
}
#: The cuts and their defaults (none): lepton pT per flavour and |eta| (inclusive), mass windows.
CUT_KEYS: dict[str, Any] = {"pt_e": 0.0, "pt_mu": 0.0, "abs_eta": math.inf, "m_Z1": [0.0, math.inf],
                            "m_Z2": [0.0, math.inf], "m_4l": [0.0, math.inf]}
#: The gate settings and their defaults (see :class:`mfinfer.inference.gate.GateSettings`).
GATE_KEYS: dict[str, Any] = {"quantile": 0.99, "n_reference": 2000, "n_theta": 32, "alpha": 0.01}
_DEFAULT_PRESET = "nanoaod"  # the values used where neither a preset nor a key says otherwise


def _fail(where: str, expected: str, got: Any) -> ConfigError:
    return ConfigError(f"{where}: expected {expected}, got {got!r} ({type(got).__name__})")


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(where, "a non-empty string", value)
    return value


def _number(value: Any, where: str, low: float = -math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < low:
        raise _fail(where, f"a number >= {low:g}" if low > -math.inf else "a number", value)
    return float(value)


def _keys(data: Mapping, allowed: list[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            unknown(key, allowed, where)


@dataclass(frozen=True)
class EventsConfig:
    """How to read lepton events from a user's ROOT file (the preset merged with the overrides).

    Attributes:
        preset: the preset the values started from (``nanoaod``, ``cms-tutorial``) or None
            (then the ``nanoaod`` values are the defaults).
        tree: the ``TTree``.
        momentum: ``ptetaphim``, ``ptetaphi`` (massless) or ``cartesian``.
        electron, muon: prefixes of the lepton collections.
        charge: the charge field (``Electron_<charge>``).
        branches: ``{canonical input: branch or expression}`` overrides.
        require: ``exactly`` (2 e + 2 mu of opposite charge) or ``at_least`` (leading of each).
        cuts: ``pt_e``, ``pt_mu`` (GeV), ``abs_eta``, ``m_Z1``, ``m_Z2``, ``m_4l`` ([low, high] GeV).
        weight: a flat branch or expression with each event's weight, or None.
        gate: off-manifold gate settings ``quantile``, ``n_reference``, ``n_theta``, ``alpha``.
    """

    preset: str | None = None
    tree: str = "Events"
    momentum: str = "ptetaphim"
    electron: str = "Electron"
    muon: str = "Muon"
    charge: str = "charge"
    branches: dict[str, str] = field(default_factory=dict)
    require: str = "exactly"
    cuts: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(CUT_KEYS))
    weight: str | None = None
    gate: dict[str, Any] = field(default_factory=lambda: dict(GATE_KEYS))

    @classmethod
    def from_dict(cls, data: Any, where: str = "events") -> EventsConfig:
        """Build from a config mapping: the preset's values, then the other keys (``branches``,
        ``cuts`` and ``gate`` merged key by key). Raises ``ConfigError`` naming the field."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping such as {{preset: nanoaod}} or "
                              f"{{preset: cms-tutorial}}, got {data!r:.80} ({type(data).__name__})")
        allowed = [f for f in cls.__dataclass_fields__]
        _keys(data, allowed, where)
        preset = data.get("preset")
        if preset is not None:
            choice(preset, list(PRESETS), f"{where}.preset")
        base = PRESETS[preset or _DEFAULT_PRESET]
        merged: dict[str, Any] = {**base, "branches": dict(base["branches"]), "require": "exactly",
                                  "cuts": copy.deepcopy(CUT_KEYS), "gate": dict(GATE_KEYS)}
        for key, value in data.items():
            if key in ("branches", "cuts", "gate"):
                if not isinstance(value, Mapping):
                    raise _fail(f"{where}.{key}", "a mapping", value)
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        merged["preset"] = preset
        if "momentum" in data or "electron" in data or "muon" in data or "charge" in data:
            # the preset's branch map belongs to its own fields: keep the entries that still apply
            inputs = EventsConfig(**{**merged, "branches": {}}).canonical_inputs()
            given = data.get("branches") or {}
            merged["branches"] = {k: v for k, v in merged["branches"].items() if k in inputs or k in given}
        return cls(**merged)

    def __post_init__(self) -> None:
        where = "events"
        for key in ("tree", "electron", "muon", "charge"):
            _name(getattr(self, key), f"{where}.{key}")
        choice(self.momentum, list(MOMENTA), f"{where}.momentum")
        choice(self.require, ["exactly", "at_least"], f"{where}.require")
        if self.weight is not None:
            try:
                parse_expression(_name(self.weight, f"{where}.weight"), "weight")
            except ConfigError:
                raise
            except ValueError as err:
                raise ConfigError(f"{where}.weight: {err}") from None
        if not isinstance(self.branches, dict):
            raise _fail(f"{where}.branches", "a mapping {canonical input: branch or expression}",
                        self.branches)
        for key, expr in self.branches.items():
            if not isinstance(expr, str) or not isinstance(key, str):
                raise _fail(f"{where}.branches.{key}", "a branch name or expression string", expr)
            try:
                parse_expression(expr, key)
            except ValueError as err:
                raise ConfigError(f"{where}.branches.{key}: {err}") from None
        _keys(self.cuts, list(CUT_KEYS), f"{where}.cuts")
        for key in ("pt_e", "pt_mu", "abs_eta"):
            _number(self.cuts[key], f"{where}.cuts.{key}", 0.0)
        for key in ("m_Z1", "m_Z2", "m_4l"):
            w = self.cuts[key] = list(self.cuts[key]) if isinstance(self.cuts[key], tuple) else self.cuts[key]
            if not (isinstance(w, list) and len(w) == 2) or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in w) or not w[0] < w[1]:
                raise _fail(f"{where}.cuts.{key}", "a window [low, high] in GeV with low < high", w)
        _keys(self.gate, list(GATE_KEYS), f"{where}.gate")
        q = _number(self.gate["quantile"], f"{where}.gate.quantile")
        if not 0 < q < 1:
            raise _fail(f"{where}.gate.quantile", "a number in (0, 1), e.g. 0.99", q)
        for key in ("n_reference", "n_theta"):
            v = self.gate[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _fail(f"{where}.gate.{key}", "an integer >= 1", v)
        if self.gate["n_reference"] < math.ceil(q / (1 - q)):
            raise ConfigError(f"{where}.gate.n_reference: at quantile {q} the threshold needs at least "
                              f"{math.ceil(q / (1 - q))} reference events, got {self.gate['n_reference']}")
        a = _number(self.gate["alpha"], f"{where}.gate.alpha")
        if not 0 < a < 1:
            raise _fail(f"{where}.gate.alpha", "a number in (0, 1), e.g. 0.01", a)

    # ------------------------------------------------------------------ to the selection
    def canonical_inputs(self) -> list[str]:
        """The canonical input names, e.g. ``["Electron_pt", ..., "Muon_charge"]``."""
        fields = (*MOMENTA[self.momentum], self.charge)
        return [f"{c}_{f}" for c in (self.electron, self.muon) for f in fields]

    def selection_options(self) -> dict[str, Any]:
        """Keyword options of ``simulator.event_selection(...)`` (``LeptonSelection``'s)."""
        c = self.cuts
        return {"electron": self.electron, "muon": self.muon, "momentum": self.momentum,
                "require": self.require, "charge": self.charge,
                "min_pt": (float(c["pt_e"]), float(c["pt_mu"])), "max_abs_eta": float(c["abs_eta"]),
                **{k: (float(c[k][0]), float(c[k][1])) for k in ("m_Z1", "m_Z2", "m_4l")}}

    def selection(self, simulator: Any, name: str | None = None, where: str = "events") -> Any:
        """The simulator's event selection with these settings; ``ConfigError`` (naming the
        simulator as ``name``) when it has none, refuses the options, or ``branches`` names an input
        it does not read."""
        name = name or type(simulator).__name__
        make = getattr(simulator, "event_selection", None)
        if not callable(make):
            raise ConfigError(f"{where}: simulator {name!r} defines no event_selection(), so it cannot "
                              "read lepton collections; remove the events: section")
        try:
            selection = make(**self.selection_options())
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {name!r}.event_selection refuses these settings: {err}") from None
        inputs = list(selection.inputs())
        for key in self.branches:
            if key not in inputs:
                near = difflib.get_close_matches(key, inputs, n=3, cutoff=0.0)
                raise ConfigError(f"{where}.branches.{key}: not an input of the selection; with momentum "
                                  f"{self.momentum!r} the inputs are (nearest first) "
                                  f"{near + [i for i in inputs if i not in near]}")
        return selection

    def expressions(self) -> dict[str, str]:
        """``{canonical input: branch or expression}`` for every input, branch map applied."""
        return {k: self.branches.get(k, k) for k in self.canonical_inputs()}

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _needed(exprs: Mapping[str, str], keys: list[str]) -> dict[str, str]:
    """``{branch name: why}`` for every branch the expressions read (an exact branch name counts
    as itself)."""
    out: dict[str, str] = {}
    for column, expr in exprs.items():
        names = [expr] if expr in keys else list(parse_expression(expr, column).names)
        for n in names:
            out.setdefault(n, column if expr == column else f"{column} = {expr!r}")
    return out


def _matching_presets(schema: Mapping[str, list[str]], exclude: str | None) -> list[str]:
    """Presets whose tree and lepton branches (not the weight) the file has."""
    found = []
    for name in PRESETS:
        if name == exclude:
            continue
        cfg = EventsConfig.from_dict({"preset": name})
        keys = schema.get(cfg.tree)
        if keys is not None and all(n in keys for n in _needed(cfg.expressions(), keys)):
            found.append(name)
    return found


def _check_schema(path: Path, cfg: EventsConfig) -> None:
    """Refuse a file that does not have the tree and branches ``cfg`` reads, naming every missing
    branch and the preset the file matches instead, if any."""
    schema = tree_branches(path)
    setting = f"preset {cfg.preset!r}" if cfg.preset else "the events: settings"
    others = _matching_presets(schema, cfg.preset)
    hint = (f"; the file matches preset {others[0]!r}: use events: {{preset: {others[0]}}}" if others else
            "; map the canonical names to the file's branches with events.branches: {canonical: branch "
            "or expression}, or pick another preset " + f"({', '.join(repr(p) for p in PRESETS)})")
    exprs = cfg.expressions() | ({"weight": cfg.weight} if cfg.weight else {})
    keys = schema.get(cfg.tree)
    if keys is None:
        trees = ", ".join(repr(t) for t in schema) or "none"
        problem = f"no tree {cfg.tree!r} (the file's trees: {trees})"
        if len(schema) == 1:  # name what the one tree lacks too
            (only, keys), = schema.items()
            problem += f", and tree {only!r} lacks the branches {_listing(exprs, keys)}"
        raise MissingKeyError(f"{path}: does not match {setting}: {problem}{hint}")
    if any(n not in keys for n in _needed(exprs, keys)):
        missing = next(n for n in _needed(exprs, keys) if n not in keys)
        near = difflib.get_close_matches(missing, keys, n=5, cutoff=0.0)
        raise MissingKeyError(f"{path}: does not match {setting}: tree {cfg.tree!r} lacks the branches "
                              f"{_listing(exprs, keys)}; it has (nearest first) {', '.join(map(repr, near))}"
                              f", ... ({len(keys)} branches){hint}")


def _listing(exprs: Mapping[str, str], keys: list[str]) -> str:
    """The branches ``exprs`` read that ``keys`` lacks, each with the input it is for."""
    missing = {n: why for n, why in _needed(exprs, keys).items() if n not in keys}
    return ", ".join(f"{n!r}" + (f" (for {why})" if why != n else "") for n, why in missing.items())


def read_lepton_events(
    path: str | os.PathLike,
    simulator: Any,
    events: EventsConfig | Mapping[str, Any] | None = None,
    tree: str | None = None,
) -> SelectedEvents:
    """Read and select lepton events from a user's ROOT file with ``events`` settings.

    Arguments:
        path: ROOT file.
        simulator: a simulator with ``event_selection(**options)`` (e.g. ``Higgs4l``).
        events: an :class:`EventsConfig`, a mapping for :meth:`EventsConfig.from_dict` (e.g.
            ``{"preset": "cms-tutorial"}``) or None (the ``nanoaod`` values).
        tree: overrides the settings' tree.

    Returns:
        :class:`~mfinfer.io.user_files.SelectedEvents`: observables (m, D), names, entry numbers, the
        weight branch at the selected events (or None) and the tree's entries. ``selected m of M
        events from FILE`` is logged at INFO level on ``mfinfer.io.user_files``.

    Raises:
        MissingKeyError: the file lacks the tree or branches (all missing ones named, with the
            preset the file matches instead).
        InputError: no event selected (the file and the cuts named), a NaN or inf weight.
    """
    cfg = events if isinstance(events, EventsConfig) else EventsConfig.from_dict(events)
    if tree is not None and tree != cfg.tree:
        cfg = EventsConfig(**{**cfg.to_dict(), "tree": tree})
    selection = cfg.selection(simulator)
    path = Path(path)
    _check_schema(path, cfg)
    return read_selection(path, cfg.tree, selection, cfg.branches, weight=cfg.weight)
