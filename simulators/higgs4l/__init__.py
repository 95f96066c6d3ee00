"""Analytic H -> Z Z* -> (e- e+)(mu- mu+) generator: anomalous HZZ couplings, exact likelihood.

Physics (``shared/reference/higgs4l.md``; the amplitude lives in
:mod:`simulators.higgs4l.amplitude`): ``M = D(q1^2) D(q2^2) T_mu,nu J1^mu J2^nu`` with
``J1 = ubar(e-) gamma^mu (gL P_L + gR P_R) v(e+)`` (``J2`` likewise for the muons), massless
leptons, ``gL = -1/2 + sW^2``, ``gR = sW^2``, Breit-Wigner propagators
``D(s) = 1 / (s - mZ^2 + i mZ GammaZ)`` (the ``q q / mZ^2`` part drops out for massless leptons),
and the vertex

    T_mu,nu = a1 mZ^2 g_mu,nu + a2 2[(q1.q2) g_mu,nu - q2_mu q1_nu]
              + a3 2 eps_mu,nu,rho,sigma q1^rho q2^sigma,

``eps^{0123} = +1`` (so ``eps_{0123} = -1``), metric ``(+,-,-,-)``, ``a1 = 1``, theta = ``(a2,
a3)``. Couplings are real, so ``|M|^2 = sum_ij c_i c_j W_ij(x)`` with ``c = (1, a2, a3)``; ``W`` is
computed two independent ways (lepton-tensor traces; explicit helicity spinors), which agree to
~1e-12. Overall coupling constants are dropped: they cancel in ``p(x|theta)``. ``Z1 = e+e-``, ``Z2 =
mu+mu-`` (pairing by flavour); angle conventions in :mod:`simulators.higgs4l.kinematics`.

Density. The chart ``z = (m1, m2, cos theta*, Phi1, cos theta1, cos theta2, Phi, psi, pT, y, phi)``
(:data:`simulators.higgs4l.kinematics.CHART_NAMES`) carries the Lebesgue measure ``dz``. The
four-body phase space at fixed ``m4l = mH`` is ``dPhi4 ∝ beta dm1^2 dm2^2 dOmega* dOmega1 dOmega2 =
4 m1 m2 beta dz`` (decay part), ``beta = lambda^{1/2}(1, m1^2/mH^2, m2^2/mH^2)``. Hence

    p(z | theta) = c^T W(z) c * 4 m1 m2 beta * p_boost(pT, y, phi) * 1_cuts(z) / sigma(theta),
    sigma(theta) = c^T S c,    S_ij = int W_ij 4 m1 m2 beta p_boost 1_cuts dz,

which integrates to one over the chart. ``p_boost`` is theta-independent: ``pT ~ Gamma(2, 12 GeV)``
(mode 12 GeV), ``y ~ N(0, 1.5^2)`` truncated to ``|y| < 2.5``, ``phi ~ U(-pi, pi)``. ``S`` is a
Monte Carlo integral (Breit-Wigner multichannel importance sampling in ``m1, m2``) cached as
``simulators/data/higgs4l_norm_{nocuts,cuts}.json`` (``python -m simulators.higgs4l
--compute-normalisation``), with its MC covariance.

Joint score (``simulate(n, rng, score=True)``, :meth:`Higgs4l.score`): analytic from the morphing,
``∇θ log p = 2 [W c]_{1:} / cᵀWc − 2 [S c]_{1:} / cᵀSc``; at detector level the parton event's (the
smearing does not depend on theta), with cuts on smeared events normalised by their Monte Carlo
acceptance ``S'`` (:func:`~simulators.higgs4l.normalisation.detector_normalisation`).

Sampling: proposal points (masses from the importance proposal, uniform decay angles, exact boost),
accept-reject against a per-theta bound tabulated on a grid over the prior (the weight is convex in
theta, so the maximum over a grid cell sits at a corner), one event per theta row, batched.

Prior. ``a2 ∈ [-2, 2]``, ``a3 ∈ [-3, 3]`` (box uniform), so that each coupling alone moves the
normalised distributions by O(50 %) at the edges (``python -m simulators.higgs4l --describe``):
a2 = -1 (rate minimum, sigma/sigma_SM = 0.36) changes cos theta1 by up to 48 % and m_Z2 by 150 %;
|a2| = 2 changes cos theta1 by 15-36 % and m_Z2 by 70-100 % (sigma/sigma_SM = 0.45, 4.4); |a3| = 3
changes cos theta1 by 48 %, Phi by 24 % (the pure CP-odd limit is 27 %), m_Z2 by 43 %
(sigma/sigma_SM = 2.4).

Modules: :mod:`~simulators.higgs4l.amplitude` (``|M|^2``, two ways), :mod:`~.kinematics`
(observables, decay angles, chart), :mod:`~.proposal` (phase space, boost, mass proposal),
:mod:`~.cuts` (acceptance cuts), :mod:`~.normalisation` (``S_ij``: compute and cache),
:mod:`~.simulator` (:class:`Higgs4l`), :mod:`~.selection` (:class:`LeptonSelection` for users' ROOT
files), :mod:`~.pythia` (:class:`PythiaHiggs4l`, Pythia 8 for validation; ``pythia8mc`` is imported
only when it generates) and ``python -m simulators.higgs4l`` (:mod:`~.__main__`).
"""

from __future__ import annotations

from simulators.higgs4l import kinematics
from simulators.higgs4l.amplitude import (
    GAMMA_Z,
    GL,
    GR,
    MH,
    MZ,
    SW2,
    matrix_element_squared,
    morphing_weights,
    morphing_weights_helicity,
    morphing_weights_trace,
)
from simulators.higgs4l.cuts import CUTS, passes_cuts
from simulators.higgs4l.kinematics import CHART_NAMES, OBSERVABLE_NAMES
from simulators.higgs4l.normalisation import (
    PRIOR_HIGH,
    PRIOR_LOW,
    compute_normalisation,
    load_normalisation,
)
from simulators.higgs4l.proposal import boost_log_density, phase_space_density
from simulators.higgs4l.pythia import PythiaHiggs4l, a3_from_eta, eta_from_a3  # pythia8mc: lazy
from simulators.higgs4l.selection import LeptonSelection
from simulators.higgs4l.simulator import Higgs4l

__all__ = [
    "CHART_NAMES",
    "CUTS",
    "GAMMA_Z",
    "GL",
    "GR",
    "MH",
    "MZ",
    "OBSERVABLE_NAMES",
    "PRIOR_HIGH",
    "PRIOR_LOW",
    "SW2",
    "Higgs4l",
    "LeptonSelection",
    "PythiaHiggs4l",
    "a3_from_eta",
    "boost_log_density",
    "compute_normalisation",
    "eta_from_a3",
    "kinematics",
    "load_normalisation",
    "matrix_element_squared",
    "morphing_weights",
    "morphing_weights_helicity",
    "morphing_weights_trace",
    "passes_cuts",
    "phase_space_density",
]
