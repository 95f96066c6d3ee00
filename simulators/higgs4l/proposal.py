"""Proposal for the H -> 4l chart: phase-space factor, Higgs boost, mass and decay-angle proposal.

Chart ``z = (m1, m2, cos theta*, Phi1, cos theta1, cos theta2, Phi, psi, pT, y, phi)``
(:data:`simulators.higgs4l.kinematics.CHART_NAMES`), masses and momenta in GeV. The four-body
phase space at fixed ``m4l = mH`` is ``4 m1 m2 beta dz`` (decay part); the Higgs boost density
``p_boost(pT, y, phi)`` is theta-independent: ``pT ~ Gamma(2, 12 GeV)`` (mode 12 GeV),
``y ~ N(0, 1.5^2)`` truncated to ``|y| < 2.5``, ``phi ~ U(-pi, pi)``.

:func:`_propose` draws chart points (masses from a Breit-Wigner multichannel importance proposal,
uniform decay angles, the boost from its exact density) and returns each point's importance factor.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from simulators.higgs4l.amplitude import GAMMA_Z, MH, MZ

__all__ = ["PT_SCALE", "Y_MAX", "Y_SIGMA", "boost_log_density", "phase_space_density"]

#: Higgs boost: pT ~ Gamma(shape 2, scale PT_SCALE), y ~ N(0, Y_SIGMA^2) truncated at |y| < Y_MAX.
PT_SCALE, Y_SIGMA, Y_MAX = 12.0, 1.5, 2.5

_VOL_ANGLES = 8.0 * (2 * np.pi) ** 3  # cos theta*, Phi1, cos theta1, cos theta2, Phi, psi


# ----------------------------------------------------------------------------- densities, proposals
def phase_space_density(m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """Four-body phase-space factor per ``dm1 dm2 dOmega* dOmega1 dOmega2`` (up to a constant):
    ``4 m1 m2 beta(m1, m2)``, ``beta = lambda^{1/2}(1, m1^2/mH^2, m2^2/mH^2)``; zero outside
    ``m1, m2 >= 0, m1 + m2 <= mH``."""
    a, b = (np.asarray(m1, dtype=float) / MH) ** 2, (np.asarray(m2, dtype=float) / MH) ** 2
    lam = (1 - a - b) ** 2 - 4 * a * b
    ok = (lam > 0) & (m1 >= 0) & (m2 >= 0) & (np.sqrt(a) + np.sqrt(b) <= 1)
    return np.where(ok, 4 * m1 * m2 * np.sqrt(np.where(ok, lam, 0.0)), 0.0)


_Y_NORM = Y_SIGMA * np.sqrt(2 * np.pi) * (ndtr(Y_MAX / Y_SIGMA) - ndtr(-Y_MAX / Y_SIGMA))


def boost_log_density(pt: np.ndarray, y: np.ndarray, phi: np.ndarray | None = None) -> np.ndarray:
    """Log density of the Higgs boost per ``dpT dy dphi``: ``pT ~ Gamma(2, PT_SCALE)``,
    ``y ~ N(0, Y_SIGMA^2)`` truncated to ``|y| < Y_MAX``, ``phi ~ U(-pi, pi)`` (``phi`` unused)."""
    pt, y = np.asarray(pt, dtype=float), np.asarray(y, dtype=float)
    with np.errstate(divide="ignore"):
        out = np.log(pt) - 2 * np.log(PT_SCALE) - pt / PT_SCALE
    out = out - 0.5 * (y / Y_SIGMA) ** 2 - np.log(_Y_NORM) - np.log(2 * np.pi)
    return np.where((pt > 0) & (np.abs(y) < Y_MAX), out, -np.inf)


def _sample_boost(n: int, rng: np.random.Generator) -> np.ndarray:
    pt = rng.gamma(2.0, PT_SCALE, n)
    y = np.empty(0)
    while len(y) < n:  # truncated normal by rejection (acceptance 90 %)
        cand = rng.normal(0.0, Y_SIGMA, 2 * (n - len(y)) + 16)
        y = np.concatenate([y, cand[np.abs(cand) < Y_MAX]])
    return np.stack([pt, y[:n], rng.uniform(-np.pi, np.pi, n)], 1)


# Mass proposal inside a window m1 in [lo1, hi1], m2 in [lo2, hi2] (and m1 + m2 <= mH): a mixture of
# channel 0 "Z1 on shell" (m1 ~ Breit-Wigner, m2 | m1 ~ 2 m2 on [lo2, min(hi2, mH - m1)]), channel 1
# (the same with m1 <-> m2) and channel 2 "both off shell" (density ∝ m1 m2 on the window, by
# rejection from (m1, m2, mH - m1 - m2) / mH ~ Dirichlet(2, 2, 1)). Mixture weights from _channels:
# with the cuts' window (m_Z1 > 40 GeV) the mu mu pair can hardly be on shell, so channel 1 gets
# little weight.
_NO_WINDOW = (0.0, MH, 0.0, MH)


def _channels(window: tuple[float, float, float, float]) -> tuple[float, float, float]:
    return (0.4, 0.4, 0.2) if window == _NO_WINDOW else (0.7, 0.1, 0.2)


def _bw_t(m: np.ndarray) -> np.ndarray:
    return np.arctan((np.asarray(m) ** 2 - MZ**2) / (MZ * GAMMA_Z))


def _bw_density(m: np.ndarray, lo: float, hi: float) -> np.ndarray:
    norm = _bw_t(hi) - _bw_t(lo)
    return 2 * m * (MZ * GAMMA_Z) / (((m**2 - MZ**2) ** 2 + (MZ * GAMMA_Z) ** 2) * norm)


def _bw_sample(n: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(_bw_t(lo), _bw_t(hi), n)
    return np.sqrt(np.clip(MZ**2 + MZ * GAMMA_Z * np.tan(t), lo**2, hi**2))


def _linear_top(other: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.minimum(hi, MH - other)


def _triangle_norm(window: tuple[float, float, float, float]) -> float:
    """``int m1 m2`` over ``m1 >= lo1, m2 >= lo2, m1 + m2 <= mH`` (upper limits must be
    inactive)."""
    lo1, hi1, lo2, hi2 = window
    if hi1 < MH - lo2 or hi2 < MH - lo1:
        raise ValueError(
            "mass window: upper limits below mH - (other lower limit) are not supported"
        )
    M, b = MH, lo2

    def F(u):  # antiderivative of (M - u)(u^2 - b^2) / 2, u = M - m1
        return 0.5 * (M * (u**3 / 3 - b**2 * u) - (u**4 / 4 - b**2 * u**2 / 2))

    return F(M - lo1) - F(b)


def _mass_proposal_density(m1: np.ndarray, m2: np.ndarray, window=_NO_WINDOW) -> np.ndarray:
    lo1, hi1, lo2, hi2 = window
    inside = (m1 >= lo1) & (m1 <= hi1) & (m2 >= lo2) & (m2 <= hi2) & (m1 + m2 <= MH)

    def channel(a, b, lo_a, hi_a, lo_b, hi_b):
        top = np.maximum(_linear_top(a, lo_b, hi_b), lo_b + 1e-12)
        return _bw_density(a, lo_a, min(hi_a, MH - lo_b)) * 2 * b / (top**2 - lo_b**2)

    w0, w1, w2 = _channels(window)
    q = (
        w0 * channel(m1, m2, lo1, hi1, lo2, hi2)
        + w1 * channel(m2, m1, lo2, hi2, lo1, hi1)
        + w2 * m1 * m2 / _triangle_norm(window)
    )
    return np.where(inside, q, 0.0)


def _sample_masses(
    n: int, rng: np.random.Generator, window=_NO_WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    lo1, hi1, lo2, hi2 = window

    def channel(lo_a, hi_a, lo_b, hi_b):
        a = _bw_sample(n, lo_a, min(hi_a, MH - lo_b), rng)
        top = _linear_top(a, lo_b, hi_b)
        b = np.sqrt(lo_b**2 + (top**2 - lo_b**2) * rng.uniform(size=n))
        return a, b

    a1, b1 = channel(lo1, hi1, lo2, hi2)
    b2, a2 = channel(lo2, hi2, lo1, hi1)
    d = np.empty((0, 3))
    while len(d) < n:
        cand = MH * rng.dirichlet((2.0, 2.0, 1.0), 2 * (n - len(d)) + 16)
        d = np.concatenate([d, cand[(cand[:, 0] >= lo1) & (cand[:, 1] >= lo2)]])
    ch = rng.choice(3, size=n, p=_channels(window))
    m1 = np.select([ch == 0, ch == 1], [a1, a2], d[:n, 0])
    m2 = np.select([ch == 0, ch == 1], [b1, b2], d[:n, 1])
    return m1, m2


def _propose(n: int, rng: np.random.Generator, window=_NO_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Chart points ``(n, 11)`` from the proposal and ``factor = 4 m1 m2 beta V_ang / q(m1, m2)``:
    the importance weight of a point for ``p(z|theta) ∝ c^T W c ...`` is ``c^T W c * factor``
    (angles are proposed uniformly, the boost from its exact density)."""
    m1, m2 = _sample_masses(n, rng, window)
    u = rng.uniform(size=(n, 6))
    ang = np.stack(
        [
            2 * u[:, 0] - 1,
            np.pi * (2 * u[:, 1] - 1),
            2 * u[:, 2] - 1,
            2 * u[:, 3] - 1,
            np.pi * (2 * u[:, 4] - 1),
            np.pi * (2 * u[:, 5] - 1),
        ],
        1,
    )
    z = np.concatenate([m1[:, None], m2[:, None], ang, _sample_boost(n, rng)], 1)
    factor = phase_space_density(m1, m2) * _VOL_ANGLES / _mass_proposal_density(m1, m2, window)
    return z, factor
