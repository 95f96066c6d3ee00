"""Analytic H -> Z Z* -> (e- e+)(mu- mu+) generator: anomalous HZZ couplings, exact likelihood.

Physics (``shared/reference/higgs4l.md``; the amplitude lives in :mod:`simulators.hzz_amplitude`):
``M = D(q1^2) D(q2^2) T_mu,nu J1^mu J2^nu`` with ``J1 = ubar(e-) gamma^mu (gL P_L + gR P_R) v(e+)``
(``J2`` likewise for the muons), massless leptons, ``gL = -1/2 + sW^2``, ``gR = sW^2``, Breit-Wigner
propagators ``D(s) = 1 / (s - mZ^2 + i mZ GammaZ)`` (the ``q q / mZ^2`` part drops out for massless
leptons), and the vertex

    T_mu,nu = a1 mZ^2 g_mu,nu + a2 2[(q1.q2) g_mu,nu - q2_mu q1_nu]
              + a3 2 eps_mu,nu,rho,sigma q1^rho q2^sigma,

``eps^{0123} = +1`` (so ``eps_{0123} = -1``), metric ``(+,-,-,-)``, ``a1 = 1``, theta = ``(a2,
a3)``. Couplings are real, so ``|M|^2 = sum_ij c_i c_j W_ij(x)`` with ``c = (1, a2, a3)``; ``W`` is
computed two independent ways (lepton-tensor traces; explicit helicity spinors), which agree to
~1e-12. Overall coupling constants are dropped: they cancel in ``p(x|theta)``. ``Z1 = e+e-``, ``Z2 =
mu+mu-`` (pairing by flavour); angle conventions in :mod:`simulators.kinematics`.

Density. The chart ``z = (m1, m2, cos theta*, Phi1, cos theta1, cos theta2, Phi, psi, pT, y, phi)``
(:data:`simulators.kinematics.CHART_NAMES`) carries the Lebesgue measure ``dz``. The four-body phase
space at fixed ``m4l = mH`` is ``dPhi4 ∝ beta dm1^2 dm2^2 dOmega* dOmega1 dOmega2 = 4 m1 m2 beta
dz`` (decay part), ``beta = lambda^{1/2}(1, m1^2/mH^2, m2^2/mH^2)``. Hence

    p(z | theta) = c^T W(z) c * 4 m1 m2 beta * p_boost(pT, y, phi) * 1_cuts(z) / sigma(theta),
    sigma(theta) = c^T S c,    S_ij = int W_ij 4 m1 m2 beta p_boost 1_cuts dz,

which integrates to one over the chart. ``p_boost`` is theta-independent: ``pT ~ Gamma(2, 12 GeV)``
(mode 12 GeV), ``y ~ N(0, 1.5^2)`` truncated to ``|y| < 2.5``, ``phi ~ U(-pi, pi)``. ``S`` is a
Monte Carlo integral (Breit-Wigner multichannel importance sampling in ``m1, m2``) cached as
``simulators/data/higgs4l_norm_{nocuts,cuts}.json`` (``python -m simulators.higgs4l
--compute-normalisation``), with its MC covariance.

Sampling: proposal points (masses from the importance proposal, uniform decay angles, exact boost),
accept-reject against a per-theta bound tabulated on a grid over the prior (the weight is convex in
theta, so the maximum over a grid cell sits at a corner), one event per theta row, batched.

Prior. ``a2 ∈ [-2, 2]``, ``a3 ∈ [-3, 3]`` (box uniform), so that each coupling alone moves the
normalised distributions by O(50 %) at the edges (``python -m simulators.higgs4l --describe``):
a2 = -1 (rate minimum, sigma/sigma_SM = 0.36) changes cos theta1 by up to 48 % and m_Z2 by 150 %;
|a2| = 2 changes cos theta1 by 15-36 % and m_Z2 by 70-100 % (sigma/sigma_SM = 0.45, 4.4); |a3| = 3
changes cos theta1 by 48 %, Phi by 24 % (the pure CP-odd limit is 27 %), m_Z2 by 43 %
(sigma/sigma_SM = 2.4).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import numpy as np
from scipy.special import ndtr

from mfinfer.priors import BoxUniform
from mfinfer.utils import atomic_write_json
from simulators import kinematics as kin
from simulators.base import Simulator, check_theta, check_x
from simulators.hzz_amplitude import (  # noqa: F401 - re-exported
    GAMMA_Z,
    GL,
    GR,
    MH,
    MZ,
    SW2,
    _coeffs,
    _propagator,
    matrix_element_squared,
    morphing_weights,
    morphing_weights_helicity,
    morphing_weights_trace,
)

__all__ = [
    "GAMMA_Z",
    "GL",
    "GR",
    "MH",
    "MZ",
    "SW2",
    "Higgs4l",
    "boost_log_density",
    "compute_normalisation",
    "load_normalisation",
    "matrix_element_squared",
    "morphing_weights",
    "morphing_weights_helicity",
    "morphing_weights_trace",
    "passes_cuts",
    "phase_space_density",
]

#: Higgs boost: pT ~ Gamma(shape 2, scale PT_SCALE), y ~ N(0, Y_SIGMA^2) truncated at |y| < Y_MAX.
PT_SCALE, Y_SIGMA, Y_MAX = 12.0, 1.5, 2.5
PRIOR_LOW, PRIOR_HIGH = (-2.0, -3.0), (2.0, 3.0)
#: Acceptance cuts (``cuts=True``).
CUTS = {"pt_e": 7.0, "pt_mu": 5.0, "abs_eta": 2.5, "m_Z1": (40.0, 120.0), "m_Z2": (12.0, 120.0)}

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


def _window(cuts: bool) -> tuple[float, float, float, float]:
    return (*CUTS["m_Z1"], *CUTS["m_Z2"]) if cuts else _NO_WINDOW


def _lepton_acceptance(ps: tuple[np.ndarray, ...]) -> np.ndarray:
    ok = np.ones(len(ps[0]), bool)
    for p, ptmin in zip(ps, (CUTS["pt_e"], CUTS["pt_e"], CUTS["pt_mu"], CUTS["pt_mu"])):
        pt = np.hypot(p[:, 1], p[:, 2])
        ok &= (pt > ptmin) & (np.abs(np.arcsinh(p[:, 3] / pt)) < CUTS["abs_eta"])
    return ok


def passes_cuts(x: np.ndarray) -> np.ndarray:
    """Acceptance of observables ``x`` ``(n, 38)`` -> ``(n,)`` bool: ``pT_e > 7``, ``pT_mu > 5``
    GeV, ``|eta| < 2.5`` for all leptons, ``40 < m_Z1 < 120``, ``12 < m_Z2 < 120`` GeV
    (:data:`CUTS`)."""
    col = {name: i for i, name in enumerate(kin.OBSERVABLE_NAMES)}
    ok = np.ones(len(x), bool)
    for lep, ptmin in (
        ("em", CUTS["pt_e"]),
        ("ep", CUTS["pt_e"]),
        ("mm", CUTS["pt_mu"]),
        ("mp", CUTS["pt_mu"]),
    ):
        ok &= (x[:, col[f"{lep}_pt"]] > ptmin) & (np.abs(x[:, col[f"{lep}_eta"]]) < CUTS["abs_eta"])
    for name in ("m_Z1", "m_Z2"):
        lo, hi = CUTS[name]
        ok &= (x[:, col[name]] > lo) & (x[:, col[name]] < hi)
    return ok


# ----------------------------------------------------------------------------- normalisation S_ij
_DATA_DIR = Path(__file__).resolve().parent / "data"
# bound grid over the prior box (spacing 0.25), for the unweighting
_GRID_A2, _GRID_A3 = (
    np.linspace(PRIOR_LOW[0], PRIOR_HIGH[0], 17),
    np.linspace(PRIOR_LOW[1], PRIOR_HIGH[1], 25),
)


def _config(cuts: bool) -> dict:
    return {
        "version": 1,
        "mH": MH,
        "mZ": MZ,
        "GammaZ": GAMMA_Z,
        "sW2": SW2,
        "eps0123_upper": 1,
        "boost": {"pt_scale": PT_SCALE, "y_sigma": Y_SIGMA, "y_max": Y_MAX},
        "cuts": CUTS if cuts else None,
        "channels": list(_channels(_window(cuts))),
        "grid": [_GRID_A2.tolist(), _GRID_A3.tolist()],
    }


def _tag(cuts: bool) -> str:
    return "cuts" if cuts else "nocuts"


def _user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mfinfer"


def compute_normalisation(
    cuts: bool = False,
    n_events: int = 10_000_000,
    seed: int = 0,
    chunk: int = 100_000,
    n_orientations: int | None = None,
    progress: bool = False,
) -> dict:
    """Monte Carlo estimate of ``S_ij = int W_ij 4 m1 m2 beta p_boost 1_cuts dz`` and of the
    per-theta maximum importance weight used by the sampler.

    Masses are drawn from the Breit-Wigner multichannel proposal (restricted to the ``m_Z1, m_Z2``
    window when ``cuts``), decay angles uniformly, the boost from its density. With cuts, each decay
    configuration is re-oriented and re-boosted ``n_orientations`` times (``|M|^2`` does not depend
    on the orientation or the boost) and the lepton acceptance averaged, which costs little and
    removes most of the variance the cuts add.

    Returns:
        A JSON-able dict: ``config``, ``S`` (3, 3), ``S_cov`` (9, 9) covariance of the flattened
        estimate, ``rel_err_max`` (largest relative MC error of ``sigma(theta)`` on the prior grid),
        ``bound`` (``a2``, ``a3`` grids and ``wmax`` (17, 25): largest ``c^T V c`` per grid point).
    """
    rng = np.random.default_rng(seed)
    window = _window(cuts)
    k = (8 if cuts else 1) if n_orientations is None else n_orientations
    g2, g3 = np.meshgrid(_GRID_A2, _GRID_A3, indexing="ij")
    C = _coeffs(np.stack([g2.ravel(), g3.ravel()], 1))
    CC = (C[:, :, None] * C[:, None, :]).reshape(len(C), 9)
    s1, s2, wmax, done = np.zeros(9), np.zeros((9, 9)), np.zeros(len(C)), 0
    while done < n_events:
        m = min(chunk, n_events - done)
        z, factor = _propose(m, rng, window)
        V = (
            morphing_weights(*kin.momenta_from_chart(*z[:, :8].T)) * factor[:, None, None]
        ).reshape(m, 9)
        acc = np.ones(m)
        if cuts:
            acc = np.zeros(m)
            for _ in range(k):
                zz = z.copy()
                zz[:, 2] = rng.uniform(-1, 1, m)
                zz[:, [3, 7]] = rng.uniform(-np.pi, np.pi, (m, 2))
                zz[:, 8:] = _sample_boost(m, rng)
                acc += _lepton_acceptance(kin.momenta_from_chart(*zz.T))
            acc /= k
        v = V * acc[:, None]
        s1 += v.sum(0)
        s2 += v.T @ v
        if np.any(acc > 0):
            wmax = np.maximum(wmax, (CC @ V[acc > 0].T).max(1))
        done += m
        if progress:
            print(f"  {done}/{n_events}", flush=True)
    mean = s1 / done
    cov = (s2 / done - np.outer(mean, mean)) / done
    sig = CC @ mean
    rel = np.sqrt(np.einsum("gi,ij,gj->g", CC, cov, CC)) / sig
    return {
        "config": _config(cuts),
        "n_events": int(done),
        "seed": seed,
        "n_orientations": k,
        "S": mean.reshape(3, 3).tolist(),
        "S_cov": cov.tolist(),
        "rel_err_max": float(rel.max()),
        "bound": {
            "a2": _GRID_A2.tolist(),
            "a3": _GRID_A3.tolist(),
            "wmax": wmax.reshape(g2.shape).tolist(),
        },
    }


def load_normalisation(
    cuts: bool = False, compute_if_missing: bool = True, n_events: int = 2_000_000
) -> dict:
    """The cached normalisation for ``cuts``: package data
    ``simulators/data/higgs4l_norm_<tag>.json``
    (written by ``python -m simulators.higgs4l --compute-normalisation``), else the user cache
    ``$XDG_CACHE_HOME/mfinfer/``; if neither matches the current physics configuration, it is
    computed with ``n_events`` (a warning says so) and written atomically to the user cache."""
    name = f"higgs4l_norm_{_tag(cuts)}.json"
    for path in (_DATA_DIR / name, _user_cache_dir() / name):
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if data.get("config") == json.loads(json.dumps(_config(cuts))):
                return data
    if not compute_if_missing:
        raise FileNotFoundError(
            f"no valid {name}; run `python -m simulators.higgs4l --compute-normalisation`"
        )
    warnings.warn(
        f"{name} missing or stale: computing it with {n_events} events (about a minute); run "
        "`python -m simulators.higgs4l --compute-normalisation` for the precise package copy",
        RuntimeWarning,
        stacklevel=2,
    )
    data = compute_normalisation(cuts, n_events=n_events)
    atomic_write_json(data, _user_cache_dir() / name)
    return data


# ----------------------------------------------------------------------------- the simulator
class Higgs4l(Simulator):
    """H -> ZZ* -> 2e2mu, theta = ``(a2, a3)`` (``a1 = 1``): 38 observables on an 11-d manifold.

    Arguments:
        cuts: apply the acceptance cuts :data:`CUTS` (sampler and normalisation both respect them).
        smearing: relative Gaussian smearing of each lepton's momentum magnitude
            (``|p| -> |p| (1 + smearing N(0, 1))``, direction kept, ``E = |p|``), e.g. 0.01-0.02;
            ``m_4l`` then differs from ``mH``, events leave the manifold and
            :meth:`log_likelihood` raises. With cuts, the cuts act on the smeared event.
        bound_safety: factor on the tabulated maximum weight used for the unweighting.

    Example:
        >>> sim = Higgs4l()
        >>> x = sim.sample([[0.5, -1.0]] * 3, rng=0)
        >>> x.shape, sim.log_likelihood(x, [0.5, -1.0]).shape
        ((3, 38), (3,))
    """

    param_dim = 2
    data_dim = len(kin.OBSERVABLE_NAMES)
    manifold_dim = 11
    param_names = ("a2", "a3")
    observable_names = kin.OBSERVABLE_NAMES

    def __init__(
        self, cuts: bool = False, smearing: float = 0.0, bound_safety: float = 1.2
    ) -> None:
        if not 0.0 <= float(smearing) <= 0.2:
            raise ValueError(f"smearing: expected a relative width in [0, 0.2], got {smearing}")
        if bound_safety < 1.0:
            raise ValueError(f"bound_safety: must be >= 1, got {bound_safety}")
        self.cuts, self.smearing, self.bound_safety = (
            bool(cuts),
            float(smearing),
            float(bound_safety),
        )
        self.prior = BoxUniform(PRIOR_LOW, PRIOR_HIGH)
        self._norms: dict[bool, dict] = {}
        self.n_overflow = 0  # candidates whose weight exceeded the bound (should stay 0)

    def __repr__(self) -> str:
        return f"Higgs4l(cuts={self.cuts}, smearing={self.smearing})"

    # -- normalisation
    def normalisation(self, cuts: bool | None = None) -> dict:
        """The cached normalisation record (see :func:`load_normalisation`)."""
        cuts = self.cuts if cuts is None else cuts
        if cuts not in self._norms:
            self._norms[cuts] = load_normalisation(cuts)
        return self._norms[cuts]

    @property
    def S(self) -> np.ndarray:
        """``S_ij`` ``(3, 3)``: ``sigma(theta) = c^T S c``."""
        return np.asarray(self.normalisation()["S"])

    def sigma(self, theta: np.ndarray) -> np.ndarray:
        """Total rate ``sigma(theta) = c^T S c`` (arbitrary units), ``(n, 2)`` -> ``(n,)``."""
        c = _coeffs(check_theta(theta, self.prior))
        return np.einsum("ni,ij,nj->n", c, self.S, c)

    def sigma_error(self, theta: np.ndarray) -> np.ndarray:
        """Monte Carlo standard error of :meth:`sigma`, ``(n, 2)`` -> ``(n,)``."""
        c = _coeffs(check_theta(theta, self.prior))
        cc = (c[:, :, None] * c[:, None, :]).reshape(len(c), 9)
        return np.sqrt(np.einsum("ni,ij,nj->n", cc, np.asarray(self.normalisation()["S_cov"]), cc))

    # -- likelihood
    def morphing_weights(self, x: np.ndarray) -> np.ndarray:
        """``W_ij(x)`` ``(n, 3, 3)``: ``|M|^2(x; theta) = c^T W c``, ``c = (1, a2, a3)``."""
        x = check_x(x, self.data_dim)
        return morphing_weights(*kin.momenta_from_observables(x))

    def log_likelihood(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Exact ``log p(z(x) | theta)`` ``(n,)`` per the chart measure ``dz`` (module docstring),
        where ``z(x)`` is the chart of the lepton momenta in columns 0-15 of ``x`` (the other
        columns are functions of them on the manifold). ``-inf`` outside the cuts (``cuts=True``).

        Raises:
            NotImplementedError: with ``smearing > 0`` (the smeared likelihood is intractable).
        """
        if self.smearing > 0:
            raise NotImplementedError(
                f"Higgs4l(smearing={self.smearing}): the smeared likelihood is an intractable "
                "convolution over the detector response; use smearing=0 for the exact likelihood"
            )
        x = check_x(x, self.data_dim)
        theta = check_theta(theta, self.prior, n=len(x))
        ps = kin.momenta_from_observables(x)
        z = kin.chart_from_momenta(*ps)
        c = _coeffs(theta)
        msq = np.einsum("ni,nij,nj->n", c, morphing_weights(*ps), c)
        with np.errstate(divide="ignore"):
            out = (
                np.log(msq)
                + np.log(phase_space_density(z[:, 0], z[:, 1]))
                + boost_log_density(z[:, 8], z[:, 9])
                - np.log(np.einsum("ni,ij,nj->n", c, self.S, c))
            )
        if self.cuts:
            out = np.where(passes_cuts(kin.observables(*ps)), out, -np.inf)
        return out

    # -- sampling
    def _bound(self, theta: np.ndarray, norm: dict) -> np.ndarray:
        """Upper bound on ``c^T V c`` for each theta row: ``c^T V c`` is convex in theta, so on a
        grid cell its maximum is at a corner; take the tabulated maxima at the four corners."""
        g2, g3 = np.asarray(norm["bound"]["a2"]), np.asarray(norm["bound"]["a3"])
        wmax = np.asarray(norm["bound"]["wmax"])
        i = np.clip(np.searchsorted(g2, theta[:, 0], side="right") - 1, 0, len(g2) - 2)
        j = np.clip(np.searchsorted(g3, theta[:, 1], side="right") - 1, 0, len(g3) - 2)
        corners = np.stack([wmax[i, j], wmax[i + 1, j], wmax[i, j + 1], wmax[i + 1, j + 1]], 1)
        return self.bound_safety * corners.max(1)

    def sample(self, theta: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """One event per theta row by accept-reject from the importance proposal, ``(n, 2)`` ->
        ``(n, 38)``."""
        return self.sample_with_chart(theta, rng)[0]

    def sample_with_chart(
        self, theta: np.ndarray, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`sample`, also returning the (unsmeared) chart ``z`` ``(n, 11)`` of each
        event."""
        rng = np.random.default_rng(rng)
        theta = check_theta(theta, self.prior)
        n = len(theta)
        truth_cuts = self.cuts and self.smearing == 0.0  # with smearing, cut the smeared event
        norm = self.normalisation(truth_cuts)
        window = _window(truth_cuts)
        bound = self._bound(theta, norm)
        c_all = _coeffs(theta)
        eff = float(
            np.clip(
                np.mean(np.einsum("ni,ij,nj->n", c_all, np.asarray(norm["S"]), c_all) / bound),
                1e-3,
                1,
            )
        )
        xs, zs = np.empty((n, self.data_dim)), np.empty((n, self.manifold_dim))
        pending = np.arange(n)
        while pending.size:
            reps = int(np.clip(np.ceil(1.5 / eff), 1, max(1, 200_000 // pending.size)))
            idx = np.repeat(pending, reps)
            z, factor = _propose(len(idx), rng, window)
            ps = kin.momenta_from_chart(*z.T)
            ok = _lepton_acceptance(ps) if truth_cuts else np.ones(len(idx), bool)
            w = np.zeros(len(idx))
            sel = np.flatnonzero(ok)
            c = c_all[idx[sel]]
            W = morphing_weights(*(p[sel] for p in ps))
            w[sel] = np.einsum("ni,nij,nj->n", c, W, c) * factor[sel]
            over = w > bound[idx]
            if over.any():
                self.n_overflow += int(over.sum())
                warnings.warn(
                    f"Higgs4l.sample: {int(over.sum())} weight(s) above the unweighting bound; "
                    "increase bound_safety",
                    RuntimeWarning,
                    stacklevel=2,
                )
            acc = rng.uniform(size=len(idx)) * bound[idx] < w
            eff = max(acc.mean(), 1e-3)
            cand = np.flatnonzero(acc)
            rows, first = np.unique(idx[cand], return_index=True)
            cand = cand[first]
            ps_acc = tuple(p[cand] for p in ps)
            if self.smearing > 0:
                ps_acc = self._smear(ps_acc, rng)
            x = kin.observables(*ps_acc)
            if self.cuts and not truth_cuts:
                keep = passes_cuts(x)
                rows, x, cand = rows[keep], x[keep], cand[keep]
            xs[rows], zs[rows] = x, z[cand]
            pending = np.setdiff1d(pending, rows, assume_unique=True)
        return xs, zs

    def _smear(
        self, ps: tuple[np.ndarray, ...], rng: np.random.Generator
    ) -> tuple[np.ndarray, ...]:
        out = []
        for p in ps:
            f = np.clip(1.0 + self.smearing * rng.standard_normal(len(p)), 1e-3, None)
            q = p.copy()
            q[:, 1:] *= f[:, None]
            q[:, 0] = np.linalg.norm(q[:, 1:], axis=1)
            out.append(q)
        return tuple(out)

    # -- manifold
    def true_chart(self, x: np.ndarray) -> np.ndarray:
        """Chart coordinates ``(n, 11)`` (:data:`simulators.kinematics.CHART_NAMES`) of the lepton
        momenta in ``x``."""
        return kin.chart_from_momenta(*kin.momenta_from_observables(check_x(x, self.data_dim)))

    def from_chart(self, z: np.ndarray) -> np.ndarray:
        """Observables ``(n, 38)`` of chart points ``z`` ``(n, 11)``; inverse of
        :meth:`true_chart`."""
        z = np.asarray(z, dtype=float)
        if z.ndim != 2 or z.shape[1] != self.manifold_dim:
            raise ValueError(f"z: expected shape (n, {self.manifold_dim}), got {z.shape}")
        return kin.observables(*kin.momenta_from_chart(*z.T))

    def project(self, x: np.ndarray) -> np.ndarray:
        """A point on the manifold near ``x``: the lepton momenta of ``x`` are made massless
        (``E = |p|``), then scaled in the four-lepton rest frame by ``mH / m_4l`` and boosted back
        with the same velocity; all observables are recomputed from them. ``(n, 38)`` -> ``(n,
        38)``."""
        ps = [p.copy() for p in kin.momenta_from_observables(check_x(x, self.data_dim))]
        for p in ps:
            p[:, 0] = np.linalg.norm(p[:, 1:], axis=1)
        P = ps[0] + ps[1] + ps[2] + ps[3]
        beta = P[:, 1:] / P[:, :1]
        scale = (MH / kin.mass(P))[:, None]
        return kin.observables(*(kin.boost(kin.boost(p, -beta) * scale, beta) for p in ps))

    def distance_to_manifold(self, x: np.ndarray) -> np.ndarray:
        """``|| x - project(x) ||`` (Euclidean, raw units) ``(n,)``: zero on the manifold and an
        upper bound on the distance to it (``project(x)`` lies on it). Angle columns are compared as
        stored, so a ``phi`` pushed across ``±pi`` counts the full ``2 pi``."""
        x = check_x(x, self.data_dim)
        return np.linalg.norm(x - self.project(x), axis=1)


# ----------------------------------------------------------------------------- CLI
def _describe(n: int = 400_000, seed: int = 0) -> None:
    """Print how much each coupling changes the normalised m_Z2, cos theta1 and Phi
    distributions."""
    rng = np.random.default_rng(seed)
    z, factor = _propose(n, rng)
    V = morphing_weights(*kin.momenta_from_chart(*z[:, :8].T)) * factor[:, None, None]
    cols = {
        "m_Z2": (1, np.linspace(0, 70, 8)),
        "cos_theta1": (4, np.linspace(-1, 1, 9)),
        "Phi": (6, np.linspace(-np.pi, np.pi, 9)),
        "cos_theta2": (5, np.linspace(-1, 1, 9)),
    }

    def hists(theta):
        c = np.array([1.0, *theta])
        w = np.einsum("i,nij,j->n", c, V, c)
        return {
            k: np.histogram(z[:, i], bins, weights=w)[0] / w.sum() for k, (i, bins) in cols.items()
        }, w.mean()

    ref, s0 = hists((0.0, 0.0))
    for theta in [(1, 0), (-1, 0), (2, 0), (-2, 0), (0, 1), (0, 2), (0, 3), (1, 1), (-2, 3)]:
        h, s = hists(theta)
        dev = {k: float(np.max(np.abs(h[k] / ref[k] - 1))) for k in cols}
        print(
            f"a2, a3 = {theta}: sigma/sigma_SM = {s / s0:.3f}; max |bin ratio - 1|: "
            + ", ".join(f"{k} {v:.2f}" for k, v in dev.items())
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m simulators.higgs4l", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--compute-normalisation", action="store_true", help="compute and cache S_ij")
    ap.add_argument(
        "--describe", action="store_true", help="print the size of the coupling effects"
    )
    ap.add_argument("--cuts", choices=["off", "on", "both"], default="both")
    ap.add_argument("--n-events", type=float, default=2e7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", type=Path, default=_DATA_DIR, help="output folder (default: package data)"
    )
    args = ap.parse_args(argv)
    if args.describe:
        _describe()
    if args.compute_normalisation:
        for cuts in {"off": [False], "on": [True], "both": [False, True]}[args.cuts]:
            data = compute_normalisation(
                cuts, n_events=int(args.n_events), seed=args.seed + int(cuts), progress=False
            )
            path = args.out / f"higgs4l_norm_{_tag(cuts)}.json"
            atomic_write_json(data, path)
            print(
                f"{path}: S = {np.array(data['S']).round(6).tolist()}, max relative MC error of "
                f"sigma(theta) on the prior grid {data['rel_err_max']:.2e}"
            )
    if not (args.describe or args.compute_normalisation):
        ap.print_help()


if __name__ == "__main__":
    main()
