"""Acceptance cuts of the H -> ZZ* -> 2e2mu generator (``cuts=True``), coded once.

Leptons: ``pT_e > 7``, ``pT_mu > 5`` GeV, ``|eta| < 2.5``; pairs: ``40 < m_Z1 < 120``,
``12 < m_Z2 < 120`` GeV (:data:`CUTS`). The same rules act on lepton momenta
(:func:`_lepton_acceptance`, used by the sampler and the normalisation), on observables
(:func:`passes_cuts`) and, for the pair masses, as the proposal's mass window (:func:`_window`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulators.higgs4l import kinematics as kin
from simulators.higgs4l.proposal import _NO_WINDOW

__all__ = ["CUTS", "passes_cuts"]

#: Acceptance cuts (``cuts=True``).
CUTS = {"pt_e": 7.0, "pt_mu": 5.0, "abs_eta": 2.5, "m_Z1": (40.0, 120.0), "m_Z2": (12.0, 120.0)}
#: pT thresholds of e-, e+, mu-, mu+ (the lepton order of :mod:`simulators.higgs4l.kinematics`).
_PT_MIN = (CUTS["pt_e"], CUTS["pt_e"], CUTS["pt_mu"], CUTS["pt_mu"])


def _window(cuts: bool) -> tuple[float, float, float, float]:
    """Mass window ``(lo1, hi1, lo2, hi2)`` of ``(m_Z1, m_Z2)``: the cuts' when ``cuts``, else the
    whole kinematic range."""
    return (*CUTS["m_Z1"], *CUTS["m_Z2"]) if cuts else _NO_WINDOW


def _leptons_pass(pt: Sequence[np.ndarray], eta: Sequence[np.ndarray]) -> np.ndarray:
    """Per-lepton cuts: ``pt``, ``eta`` of (e-, e+, mu-, mu+), each ``(n,)`` -> ``(n,)`` bool."""
    ok = np.ones(len(pt[0]), bool)
    for p, e, ptmin in zip(pt, eta, _PT_MIN, strict=True):
        ok &= (p > ptmin) & (np.abs(e) < CUTS["abs_eta"])
    return ok


def _lepton_acceptance(ps: tuple[np.ndarray, ...]) -> np.ndarray:
    """Per-lepton cuts on the momenta ``(e-, e+, mu-, mu+)``, each ``(n, 4)`` -> ``(n,)`` bool (the
    mass window is left to the proposal)."""
    pt = [np.hypot(p[:, 1], p[:, 2]) for p in ps]
    return _leptons_pass(pt, [np.arcsinh(p[:, 3] / t) for p, t in zip(ps, pt, strict=True)])


def passes_cuts(x: np.ndarray) -> np.ndarray:
    """Acceptance of observables ``x`` ``(n, 38)`` -> ``(n,)`` bool: ``pT_e > 7``, ``pT_mu > 5``
    GeV, ``|eta| < 2.5`` for all leptons, ``40 < m_Z1 < 120``, ``12 < m_Z2 < 120`` GeV
    (:data:`CUTS`)."""
    col = {name: i for i, name in enumerate(kin.OBSERVABLE_NAMES)}
    ok = _leptons_pass(
        [x[:, col[f"{lep}_pt"]] for lep in kin.LEPTONS],
        [x[:, col[f"{lep}_eta"]] for lep in kin.LEPTONS],
    )
    lo1, hi1, lo2, hi2 = _window(True)
    for name, lo, hi in (("m_Z1", lo1, hi1), ("m_Z2", lo2, hi2)):
        ok &= (x[:, col[name]] > lo) & (x[:, col[name]] < hi)
    return ok
