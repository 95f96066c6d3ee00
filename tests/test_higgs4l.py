"""Tests of the analytic H -> ZZ* -> 2e2mu simulator: matrix element, kinematics, normalisation,
sampler."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from simulators import higgs4l as h
from simulators.higgs4l import Higgs4l
from simulators.higgs4l import cuts as hcuts
from simulators.higgs4l import kinematics as kin
from simulators.higgs4l import normalisation as hnorm
from simulators.higgs4l import proposal as hprop


def _random_chart(n: int, rng: np.random.Generator, boost: bool = True) -> np.ndarray:
    m1 = rng.uniform(0.5, 120.0, n)
    m2 = rng.uniform(0.02, 0.99, n) * (kin.MH - m1)
    z = np.stack(
        [
            m1,
            m2,
            rng.uniform(-1, 1, n),
            rng.uniform(-np.pi, np.pi, n),
            rng.uniform(-1, 1, n),
            rng.uniform(-1, 1, n),
            rng.uniform(-np.pi, np.pi, n),
            rng.uniform(-np.pi, np.pi, n),
            rng.gamma(2, 12, n),
            rng.uniform(-2.5, 2.5, n),
            rng.uniform(-np.pi, np.pi, n),
        ],
        1,
    )
    if not boost:
        z[:, 8:] = 0.0
    return z


def _wrap(d: np.ndarray) -> np.ndarray:
    return (d + np.pi) % (2 * np.pi) - np.pi


@pytest.fixture(scope="module")
def sim() -> Higgs4l:
    return Higgs4l()


# ----------------------------------------------------------------------------- kinematics
def test_observable_names():
    assert len(kin.OBSERVABLE_NAMES) == 38 == Higgs4l.data_dim
    assert len(set(kin.OBSERVABLE_NAMES)) == 38
    assert kin.OBSERVABLE_NAMES[-5:] == kin.ANGLE_NAMES


@pytest.mark.parametrize("boost", [False, True])
def test_chart_round_trip(boost):
    rng = np.random.default_rng(0)
    z = _random_chart(5000, rng, boost)
    ps = kin.momenta_from_chart(*z.T)
    for p in ps:
        assert np.allclose(kin.mdot(p, p), 0.0, atol=1e-6 * p[:, 0] ** 2)
    back = kin.chart_from_momenta(*ps)
    d = back - z
    d[:, [3, 6, 7, 10]] = _wrap(d[:, [3, 6, 7, 10]])
    if not boost:
        d[:, 10] = 0.0  # phi of a Higgs at rest is undefined
    assert np.abs(d).max() < 1e-7
    ang = kin.angles(*ps)
    np.testing.assert_allclose(ang, back[:, 2:7])
    x = kin.observables(*ps)
    np.testing.assert_allclose(x[:, kin.OBSERVABLE_NAMES.index("m_4l")], kin.MH, rtol=1e-10)
    np.testing.assert_allclose(
        x[:, 16:19].T,
        [
            np.hypot(ps[0][:, 1], ps[0][:, 2]),
            np.arcsinh(ps[0][:, 3] / np.hypot(ps[0][:, 1], ps[0][:, 2])),
            np.arctan2(ps[0][:, 2], ps[0][:, 1]),
        ],
        rtol=1e-12,
    )


def test_angle_conventions():
    """theta1 is the e- angle to the Z1 flight direction; Phi flips sign under a mirror (CP-odd)."""
    z = np.array([[91.0, 30.0, 0.3, 0.4, 0.9, -0.2, 1.1, 0.2, 0.0, 0.0, 0.0]])
    em, ep, mm, mp = kin.momenta_from_chart(*z.T)
    q1 = em + ep
    beta = -q1[:, 1:] / q1[:, :1]
    e_rest = kin.boost(em, beta)[0, 1:]
    assert np.isclose(e_rest @ q1[0, 1:] / np.linalg.norm(e_rest) / np.linalg.norm(q1[0, 1:]), 0.9)
    mirror = np.array([1.0, 1.0, 1.0, -1.0])  # z -> -z reflection
    ang = kin.angles(em * mirror, ep * mirror, mm * mirror, mp * mirror)
    assert (
        np.isclose(ang[0, 4], -1.1) and np.isclose(ang[0, 2], 0.9) and np.isclose(ang[0, 0], -0.3)
    )


# ----------------------------------------------------------------------------- matrix element
def test_gamma5_trace_convention():
    from simulators.higgs4l import amplitude as amp

    g = amp._GAMMA
    assert np.isclose(
        np.trace(amp._GAMMA5 @ g[0] @ g[1] @ g[2] @ g[3]), -4j
    )  # -4 i eps^{0123}, eps^{0123} = +1
    assert amp._EPS_UP[0, 1, 2, 3] == 1 and amp._EPS_LOW[0, 1, 2, 3] == -1


@pytest.mark.parametrize("boost", [False, True])
def test_two_matrix_elements_agree(boost):
    rng = np.random.default_rng(1)
    z = _random_chart(3000, rng, boost)
    ps = kin.momenta_from_chart(*z.T)
    theta = rng.uniform([-2, -3], [2, 3], (3000, 2))
    a = h.matrix_element_squared(*ps, theta, method="trace")
    b = h.matrix_element_squared(*ps, theta, method="helicity")
    assert np.all(a > 0)
    assert np.max(np.abs(a / b - 1)) < 1e-8
    Wt, Wh = h.morphing_weights_trace(*ps), h.morphing_weights_helicity(*ps)
    d = np.sqrt(np.einsum("nii->ni", Wt))
    assert np.max(np.abs(Wt - Wh) / (d[:, :, None] * d[:, None, :])) < 1e-8


def test_matrix_element_lorentz_invariant():
    rng = np.random.default_rng(2)
    ps = kin.momenta_from_chart(*_random_chart(2000, rng, boost=False).T)
    theta = rng.uniform([-2, -3], [2, 3], (2000, 2))
    ref = h.matrix_element_squared(*ps, theta)
    R = stats.special_ortho_group.rvs(3, random_state=3)
    beta = rng.normal(size=3)
    beta *= 0.95 / np.linalg.norm(beta)
    moved = []
    for p in ps:
        q = p.copy()
        q[:, 1:] = p[:, 1:] @ R.T
        moved.append(kin.boost(q, np.broadcast_to(beta, (len(q), 3))))
    np.testing.assert_allclose(h.matrix_element_squared(*moved, theta), ref, rtol=1e-9)


def test_cp_structure(sim):
    """a3 is CP odd: the SM-a3 interference integrates to zero; a mirror event swaps the sign of
    W_13."""
    S = sim.S
    err = np.sqrt(np.diag(np.asarray(sim.normalisation()["S_cov"]))).reshape(3, 3)
    assert abs(S[0, 2]) < 5 * err[0, 2] and abs(S[1, 2]) < 5 * err[1, 2]
    ps = kin.momenta_from_chart(*_random_chart(100, np.random.default_rng(4)).T)
    mirror = np.array([1.0, -1.0, -1.0, -1.0])
    W, Wm = h.morphing_weights(*ps), h.morphing_weights(*(p * mirror for p in ps))
    np.testing.assert_allclose(Wm[:, :2, :2], W[:, :2, :2], rtol=1e-9)
    np.testing.assert_allclose(Wm[:, :2, 2], -W[:, :2, 2], rtol=1e-7, atol=1e-9 * np.abs(W).max())


# ----------------------------------------------------------------------------- normalisation
def test_normalisation_cached_and_precise():
    for cuts in (False, True):
        data = h.load_normalisation(cuts, compute_if_missing=False)
        assert data["rel_err_max"] < 1e-3
        S = np.asarray(data["S"])
        assert np.all(np.linalg.eigvalsh(S) > 0)
    s_cut = np.asarray(h.load_normalisation(True)["S"])[0, 0]
    assert s_cut < np.asarray(h.load_normalisation(False)["S"])[0, 0]


@pytest.mark.parametrize("cuts", [False, True])
def test_sigma_morphing_matches_direct_mc(cuts):
    """sigma(theta) = c^T S c equals a direct MC integral of |M|^2 (helicity method, fresh seed)."""
    sim = Higgs4l(cuts=cuts)
    rng = np.random.default_rng(5)
    thetas = sim.prior.sample(3, rng)
    z, factor = hprop._propose(60_000, rng, hcuts._window(cuts))
    ps = kin.momenta_from_chart(*z.T)
    acc = h.passes_cuts(kin.observables(*ps)) if cuts else np.ones(len(z), bool)
    for theta in thetas:
        w = h.matrix_element_squared(*ps, theta, method="helicity") * factor * acc
        direct, err = w.mean(), w.std() / np.sqrt(len(w))
        sigma, sigma_err = sim.sigma(theta)[0], sim.sigma_error(theta)[0]
        assert abs(direct - sigma) < 4 * np.hypot(err, sigma_err), (theta, direct, sigma, err)


def test_normalisation_computed_into_user_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(hnorm, "_DATA_DIR", tmp_path / "pkg")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.warns(RuntimeWarning, match="missing or stale"):
        data = h.load_normalisation(False, n_events=20_000)
    path = tmp_path / "cache" / "mfinfer" / "higgs4l_norm_nocuts.json"
    assert json.loads(path.read_text())["S"] == data["S"]
    assert (
        h.load_normalisation(False, compute_if_missing=False)["S"] == data["S"]
    )  # reloaded, no warning
    with pytest.raises(FileNotFoundError, match="compute-normalisation"):
        h.load_normalisation(True, compute_if_missing=False)


# ----------------------------------------------------------------------------- likelihood
def test_likelihood_normalised(sim):
    """exp(log_likelihood) integrates to one over the chart measure (importance sampling)."""
    rng = np.random.default_rng(6)
    z, factor = hprop._propose(100_000, rng)
    x = sim.from_chart(z)
    log_q = np.log(h.phase_space_density(z[:, 0], z[:, 1]) / factor) + h.boost_log_density(
        z[:, 8], z[:, 9]
    )
    for theta in ([0.0, 0.0], [-1.0, 2.5]):
        r = np.exp(sim.log_likelihood(x, theta) - log_q)
        assert (
            abs(r.mean() - 1)
            < 4 * r.std() / np.sqrt(len(r)) + 3 * sim.sigma_error(theta)[0] / sim.sigma(theta)[0]
        )


def test_likelihood_matches_morphing(sim):
    x = sim.sample(np.zeros((50, 2)), rng=7)
    theta = np.array([[0.7, -1.3]])
    W = sim.morphing_weights(x)
    c = np.array([1.0, 0.7, -1.3])
    d = sim.log_likelihood(x, theta) - np.log(np.einsum("i,nij,j->n", c, W, c))
    z = sim.true_chart(x)
    d -= np.log(h.phase_space_density(z[:, 0], z[:, 1])) + h.boost_log_density(z[:, 8], z[:, 9])
    np.testing.assert_allclose(d, -np.log(sim.sigma(theta)[0]), rtol=1e-12)


def test_likelihood_refuses_smearing():
    sim = Higgs4l(smearing=0.02)
    x = sim.sample(np.zeros((20, 2)), rng=8)
    with pytest.raises(NotImplementedError, match="intractable"):
        sim.log_likelihood(x, [0.0, 0.0])
    assert np.median(sim.distance_to_manifold(x)) > 0.1
    assert np.std(x[:, kin.OBSERVABLE_NAMES.index("m_4l")]) > 0.5


def test_bad_input(sim):
    x = sim.sample(np.zeros((3, 2)), rng=9)
    with pytest.raises(ValueError, match="outside the prior"):
        sim.log_likelihood(x, [5.0, 0.0])
    with pytest.raises(ValueError, match="outside the prior"):
        sim.sample([[0.0, -4.0]])
    with pytest.raises(ValueError, match="expected shape"):
        sim.log_likelihood(x[:, :10], [0.0, 0.0])
    with pytest.raises(ValueError, match="expected shape"):
        sim.sample(np.zeros((3, 3)))
    bad = x.copy()
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sim.log_likelihood(bad, [0.0, 0.0])
    with pytest.raises(ValueError, match="rows to match"):
        sim.log_likelihood(x, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="smearing"):
        Higgs4l(smearing=-0.1)
    with pytest.raises(ValueError, match="m1 \\+ m2"):
        kin.momenta_from_chart(100.0, 50.0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="method"):
        h.matrix_element_squared(*kin.momenta_from_observables(x), [0, 0], method="x")


# ----------------------------------------------------------------------------- manifold
def test_distance_to_manifold(sim):
    x = sim.sample(sim.prior.sample(200, 10), rng=11)
    assert np.max(sim.distance_to_manifold(x)) < 1e-6
    np.testing.assert_allclose(sim.project(x), x, atol=1e-6)
    off = x.copy()
    off[:, 1:4] *= 1.02  # e- momentum: massive and m_4l off
    d = sim.distance_to_manifold(off)
    assert np.all(d > 0.01)
    assert np.max(sim.distance_to_manifold(sim.project(off))) < 1e-6
    z = sim.true_chart(x)
    np.testing.assert_allclose(sim.from_chart(z), x, atol=1e-6)


# ----------------------------------------------------------------------------- sampler vs density
def _chi2_pvalues(
    sim: Higgs4l, theta: np.ndarray, n_events: int, n_weighted: int, seed: int
) -> dict:
    """chi2 p-values of unweighted samples against the exact density, per observable; the expected
    counts come from importance-weighted proposal points (their MC variance enters the chi2)."""
    rng = np.random.default_rng(seed)
    theta = np.asarray(theta, dtype=float)
    _, z = sim.sample_with_chart(np.repeat(theta[None], n_events, 0), rng)
    zw, factor = hprop._propose(n_weighted, rng, hcuts._window(sim.cuts))
    ps = kin.momenta_from_chart(*zw.T)
    w = h.matrix_element_squared(*ps, theta) * factor
    if sim.cuts:
        w *= h.passes_cuts(kin.observables(*ps))
    p = w / w.sum()
    out = {}
    for name, col in (("m_Z1", 0), ("m_Z2", 1), ("cos_theta1", 4), ("Phi", 6)):
        order = np.argsort(zw[:, col])
        cdf = np.cumsum(p[order])
        edges = np.interp(np.linspace(0, 1, 21)[1:-1], cdf, zw[order, col])  # 20 equiprobable bins
        edges = np.concatenate([[-np.inf], edges, [np.inf]])
        obs = np.histogram(z[:, col], edges)[0]
        idx = np.digitize(zw[:, col], edges) - 1
        exp = n_events * np.bincount(idx, p, minlength=20)
        var = exp + n_events**2 * np.bincount(idx, p**2, minlength=20)
        chi2 = np.sum((obs - exp) ** 2 / var)
        out[name] = (chi2, stats.chi2.sf(chi2, 19))
    return out


@pytest.mark.parametrize(
    "cuts,theta", [(False, (0.0, 0.0)), (False, (-1.0, 2.5)), (True, (1.2, -1.5))]
)
def test_sampler_follows_density(cuts, theta):
    res = _chi2_pvalues(Higgs4l(cuts=cuts), theta, n_events=15_000, n_weighted=150_000, seed=12)
    for name, (chi2, pval) in res.items():
        assert pval > 1e-3, (name, chi2, pval)


def test_sampler_respects_cuts_and_is_reproducible():
    sim = Higgs4l(cuts=True)
    theta = sim.prior.sample(300, 13)
    x = sim.sample(theta, rng=14)
    assert np.all(h.passes_cuts(x))
    np.testing.assert_array_equal(x, sim.sample(theta, rng=14))
    assert np.all(np.isfinite(sim.log_likelihood(x, theta)))
    out = x.copy()
    out[:, kin.OBSERVABLE_NAMES.index("em_pt")] = 1.0
    assert not np.any(h.passes_cuts(out))
    assert sim.n_overflow == 0


@pytest.mark.slow
@pytest.mark.parametrize("cuts", [False, True])
def test_sampler_follows_density_large(cuts):
    sim = Higgs4l(cuts=cuts)
    for seed, theta in enumerate(sim.prior.sample(4, 15)):
        res = _chi2_pvalues(sim, theta, n_events=100_000, n_weighted=1_000_000, seed=seed)
        for name, (chi2, pval) in res.items():
            assert pval > 1e-3, (theta, name, chi2, pval)
