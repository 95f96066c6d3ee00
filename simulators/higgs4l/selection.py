"""2e2mu event selection for users' ROOT files: lepton collections -> the simulators' observables.

:class:`LeptonSelection` implements :class:`mfinfer.io.user_files.EventSelection`: given the per-event
lepton collections of a file (jagged awkward arrays such as ``Electron_pt``), it picks one e-, e+,
mu-, mu+ per event and computes the observables of :func:`simulators.higgs4l.kinematics.observables`
(:data:`simulators.higgs4l.kinematics.OBSERVABLE_NAMES`), the same as :class:`Higgs4l
<simulators.higgs4l.Higgs4l>` and :class:`PythiaHiggs4l <simulators.higgs4l.PythiaHiggs4l>` return.

Conventions: GeV throughout; pairing by flavour (``Z1 = e- e+``, ``Z2 = mu- mu+``, so ``m_Z1`` is
``m_ee`` whether or not it is the pair nearer ``mZ``); lepton cuts are inclusive (``pT >= min_pt``,
``|eta| <= max_abs_eta``), mass windows exclusive (``lo < m < hi``). Which events are rejected
(``require="exactly"``, after the lepton cuts): fewer than four leptons (empty events, 3 leptons), a
flavour missing (4e, 4mu), same-sign pairs (e- e-), and more than two leptons of a flavour (5 or 6
leptons, e.g. 3e1mu or 2e4mu). ``require="at_least"`` keeps events with at least one lepton of each
charge per flavour and takes the leading (highest pT) one of each. Events whose quadruplet falls
outside the ``m_Z1``/``m_Z2``/``m_4l`` windows are rejected last.

Example:
    >>> from mfinfer.io import read_user_events
    >>> sel = LeptonSelection(min_pt=(7.0, 5.0))
    >>> x, names = read_user_events("data.root", "Events", selection=sel)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from simulators.higgs4l.kinematics import OBSERVABLE_NAMES, mass, observables

__all__ = ["MOMENTA", "LeptonSelection"]

#: The per-lepton momentum fields of each momentum convention (the charge field is added).
MOMENTA: dict[str, tuple[str, ...]] = {
    "ptetaphi": ("pt", "eta", "phi"),
    "ptetaphim": ("pt", "eta", "phi", "mass"),
    "cartesian": ("E", "px", "py", "pz"),
}


def _awkward():
    try:
        import awkward
    except ImportError as err:  # pragma: no cover - awkward is a core dependency
        raise ImportError("LeptonSelection needs awkward>=2: pip install 'awkward>=2'") from err
    return awkward


@dataclass(frozen=True)
class LeptonSelection:
    """Rule that turns per-event lepton collections into one (e-, e+, mu-, mu+) quadruplet.

    Leptons failing ``min_pt``/``max_abs_eta`` are dropped first. With ``require="exactly"`` an
    event is kept if it has exactly two electrons of opposite charge and exactly two muons of
    opposite charge; with ``"at_least"`` at least one lepton of each charge per flavour, and the
    leading (highest pT) lepton of each flavour and charge is taken. Then the quadruplet must lie
    inside the mass windows. Momenta come from ``pt, eta, phi`` (``momentum="ptetaphi"``: massless
    leptons, ``E = |p|`` as in the simulator), ``pt, eta, phi, mass`` (``"ptetaphim"``, NanoAOD:
    ``E = sqrt(|p|^2 + m^2)``; the lepton masses move ``m_4l`` by well under 1 MeV) or ``E, px,
    py, pz`` (``"cartesian"``).

    Branch names are ``<electron>_<field>`` and ``<muon>_<field>`` (NanoAOD style: ``Electron_pt``,
    ``Muon_charge``); a ``branches`` dict given to :func:`mfinfer.io.read_user_events` can map any
    of these names to an expression in the user's file.

    Arguments:
        electron: prefix of the electron collection.
        muon: prefix of the muon collection.
        momentum: ``"ptetaphi"`` (fields pt, eta, phi), ``"ptetaphim"`` (pt, eta, phi, mass) or
            ``"cartesian"`` (E, px, py, pz).
        require: ``"exactly"`` or ``"at_least"``, see above.
        min_pt: (electron, muon) pT thresholds in GeV.
        max_abs_eta: |eta| limit for both flavours.
        charge: name of the charge field.
        m_Z1, m_Z2, m_4l: ``(low, high)`` windows in GeV of ``m_ee``, ``m_mumu`` and the
            four-lepton mass; default: no window.
    """

    electron: str = "Electron"
    muon: str = "Muon"
    momentum: Literal["ptetaphi", "ptetaphim", "cartesian"] = "ptetaphi"
    require: Literal["exactly", "at_least"] = "exactly"
    min_pt: tuple[float, float] = (0.0, 0.0)
    max_abs_eta: float = math.inf
    charge: str = "charge"
    m_Z1: tuple[float, float] = (0.0, math.inf)
    m_Z2: tuple[float, float] = (0.0, math.inf)
    m_4l: tuple[float, float] = (0.0, math.inf)

    def __post_init__(self) -> None:
        if self.momentum not in MOMENTA:
            raise ValueError(f"momentum: must be one of {tuple(MOMENTA)}, got {self.momentum!r}")
        if self.require not in ("exactly", "at_least"):
            raise ValueError(
                f"require: must be one of ('exactly', 'at_least'), got {self.require!r}"
            )
        if len(tuple(self.min_pt)) != 2:
            raise ValueError(f"min_pt: expected (electron, muon) thresholds, got {self.min_pt!r}")
        object.__setattr__(self, "min_pt", tuple(float(v) for v in self.min_pt))
        for name in ("m_Z1", "m_Z2", "m_4l"):
            window = tuple(float(v) for v in getattr(self, name))
            if len(window) != 2 or not window[0] < window[1]:
                raise ValueError(f"{name}: expected a (low, high) window in GeV with low < high, "
                                 f"got {getattr(self, name)!r}")
            object.__setattr__(self, name, window)

    @property
    def fields(self) -> tuple[str, ...]:
        """Per-lepton fields read for each collection."""
        return (*MOMENTA[self.momentum], self.charge)

    def inputs(self) -> list[str]:
        """Canonical input names, e.g. ``["Electron_pt", ..., "Muon_charge"]``."""
        return [f"{c}_{f}" for c in (self.electron, self.muon) for f in self.fields]

    def apply(self, arrays: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Select events and return their lepton four-momenta.

        Arguments:
            arrays: jagged awkward arrays keyed by :meth:`inputs` names, n events each.

        Returns:
            ``(p, keep)``: four-momenta (4, m, 4) ordered e-, e+, mu-, mu+ with (E, px, py, pz) in
            GeV for the m kept events, and the boolean (n,) mask of kept events.
        """
        ak = _awkward()
        out, keep = [], None
        for prefix, min_pt in ((self.electron, self.min_pt[0]), (self.muon, self.min_pt[1])):
            col = {f: ak.values_astype(arrays[f"{prefix}_{f}"], np.float64) for f in self.fields}
            if self.momentum in ("ptetaphi", "ptetaphim"):
                pt, eta, phi = col["pt"], col["eta"], col["phi"]
                p = pt * np.cosh(eta)
                e = p if self.momentum == "ptetaphi" else np.sqrt(p**2 + col["mass"] ** 2)
                p4 = [e, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)]
            else:
                p4 = [col["E"], col["px"], col["py"], col["pz"]]
                pt = np.hypot(p4[1], p4[2])
                eta = np.arcsinh(p4[3] / ak.where(pt > 0, pt, 1e-300))
            good = (pt >= min_pt) & (abs(eta) <= self.max_abs_eta)
            q = col[self.charge]
            neg, pos = good & (q < 0), good & (q > 0)
            nneg, npos = ak.to_numpy(ak.sum(neg, axis=1)), ak.to_numpy(ak.sum(pos, axis=1))
            ok = (
                (nneg == 1) & (npos == 1)
                if self.require == "exactly"
                else (nneg >= 1) & (npos >= 1)
            )
            if self.require == "exactly":
                ok &= ak.to_numpy(ak.sum(good, axis=1)) == 2
            keep = ok if keep is None else keep & ok
            for mask in (neg, pos):
                score = ak.fill_none(ak.where(mask, pt, -np.inf), -np.inf)
                idx = ak.argmax(score, axis=1, keepdims=True)
                pick = [ak.fill_none(ak.firsts(c[idx]), np.nan) for c in p4]
                out.append(np.stack([ak.to_numpy(c) for c in pick], axis=1))
        p = np.stack(out)  # (4, n, 4)
        keep = np.asarray(keep, dtype=bool)
        windows = {"m_Z1": p[0] + p[1], "m_Z2": p[2] + p[3], "m_4l": p.sum(axis=0)}
        with np.errstate(invalid="ignore"):  # NaN momenta of rejected events
            for name, total in windows.items():
                lo, hi = getattr(self, name)
                if (lo, hi) != (0.0, math.inf):
                    m = mass(total)
                    keep &= (m > lo) & (m < hi)
        return p[:, keep], keep

    def select(self, arrays: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
        """Select events and compute their observables (the :class:`mfinfer.io.user_files.EventSelection`
        protocol).

        Arguments:
            arrays: jagged awkward arrays keyed by :meth:`inputs` names, n events each.

        Returns:
            ``(x, names)``: observables (m, 38) float64 of the m kept events
            (:func:`simulators.higgs4l.kinematics.observables` of the chosen e-, e+, mu-, mu+) and
            their names, :data:`simulators.higgs4l.kinematics.OBSERVABLE_NAMES`.
        """
        x, names, _ = self.select_entries(arrays)
        return x, names

    def select_entries(self, arrays: Mapping[str, Any]) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Like :meth:`select`, also giving the entry numbers of the kept events (m,) int64, so
        that per-event branches (weights) can be matched to them."""
        p, keep = self.apply(arrays)
        x = np.asarray(observables(*p), dtype=np.float64).reshape(p.shape[1], len(OBSERVABLE_NAMES))
        return x, list(OBSERVABLE_NAMES), np.flatnonzero(keep)

    def describe(self) -> str:
        """The cuts in words, for messages: ``pT(e) >= 7, pT(mu) >= 5 GeV, |eta| <= 2.5, ...``."""
        parts = ["exactly 2 e and 2 mu of opposite charge" if self.require == "exactly"
                 else "at least one e-, e+, mu-, mu+ (leading taken)"]
        if self.min_pt != (0.0, 0.0):
            parts.append(f"pT(e) >= {self.min_pt[0]:g} GeV, pT(mu) >= {self.min_pt[1]:g} GeV")
        if self.max_abs_eta != math.inf:
            parts.append(f"|eta| <= {self.max_abs_eta:g}")
        for name in ("m_Z1", "m_Z2", "m_4l"):
            lo, hi = getattr(self, name)
            if (lo, hi) != (0.0, math.inf):
                parts.append(f"{lo:g} < {name} < {hi:g} GeV")
        return "; ".join(parts)
