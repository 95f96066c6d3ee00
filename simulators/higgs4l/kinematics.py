"""Four-lepton kinematics for H -> Z1 Z2 -> (e- e+)(mu- mu+): observables, decay angles, chart.

All momenta are ``(n, 4)`` float arrays ``(E, px, py, pz)`` in GeV, metric ``(+, -, -, -)``, lepton
order ``e-, e+, mu-, mu+``. Conventions (Gao et al., arXiv:1001.3396; Bolognesi et al.,
arXiv:1208.4018, appendix):

- **Pairing by flavour**: ``Z1 = (e- e+)``, ``Z2 = (mu- mu+)`` (no ambiguity for 2e2mu), so ``m_Z1``
is ``m_ee`` and may be the off-shell one. - **Higgs rest frame**: reached from the lab by the pure
  (rotation-free) boost along the four-lepton momentum; its axes are the lab axes. The beam axis
``n_z`` is the lab ``+z`` unit vector there. - With ``q11, q12, q21, q22 = e-, e+, mu-, mu+`` and
``q1 = q11 + q12``, ``q2 = q21 + q22`` (H frame):
  ``n1 = q11 x q12 / |.|``, ``n2 = q21 x q22 / |.|``, ``n_sc = n_z x q1 / |.|``;
  ``cos theta* = q1.n_z / |q1|``;
  ``Phi1 = sign(q1.(n1 x n_sc)) arccos(n1.n_sc)``;
  ``Phi  = sign(q1.(n1 x n2)) arccos(-n1.n2)``;
  ``cos theta1 = -q2.q11 / (|q2||q11|)`` in the Z1 rest frame (= angle of the e- to the Z1 flight
  direction), ``cos theta2 = -q1.q21 / (|q1||q21|)`` in the Z2 rest frame (mu- vs the Z2 flight
  direction). ``Phi, Phi1`` lie in ``(-pi, pi]``.
- ``psi`` (overall azimuth, needed for a full chart) is the azimuth of ``q1`` in the H frame.
- The Higgs boost is described by ``(pT, y, phi)`` of the four-lepton system in the lab.

``momenta_from_chart`` is the exact inverse of ``chart_from_momenta`` (see the round-trip test).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ANGLE_NAMES",
    "CHART_NAMES",
    "LEPTONS",
    "MH",
    "OBSERVABLE_NAMES",
    "angles",
    "boost",
    "chart_from_momenta",
    "decay_chart",
    "mass",
    "mdot",
    "momenta_from_chart",
    "momenta_from_observables",
    "observables",
]

#: Higgs mass (GeV), fixed: ``m_4l = MH`` exactly on the manifold.
MH = 125.0
#: Lepton labels, in the order of the momentum arguments: e-, e+, mu-, mu+.
LEPTONS = ("em", "ep", "mm", "mp")
#: The five decay angles, in the order returned by :func:`angles`.
ANGLE_NAMES = ("cos_theta_star", "Phi1", "cos_theta1", "cos_theta2", "Phi")
#: The 11 chart coordinates, in the order of :func:`chart_from_momenta`.
CHART_NAMES = ("m_Z1", "m_Z2", *ANGLE_NAMES, "psi", "pt_4l", "y_4l", "phi_4l")
#: The 38 observables of :func:`observables`, in column order.
OBSERVABLE_NAMES: tuple[str, ...] = (
    tuple(f"{lep}_{c}" for lep in LEPTONS for c in ("E", "px", "py", "pz"))
    + tuple(f"{lep}_{c}" for lep in LEPTONS for c in ("pt", "eta", "phi"))
    + ("m_Z1", "m_Z2", "m_4l", "pt_4l", "y_4l")
    + ANGLE_NAMES
)

_METRIC = np.array([1.0, -1.0, -1.0, -1.0])


def _as_momenta(*ps: np.ndarray) -> list[np.ndarray]:
    out = []
    for i, p in enumerate(ps):
        p = np.asarray(p, dtype=float)
        if p.ndim == 1:
            p = p[None, :]
        if p.ndim != 2 or p.shape[1] != 4:
            raise ValueError(
                f"momentum {i}: expected shape (n, 4) as (E, px, py, pz), got {p.shape}"
            )
        out.append(p)
    n = {len(p) for p in out}
    if len(n) != 1:
        raise ValueError(
            f"momenta: all must have the same number of rows, got {[len(p) for p in out]}"
        )
    return out


def mdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minkowski product ``a.b`` of ``(..., 4)`` arrays (metric +,-,-,-) -> ``(...)``."""
    return a[..., 0] * b[..., 0] - np.sum(a[..., 1:] * b[..., 1:], axis=-1)


def mass(p: np.ndarray) -> np.ndarray:
    """Invariant mass ``sign(m^2) sqrt|m^2|`` of ``(..., 4)`` momenta -> ``(...)``."""
    m2 = mdot(p, p)
    return np.sign(m2) * np.sqrt(np.abs(m2))


def boost(p: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Pure Lorentz boost by velocity ``beta`` (active: a particle at rest gets velocity ``beta``).

    Arguments:
        p: ``(n, 4)`` momenta.
        beta: ``(n, 3)`` velocities, ``|beta| < 1``. ``boost(p, -beta)`` undoes ``boost(p, beta)``.

    Returns:
        ``(n, 4)`` boosted momenta.
    """
    b2 = np.sum(beta**2, axis=-1)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = np.sum(beta * p[..., 1:], axis=-1)
    # (gamma - 1) / b2 written as gamma^2 / (gamma + 1): finite at beta = 0.
    coef = gamma**2 / (gamma + 1.0) * bp + gamma * p[..., 0]
    out = np.empty_like(p)
    out[..., 0] = gamma * (p[..., 0] + bp)
    out[..., 1:] = p[..., 1:] + coef[..., None] * beta
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _signed_angle(sign_arg: np.ndarray, cos: np.ndarray) -> np.ndarray:
    ang = np.arccos(np.clip(cos, -1.0, 1.0))
    return np.where(sign_arg < 0, -ang, ang)


def decay_chart(p_em, p_ep, p_mm, p_mp) -> np.ndarray:
    """Rest-frame chart of the decay: ``(n, 8)`` columns ``m_Z1, m_Z2, cos_theta_star, Phi1,
    cos_theta1, cos_theta2, Phi, psi`` (see the module docstring for the conventions)."""
    p_em, p_ep, p_mm, p_mp = _as_momenta(p_em, p_ep, p_mm, p_mp)
    P = p_em + p_ep + p_mm + p_mp
    beta = -P[:, 1:] / P[:, :1]
    q11, q12, q21, q22 = (boost(p, beta) for p in (p_em, p_ep, p_mm, p_mp))
    q1, q2 = q11 + q12, q21 + q22
    v1 = q1[:, 1:]
    nz = np.zeros_like(v1)
    nz[:, 2] = 1.0
    n1 = _unit(np.cross(q11[:, 1:], q12[:, 1:]))
    n2 = _unit(np.cross(q21[:, 1:], q22[:, 1:]))
    nsc = _unit(np.cross(nz, v1))
    v1u = _unit(v1)
    cos_theta_star = v1u[:, 2]
    Phi1 = _signed_angle(np.sum(v1 * np.cross(n1, nsc), -1), np.sum(n1 * nsc, -1))
    Phi = _signed_angle(np.sum(v1 * np.cross(n1, n2), -1), -np.sum(n1 * n2, -1))
    # theta1 in the Z1 rest frame, theta2 in the Z2 rest frame
    b1 = -q1[:, 1:] / q1[:, :1]
    a, b = boost(q2, b1)[:, 1:], boost(q11, b1)[:, 1:]
    cos_theta1 = -np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    b2 = -q2[:, 1:] / q2[:, :1]
    a, b = boost(q1, b2)[:, 1:], boost(q21, b2)[:, 1:]
    cos_theta2 = -np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    psi = np.arctan2(v1[:, 1], v1[:, 0])
    return np.stack(
        [
            mass(q1),
            mass(q2),
            cos_theta_star,
            Phi1,
            np.clip(cos_theta1, -1, 1),
            np.clip(cos_theta2, -1, 1),
            Phi,
            psi,
        ],
        axis=1,
    )


def angles(p_em, p_ep, p_mm, p_mp) -> np.ndarray:
    """The five decay angles ``(n, 5)``: ``cos theta*, Phi1, cos theta1, cos theta2, Phi``."""
    return decay_chart(p_em, p_ep, p_mm, p_mp)[:, 2:7]


def _pt_y_phi(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pt = np.hypot(P[:, 1], P[:, 2])
    y = 0.5 * np.log((P[:, 0] + P[:, 3]) / (P[:, 0] - P[:, 3]))
    return pt, y, np.arctan2(P[:, 2], P[:, 1])


def chart_from_momenta(p_em, p_ep, p_mm, p_mp) -> np.ndarray:
    """Full 11-d chart ``(n, 11)``, columns :data:`CHART_NAMES`: the 8 decay coordinates of
    :func:`decay_chart` then ``pt_4l, y_4l, phi_4l`` of the four-lepton system."""
    p_em, p_ep, p_mm, p_mp = _as_momenta(p_em, p_ep, p_mm, p_mp)
    pt, y, phi = _pt_y_phi(p_em + p_ep + p_mm + p_mp)
    return np.concatenate([decay_chart(p_em, p_ep, p_mm, p_mp), np.stack([pt, y, phi], 1)], 1)


def momenta_from_chart(
    m1,
    m2,
    cos_theta_star,
    Phi1,
    cos_theta1,
    cos_theta2,
    Phi,
    psi=0.0,
    pt=0.0,
    y=0.0,
    phi=0.0,
    m4l: float = MH,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lepton momenta from the chart (inverse of :func:`chart_from_momenta`).

    Arguments are broadcast to a common ``(n,)`` shape: Z masses ``m1 = m_ee``, ``m2 = m_mumu``
    (``m1 + m2 < m4l``), the five angles, the overall azimuth ``psi`` of Z1 in the H frame, and the
    lab ``pt, y, phi`` of the four-lepton system of mass ``m4l``.

    Returns:
        ``(p_em, p_ep, p_mm, p_mp)``, each ``(n, 4)``, massless.

    Construction, in the H rest frame: Z1 along ``q1 = (sin t* cos psi, sin t* sin psi, cos t*)``;
    basis ``e1 = n_sc``, ``e2 = q1 x e1``; the e- in the Z1 frame points along
    ``cos t1 q1 + sin t1 (cos f1 e1 + sin f1 e2)`` with ``f1 = pi/2 - Phi1``; the mu- in the Z2
    frame along ``-cos t2 q1 + sin t2 (cos f2 e1 + sin f2 e2)`` with ``f2 = f1 - Phi``.
    """
    arrs = np.broadcast_arrays(
        *(
            np.asarray(a, dtype=float)
            for a in (m1, m2, cos_theta_star, Phi1, cos_theta1, cos_theta2, Phi, psi, pt, y, phi)
        )
    )
    m1, m2, cts, Phi1, ct1, ct2, Phi, psi, pt, y, phi = (np.atleast_1d(a).ravel() for a in arrs)
    n = len(m1)
    lam = (m4l**2 - (m1 + m2) ** 2) * (m4l**2 - (m1 - m2) ** 2)
    if np.any(lam < 0) or np.any(m1 < 0) or np.any(m2 < 0):
        raise ValueError(f"momenta_from_chart: need 0 <= m1, m2 and m1 + m2 <= m4l = {m4l}")
    pz = np.sqrt(lam) / (2 * m4l)
    sts = np.sqrt(np.clip(1 - cts**2, 0, None))
    u = np.stack([sts * np.cos(psi), sts * np.sin(psi), cts], 1)  # Z1 direction
    e1 = np.stack([-u[:, 1], u[:, 0], np.zeros(n)], 1)  # z x u
    norm = np.linalg.norm(e1, axis=1, keepdims=True)
    # degenerate cos theta* = +-1: n_sc undefined, take psi-rotated x axis
    e1 = np.where(
        norm > 1e-300,
        e1 / np.where(norm > 0, norm, 1),
        np.stack([-np.sin(psi), np.cos(psi), np.zeros(n)], 1),
    )
    e2 = np.cross(u, e1)

    def two_body(m, direction, sign):  # Z of mass m moving along sign*u, lepton along `direction`
        E = np.sqrt(m**2 + pz**2)
        lep = np.concatenate([0.5 * m[:, None], 0.5 * m[:, None] * direction], 1)
        anti = np.concatenate([0.5 * m[:, None], -0.5 * m[:, None] * direction], 1)
        beta = sign * (pz / E)[:, None] * u
        return boost(lep, beta), boost(anti, beta)

    f1 = np.pi / 2 - Phi1
    f2 = f1 - Phi
    st1, st2 = np.sqrt(np.clip(1 - ct1**2, 0, None)), np.sqrt(np.clip(1 - ct2**2, 0, None))
    d1 = ct1[:, None] * u + st1[:, None] * (np.cos(f1)[:, None] * e1 + np.sin(f1)[:, None] * e2)
    d2 = -ct2[:, None] * u + st2[:, None] * (np.cos(f2)[:, None] * e1 + np.sin(f2)[:, None] * e2)
    em, ep = two_body(m1, d1, 1.0)
    mm, mp = two_body(m2, d2, -1.0)
    # Higgs boost to the lab
    mt = np.sqrt(m4l**2 + pt**2)
    P = np.stack([mt * np.cosh(y), pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], 1)
    beta = P[:, 1:] / P[:, :1]
    out = tuple(boost(p, beta) for p in (em, ep, mm, mp))
    for p in out:  # exactly massless
        p[:, 0] = np.linalg.norm(p[:, 1:], axis=1)
    return out  # type: ignore[return-value]


def observables(p_em, p_ep, p_mm, p_mp) -> np.ndarray:
    """All observables ``(n, 38)``, columns :data:`OBSERVABLE_NAMES`.

    Arguments:
        p_em, p_ep, p_mm, p_mp: ``(n, 4)`` lab-frame momenta of e-, e+, mu-, mu+.

    Returns:
        ``(E, px, py, pz)`` of each lepton, ``(pt, eta, phi)`` of each lepton, ``m_Z1 = m_ee``,
        ``m_Z2 = m_mumu``, ``m_4l``, ``pt_4l``, ``y_4l`` and the five angles of :func:`angles`.
    """
    ps = _as_momenta(p_em, p_ep, p_mm, p_mp)
    cols = [p for p in ps]
    for p in ps:
        pt = np.hypot(p[:, 1], p[:, 2])
        eta = np.arcsinh(p[:, 3] / pt)
        cols.append(np.stack([pt, eta, np.arctan2(p[:, 2], p[:, 1])], 1))
    P = ps[0] + ps[1] + ps[2] + ps[3]
    pt4, y4, _ = _pt_y_phi(P)
    ch = decay_chart(*ps)
    cols.append(np.stack([ch[:, 0], ch[:, 1], mass(P), pt4, y4], 1))
    cols.append(ch[:, 2:7])
    return np.concatenate(cols, 1)


def momenta_from_observables(
    x: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four lepton momenta ``(n, 4)`` stored in columns 0-15 of observables ``x`` ``(n,
    38)``."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(OBSERVABLE_NAMES):
        raise ValueError(f"x: expected shape (n, {len(OBSERVABLE_NAMES)}), got {x.shape}")
    return tuple(x[:, 4 * i : 4 * i + 4] for i in range(4))  # type: ignore[return-value]
