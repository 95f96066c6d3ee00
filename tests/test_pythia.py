"""Pythia 8 validation of the H -> ZZ* -> 2e2mu decay: Pythia's CP-even / CP-odd decays against
Higgs4l's matrix element (decay angles Phi and cos theta1, chi^2), the eta <-> a3 mapping, and
worker-count independence of the parallel generator.

Only rest-frame decay angles are compared: Pythia produces the Higgs in gluon fusion with its own
boost, and picks the Z masses from its own Breit-Wigner lineshape (and, for parity 2, weights the
masses differently; see simulators/higgs4l/pythia.py). Both samples are restricted to the same mass
window.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2 as chi2_dist

from simulators.higgs4l import kinematics as kin

PHI = kin.OBSERVABLE_NAMES.index("Phi")
COS1 = kin.OBSERVABLE_NAMES.index("cos_theta1")
M1, M2 = kin.OBSERVABLE_NAMES.index("m_Z1"), kin.OBSERVABLE_NAMES.index("m_Z2")
BINS = {PHI: np.linspace(-np.pi, np.pi, 21), COS1: np.linspace(-1, 1, 21)}
WINDOW = (12.0, 120.0)  # both Z masses, applied to both generators


def _pythia():
    return pytest.importorskip(
        "pythia8mc", reason="pythia8mc (Pythia 8 Python bindings) not installed"
    )


def _window(x: np.ndarray) -> np.ndarray:
    return (
        (x[:, M1] > WINDOW[0])
        & (x[:, M1] < WINDOW[1])
        & (x[:, M2] > WINDOW[0])
        & (x[:, M2] < WINDOW[1])
    )


def two_sample_chi2(
    a: np.ndarray, b: np.ndarray, bins: np.ndarray, wb: np.ndarray | None = None
) -> tuple[float, int]:
    """Chi^2 between the shapes of an unweighted sample ``a`` and a (weighted) sample ``b``.

    Returns:
        ``(chi2, dof)`` with dof = bins - 1.
    """
    wb = np.ones(len(b)) if wb is None else wb
    na, _ = np.histogram(a, bins)
    nb, _ = np.histogram(b, bins, weights=wb)
    sb, _ = np.histogram(b, bins, weights=wb**2)
    fa, fb = na / na.sum(), nb / nb.sum()
    var = na / na.sum() ** 2 + sb / nb.sum() ** 2
    return float(np.sum((fa - fb) ** 2 / var)), len(bins) - 2


def _higgs4l_even(n: int, rng: int) -> tuple[np.ndarray, np.ndarray]:
    from simulators.higgs4l import Higgs4l

    x = Higgs4l().sample(np.zeros((n, 2)), rng=rng)
    return x, np.ones(len(x))


def _higgs4l_odd(n: int, rng: int) -> tuple[np.ndarray, np.ndarray]:
    """Pure CP-odd (a1 = a2 = 0, a3 = 1) from Higgs4l by exact reweighting of events drawn at
    (a2, a3) = (0, 2): w = W_33 / (c^T W c)."""
    from simulators.higgs4l import Higgs4l, morphing_weights

    theta = np.array([0.0, 2.0])
    x = Higgs4l().sample(np.tile(theta, (n, 1)), rng=rng)
    W = morphing_weights(*kin.momenta_from_observables(x))
    c = np.array([1.0, *theta])
    return x, W[:, 2, 2] / np.einsum("i,nij,j->n", c, W, c)


def _compare(xp: np.ndarray, xh: np.ndarray, wh: np.ndarray) -> dict[str, tuple[float, int, float]]:
    kp, kh = _window(xp), _window(xh)
    out = {}
    for col, name in ((PHI, "Phi"), (COS1, "cos_theta1")):
        c2, dof = two_sample_chi2(xp[kp, col], xh[kh, col], BINS[col], wh[kh])
        out[name] = (c2, dof, float(chi2_dist.sf(c2, dof)))
    return out


def _validate(n: int, parity: str, seed: int) -> dict[str, tuple[float, int, float]]:
    from simulators.higgs4l.pythia import PythiaHiggs4l

    xp = PythiaHiggs4l(parity=parity, chunk_size=n).sample(np.zeros((n, 1)), rng=seed)
    xh, wh = (_higgs4l_even if parity == "even" else _higgs4l_odd)(
        n if parity == "even" else 2 * n, seed
    )
    res = _compare(xp, xh, wh)
    print(f"{parity}: n={n}", {k: f"chi2={v[0]:.1f}/{v[1]} p={v[2]:.3f}" for k, v in res.items()})
    return res


# ----------------------------------------------------------------------------- mapping (no Pythia)
def test_parameter_mapping():
    """Pythia's parity-3 weight numerator (transcribed from SigmaProcess::weightHiggsDecay) equals
    Higgs4l's |M|^2 / |propagators|^2 at (a2, a3) = (0, -eta/2), up to one constant."""
    from simulators.higgs4l.amplitude import MZ, SW2, _propagator, morphing_weights
    from simulators.higgs4l.pythia import a3_from_eta, eta_from_a3

    rng = np.random.default_rng(0)
    n = 500
    m1 = rng.uniform(40, 100, n)
    m2 = rng.uniform(12, 124 - m1)
    ps = kin.momenta_from_chart(
        m1,
        m2,
        *rng.uniform(-1, 1, (2, n)),
        rng.uniform(-1, 1, n),
        rng.uniform(-1, 1, n),
        rng.uniform(-np.pi, np.pi, n),
        psi=rng.uniform(-np.pi, np.pi, n),
        pt=rng.exponential(20, n),
        y=rng.normal(0, 1, n),
    )
    ps = (ps[0], ps[1], ps[2], ps[3])
    q1, q2 = ps[0] + ps[1], ps[2] + ps[3]
    prop = np.abs(_propagator(kin.mdot(q1, q1)) * _propagator(kin.mdot(q2, q2))) ** 2
    W = morphing_weights(*ps) / prop[:, None, None]

    p3, p4, p5, p6 = ps  # Pythia: fermion, antifermion of Z1, then of Z2

    def dot(a, b):
        return 2 * kin.mdot(a, b)

    p35, p36, p45, p46, p34, p56 = (
        dot(p3, p5),
        dot(p3, p6),
        dot(p4, p5),
        dot(p4, p6),
        dot(p3, p4),
        dot(p5, p6),
    )
    af, vf = -1.0, -1.0 + 4 * SW2
    A = 4 * vf * af * vf * af / (vf**2 + af**2) ** 2
    eps = np.linalg.det(np.stack([p3, p4, p5, p6], 1))
    ratios = []
    for eta in (-3.0, -0.7, 0.0, 1.3, 4.0):
        ah = eta / MZ**2
        pythia = 32 * (
            0.25 * ((1 + A) * p35 * p46 + (1 - A) * p36 * p45)
            - 0.5 * ah * eps * ((1 + A) * (p35 + p46) - (1 - A) * (p36 + p45))
            + 0.0625
            * ah**2
            * (
                -2 * (p34 * p56) ** 2
                - 2 * (p35 * p46 - p36 * p45) ** 2
                + p34 * p56 * ((p35 + p46) ** 2 + (p36 + p45) ** 2)
                + A * p34 * p56 * (p35 + p36 - p45 - p46) * (p35 + p45 - p36 - p46)
            )
        )
        c = np.array([1.0, 0.0, float(a3_from_eta(eta))])
        ours = np.einsum("i,nij,j->n", c, W, c)
        ratios.append(ours / pythia)
    ratios = np.array(ratios)
    np.testing.assert_allclose(
        ratios, ratios[0, 0], rtol=1e-9
    )  # one constant for all events and eta
    assert eta_from_a3(a3_from_eta(1.7)) == pytest.approx(1.7)


# ----------------------------------------------------------------------------- validation
def test_pythia_even_odd_small():
    """Few thousand events: CP-even and CP-odd angles agree; and the test can tell them apart."""
    _pythia()
    pytest.importorskip("simulators.higgs4l")
    n = 3000
    for parity in ("even", "odd"):
        for name, (c2, dof, p) in _validate(n, parity, seed=11).items():
            assert p > 1e-3, f"{parity} {name}: chi2 = {c2:.1f} / {dof} (p = {p:.2g})"
    # power: Pythia's CP-even sample against Higgs4l's CP-odd
    from simulators.higgs4l.pythia import PythiaHiggs4l

    xp = PythiaHiggs4l(parity="even", chunk_size=n).sample(np.zeros((n, 1)), rng=12)
    xh, wh = _higgs4l_odd(2 * n, 12)
    assert _compare(xp, xh, wh)["Phi"][2] < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("parity", ["even", "odd"])
def test_pythia_even_odd_large(parity):
    """50k events each (as the reference asks): chi^2 of Phi and cos theta1."""
    _pythia()
    for name, (c2, dof, p) in _validate(50_000, parity, seed=21).items():
        assert p > 1e-3, f"{parity} {name}: chi2 = {c2:.1f} / {dof} (p = {p:.2g})"


def _conditional_reference(x: np.ndarray, c: np.ndarray, k: int, seed: int):
    """Higgs4l's angular distribution at couplings ``c = (a1, a2, a3)`` given each Pythia event's
    masses and boost: k copies per event with uniform angles, weighted by |M|^2 normalised per
    event (removes every lineshape / production difference). Returns (x_ref, weights)."""
    from simulators.higgs4l import morphing_weights

    rng = np.random.default_rng(seed)
    rep = np.repeat(kin.chart_from_momenta(*kin.momenta_from_observables(x)), k, axis=0)
    m = len(rep)
    for col, lim in ((2, 1.0), (3, np.pi), (4, 1.0), (5, 1.0), (6, np.pi)):
        rep[:, col] = rng.uniform(-lim, lim, m)
    ps = kin.momenta_from_chart(*rep.T)
    w = np.einsum("i,nij,j->n", c, morphing_weights(*ps), c).reshape(len(x), k)
    return kin.observables(*ps), (w / w.sum(axis=1, keepdims=True)).ravel()


def test_pythia_mixed_sign_conditional():
    """Pythia's CP-mixed decay at eta = -2 matches Higgs4l at a3 = +1 (= -eta/2) given Pythia's own
    masses, and not a3 = -1: fixes the sign of the mapping (the interference term is odd in Phi)."""
    _pythia()
    from simulators.higgs4l.pythia import PythiaHiggs4l, a3_from_eta

    n, eta = 3000, -2.0
    xp = PythiaHiggs4l(chunk_size=n).sample(np.full((n, 1), eta), rng=31)
    for a3, agree in ((float(a3_from_eta(eta)), True), (-float(a3_from_eta(eta)), False)):
        xr, wr = _conditional_reference(xp, np.array([1.0, 0.0, a3]), k=10, seed=32)
        c2, dof = two_sample_chi2(xp[:, PHI], xr[:, PHI], BINS[PHI], wr)
        p = chi2_dist.sf(c2, dof)
        print(f"mixed eta={eta} vs a3={a3}: Phi chi2={c2:.1f}/{dof} p={p:.3g}")
        assert (p > 1e-3) if agree else (p < 1e-6), f"a3={a3}: chi2 = {c2:.1f} / {dof}"


# ----------------------------------------------------------------------------- parallel
def test_worker_count_independence():
    """Same base seed -> identical events with 1 worker (in-process) and 2 dask worker processes."""
    _pythia()
    pytest.importorskip("dask.distributed")
    from simulators.higgs4l.pythia import PythiaHiggs4l

    theta = np.repeat([[0.0], [2.0]], [150, 100], axis=0)  # 3 chunks: 100 + 50 at eta 0, 100 at 2
    runs = []
    for workers in (1, 2):
        sim = PythiaHiggs4l(chunk_size=100, n_workers=workers)
        runs.append(sim.sample(theta, rng=5))
        assert sim.last_stats.chunks == 3 and sim.last_stats.events == 250
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].shape == (250, len(kin.OBSERVABLE_NAMES)) and np.isfinite(runs[0]).all()
    assert not np.array_equal(runs[0][:100], runs[0][100:200])  # chunks get different seeds
