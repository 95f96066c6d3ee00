"""2e2mu event selection for users' ROOT files: lepton collections -> the simulators' observables.

:class:`LeptonSelection` implements :class:`mfinfer.io.root.EventSelection`: given the per-event
lepton collections of a file (jagged awkward arrays such as ``Electron_pt``), it picks one e-, e+,
mu-, mu+ per event and computes the observables of :func:`simulators.higgs4l.kinematics.observables`
(:data:`simulators.higgs4l.kinematics.OBSERVABLE_NAMES`), the same as :class:`Higgs4l
<simulators.higgs4l.Higgs4l>` and :class:`PythiaHiggs4l <simulators.higgs4l.PythiaHiggs4l>` return.

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

from simulators.higgs4l.kinematics import OBSERVABLE_NAMES, observables

__all__ = ["LeptonSelection"]


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
    leading (highest pT) lepton of each flavour and charge is taken. Momenta come from
    ``pt, eta, phi`` (massless leptons) or from ``E, px, py, pz`` (``momentum="cartesian"``).

    Branch names are ``<electron>_<field>`` and ``<muon>_<field>`` (NanoAOD style: ``Electron_pt``,
    ``Muon_charge``); a ``branches`` dict given to :func:`mfinfer.io.read_user_events` can map any
    of these names to an expression in the user's file.

    Arguments:
        electron: prefix of the electron collection.
        muon: prefix of the muon collection.
        momentum: ``"ptetaphi"`` (fields pt, eta, phi) or ``"cartesian"`` (fields E, px, py, pz).
        require: ``"exactly"`` or ``"at_least"``, see above.
        min_pt: (electron, muon) pT thresholds in GeV.
        max_abs_eta: |eta| limit for both flavours.
        charge: name of the charge field.
    """

    electron: str = "Electron"
    muon: str = "Muon"
    momentum: Literal["ptetaphi", "cartesian"] = "ptetaphi"
    require: Literal["exactly", "at_least"] = "exactly"
    min_pt: tuple[float, float] = (0.0, 0.0)
    max_abs_eta: float = math.inf
    charge: str = "charge"

    def __post_init__(self) -> None:
        if self.momentum not in ("ptetaphi", "cartesian"):
            raise ValueError(
                f"momentum: must be one of ('ptetaphi', 'cartesian'), got {self.momentum!r}"
            )
        if self.require not in ("exactly", "at_least"):
            raise ValueError(
                f"require: must be one of ('exactly', 'at_least'), got {self.require!r}"
            )
        if len(tuple(self.min_pt)) != 2:
            raise ValueError(f"min_pt: expected (electron, muon) thresholds, got {self.min_pt!r}")
        object.__setattr__(self, "min_pt", tuple(float(v) for v in self.min_pt))

    @property
    def fields(self) -> tuple[str, ...]:
        """Per-lepton fields read for each collection."""
        mom = ("pt", "eta", "phi") if self.momentum == "ptetaphi" else ("E", "px", "py", "pz")
        return (*mom, self.charge)

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
            if self.momentum == "ptetaphi":
                pt, eta, phi = col["pt"], col["eta"], col["phi"]
                p4 = [pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)]
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
        keep = np.asarray(keep, dtype=bool)
        return np.stack(out)[:, keep], keep

    def select(self, arrays: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
        """Select events and compute their observables (the :class:`mfinfer.io.root.EventSelection`
        protocol).

        Arguments:
            arrays: jagged awkward arrays keyed by :meth:`inputs` names, n events each.

        Returns:
            ``(x, names)``: observables (m, 38) float64 of the m kept events
            (:func:`simulators.higgs4l.kinematics.observables` of the chosen e-, e+, mu-, mu+) and
            their names, :data:`simulators.higgs4l.kinematics.OBSERVABLE_NAMES`.
        """
        p, _ = self.apply(arrays)
        x = np.asarray(observables(*p), dtype=np.float64).reshape(p.shape[1], len(OBSERVABLE_NAMES))
        return x, list(OBSERVABLE_NAMES)
