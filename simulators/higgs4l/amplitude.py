"""Helicity-summed |M|^2 of H -> Z Z* -> (e- e+)(mu- mu+) with anomalous HZZ couplings, two ways.

``M = D(q1^2) D(q2^2) T_mu,nu J1^mu J2^nu`` with ``J1 = ubar(e-) gamma^mu (gL P_L + gR P_R) v(e+)``
(``J2`` likewise for the muons), massless leptons, ``gL = -1/2 + sW^2``, ``gR = sW^2``, Breit-Wigner
propagators ``D(s) = 1 / (s - mZ^2 + i mZ GammaZ)`` and the vertex

    T_mu,nu = a1 mZ^2 g_mu,nu + a2 2[(q1.q2) g_mu,nu - q2_mu q1_nu]
              + a3 2 eps_mu,nu,rho,sigma q1^rho q2^sigma,

``eps^{0123} = +1``, metric ``(+,-,-,-)``, momenta in GeV. For real couplings ``|M|^2 = c^T W c``
with ``c = (a1, a2, a3)``; ``W`` (n, 3, 3) comes from lepton-tensor traces
(:func:`morphing_weights_trace`) and, independently, from explicit helicity spinors
(:func:`morphing_weights_helicity`). Both evaluate in the four-lepton rest frame.
"""

from __future__ import annotations

import itertools

import numpy as np

from simulators.higgs4l import kinematics as kin

__all__ = [
    "GAMMA_Z",
    "GL",
    "GR",
    "MH",
    "MZ",
    "SW2",
    "matrix_element_squared",
    "morphing_weights",
    "morphing_weights_helicity",
    "morphing_weights_trace",
]

MH = kin.MH
MZ = 91.1876
GAMMA_Z = 2.4952
SW2 = 0.2312
GL = -0.5 + SW2
GR = SW2

_G = np.diag([1.0, -1.0, -1.0, -1.0])
_EPS_UP = np.zeros((4, 4, 4, 4))  # eps^{mu nu rho sigma}, eps^{0123} = +1
for _perm in itertools.permutations(range(4)):
    _EPS_UP[_perm] = np.linalg.det(np.eye(4)[list(_perm)])
_EPS_LOW = -_EPS_UP  # eps_{mu nu rho sigma}: four lowered indices, det g = -1


# ----------------------------------------------------------------------------- matrix element
def _propagator(s: np.ndarray) -> np.ndarray:
    return 1.0 / (s - MZ**2 + 1j * MZ * GAMMA_Z)


def _pair_dot(p: np.ndarray, pbar: np.ndarray) -> np.ndarray:
    """``p.pbar`` without the cancellation of ``E E' - p.p'`` for nearly collinear light-like
    momenta: ``(E E' - |p||p'|) + |p||p'| |u - u'|^2 / 2`` (u = unit 3-vectors)."""
    a, b = np.linalg.norm(p[:, 1:], axis=1), np.linalg.norm(pbar[:, 1:], axis=1)
    du = p[:, 1:] / a[:, None] - pbar[:, 1:] / b[:, None]
    return (p[:, 0] * pbar[:, 0] - a * b) + 0.5 * a * b * np.sum(du**2, axis=1)


def _vertex_tensors(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """The three vertex structures ``T^(i)_{mu nu}`` with lower indices, ``(n, 3, 4, 4)``."""
    n = len(q1)
    q1l, q2l = q1 * np.diag(_G), q2 * np.diag(_G)
    T = np.empty((n, 3, 4, 4))
    T[:, 0] = MZ**2 * _G
    T[:, 1] = 2 * (kin.mdot(q1, q2)[:, None, None] * _G - q2l[:, :, None] * q1l[:, None, :])
    T[:, 2] = 2 * np.einsum("mnrs,kr,ks->kmn", _EPS_LOW, q1, q2)
    return T


def _lepton_tensor(p: np.ndarray, pbar: np.ndarray) -> np.ndarray:
    """Helicity-summed ``L^{mu nu} = sum J^mu J^nu*`` for ``J = ubar(p) gamma^mu (gL P_L + gR P_R)
    v(pbar)``: ``2 (gL^2 + gR^2) (p^mu pb^nu + p^nu pb^mu - g^{mu nu} p.pb) - 2 i (gR^2 - gL^2)
    eps^{a mu b nu} p_a pb_b`` (from ``Tr(gamma^a gamma^b gamma^c gamma^d gamma5) = -4 i
    eps^{abcd}``), ``(n, 4, 4)`` complex."""
    sym = p[:, :, None] * pbar[:, None, :]
    sym = sym + np.swapaxes(sym, 1, 2) - _pair_dot(p, pbar)[:, None, None] * _G
    pl, pbl = p * np.diag(_G), pbar * np.diag(_G)
    asym = np.einsum("ambn,ka,kb->kmn", _EPS_UP, pl, pbl)
    return 2 * (GL**2 + GR**2) * sym - 2j * (GR**2 - GL**2) * asym


def _to_rest_frame(*ps: np.ndarray) -> list[np.ndarray]:
    """Validate the four momenta and boost them to the four-lepton rest frame (``|M|^2`` is Lorentz
    invariant; evaluating it there avoids cancellations between large lab-frame components)."""
    ps = kin._as_momenta(*ps)
    P = ps[0] + ps[1] + ps[2] + ps[3]
    beta = -P[:, 1:] / P[:, :1]
    return [kin.boost(p, beta) for p in ps]


def morphing_weights_trace(p_em, p_ep, p_mm, p_mp) -> np.ndarray:
    """``W_ij`` ``(n, 3, 3)`` from lepton-tensor traces: ``Re L1^{mu a} L2^{nu b} T^i_{mu nu}
    T^j_{ab}`` times ``|D(q1^2) D(q2^2)|^2``. Momenta ``(n, 4)`` in any common frame."""
    p_em, p_ep, p_mm, p_mp = _to_rest_frame(p_em, p_ep, p_mm, p_mp)
    q1, q2 = p_em + p_ep, p_mm + p_mp
    T = _vertex_tensors(q1, q2)
    L1, L2 = _lepton_tensor(p_em, p_ep), _lepton_tensor(p_mm, p_mp)
    K = np.swapaxes(L1, 1, 2)[:, None] @ T  # (n, i, a, nu) = L1^{mu a} T^i_{mu nu}
    Z = K @ L2[:, None]  # (n, i, a, b)
    X = np.einsum("niab,njab->nij", Z, T)
    prop = (
        np.abs(_propagator(2 * _pair_dot(p_em, p_ep)) * _propagator(2 * _pair_dot(p_mm, p_mp))) ** 2
    )
    return X.real * prop[:, None, None]


# Dirac matrices, chiral basis: gamma^0 = [[0, 1], [1, 0]], gamma^i = [[0, s^i], [-s^i, 0]].
_SIGMA = np.array(
    [[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], complex
)
_GAMMA = np.zeros((4, 4, 4), complex)
_GAMMA[0] = np.block([[np.zeros((2, 2)), _SIGMA[0]], [_SIGMA[0], np.zeros((2, 2))]])
for _i in (1, 2, 3):
    _GAMMA[_i] = np.block([[np.zeros((2, 2)), _SIGMA[_i]], [-_SIGMA[_i], np.zeros((2, 2))]])
_GAMMA5 = 1j * _GAMMA[0] @ _GAMMA[1] @ _GAMMA[2] @ _GAMMA[3]
_CHIRAL = GL * (np.eye(4) - _GAMMA5) / 2 + GR * (np.eye(4) + _GAMMA5) / 2
_VERTEX = np.einsum(
    "ab,mbc,cd->mad", _GAMMA[0], _GAMMA, _CHIRAL
)  # gamma^0 gamma^mu (gL PL + gR PR)


def _helicity_spinors(p: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Massless ``u(p, h)`` and ``v(p, h)``, ``h = +, -``, each ``(n, 4)`` complex (chiral basis),
    built from two-component helicity eigenstates ``xi_± (p.sigma xi_± = ±|p| xi_±)``."""
    E = np.linalg.norm(p[:, 1:], axis=1)
    theta = np.arctan2(np.hypot(p[:, 1], p[:, 2]), p[:, 3])
    phi = np.arctan2(p[:, 2], p[:, 1])
    c, s, e = np.cos(theta / 2), np.sin(theta / 2), np.exp(1j * phi)
    xi_p = np.stack([c + 0j, e * s], 1)
    xi_m = np.stack([-np.conj(e) * s, c + 0j], 1)
    r = np.sqrt(2 * E)[:, None]
    zero = np.zeros_like(xi_p)
    u = [np.concatenate([zero, r * xi_p], 1), np.concatenate([r * xi_m, zero], 1)]
    # v(p, eta) = (sqrt(p.sigma) eta, -sqrt(p.sigmabar) eta) with eta = xi_-, xi_+
    v = [np.concatenate([r * xi_m, zero], 1), np.concatenate([zero, -r * xi_p], 1)]
    return u, v


def _currents(p: np.ndarray, pbar: np.ndarray) -> np.ndarray:
    """All four helicity currents ``J^mu = ubar(p) gamma^mu (gL PL + gR PR) v(pbar)``, ``(4, n,
    4)``."""
    u, _ = _helicity_spinors(p)
    _, v = _helicity_spinors(pbar)
    return np.stack([np.einsum("na,mab,nb->nm", np.conj(uu), _VERTEX, vv) for uu in u for vv in v])


def morphing_weights_helicity(p_em, p_ep, p_mm, p_mp) -> np.ndarray:
    """``W_ij`` ``(n, 3, 3)`` from explicit helicity amplitudes ``M^i(h) = D1 D2 T^i J1 J2`` summed
    over the 16 lepton helicities: ``W_ij = Re sum_h M^i(h) M^j(h)*``. The eps term is evaluated as
    ``eps_{0123} det[J1; J2; q1; q2]``."""
    p_em, p_ep, p_mm, p_mp = _to_rest_frame(p_em, p_ep, p_mm, p_mp)
    q1, q2 = p_em + p_ep, p_mm + p_mp
    J1, J2 = _currents(p_em, p_ep), _currents(p_mm, p_mp)
    prop = _propagator(2 * _pair_dot(p_em, p_ep)) * _propagator(2 * _pair_dot(p_mm, p_mp))
    q1q2 = kin.mdot(q1, q2)
    W = np.zeros((len(q1), 3, 3))
    for j1 in J1:
        for j2 in J2:
            m = np.empty((len(q1), 3), complex)
            m[:, 0] = MZ**2 * kin.mdot(j1, j2)
            m[:, 1] = 2 * (q1q2 * kin.mdot(j1, j2) - kin.mdot(q2, j1) * kin.mdot(q1, j2))
            mat = np.stack([j1, j2, q1 + 0j, q2 + 0j], 1)
            m[:, 2] = 2 * (-1.0) * np.linalg.det(mat)  # eps_{0123} = -1
            m *= prop[:, None]
            W += (m[:, :, None] * np.conj(m[:, None, :])).real
    return W


#: The default implementation used by the simulator.
morphing_weights = morphing_weights_trace


def matrix_element_squared(
    p_em, p_ep, p_mm, p_mp, theta: np.ndarray, method: str = "trace"
) -> np.ndarray:
    """``|M|^2`` summed over helicities ``(n,)`` at ``theta`` ``(n, 2)`` or ``(2,)`` = ``(a2, a3)``,
    a1 = 1."""
    fns = {"trace": morphing_weights_trace, "helicity": morphing_weights_helicity}
    if method not in fns:
        raise ValueError(f"method: must be one of {tuple(fns)}, got {method!r}")
    W = fns[method](p_em, p_ep, p_mm, p_mp)
    c = _coeffs(theta, len(W))
    return np.einsum("ni,nij,nj->n", c, W, c)


def _coeffs(theta: np.ndarray, n: int | None = None) -> np.ndarray:
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    c = np.concatenate([np.ones((len(theta), 1)), theta], 1)
    if n is not None and len(c) == 1:
        c = np.repeat(c, n, 0)
    return c
