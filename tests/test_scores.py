"""Joint scores of the simulators (``simulate(n, rng, score=True)``): finite differences of the exact
log-likelihood, zero mean under the sampled distribution, the same events as without the score."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.higgs4l import Higgs4l
from simulators.lorenz import Lorenz
from simulators.power import PowerSimulator
from simulators.sphere import Circle, ConditionalSphere, SphericalGaussian


def _finite_difference(log_likelihood, x: np.ndarray, theta: np.ndarray, h: float) -> np.ndarray:
    """Central differences of log p(x|θ) in every θ component, (n, p)."""
    out = np.empty_like(theta)
    for j in range(theta.shape[1]):
        e = np.zeros(theta.shape[1])
        e[j] = h
        out[:, j] = (log_likelihood(x, theta + e) - log_likelihood(x, theta - e)) / (2 * h)
    return out


def _inside(sim, n: int, rng: int, margin: float) -> np.ndarray:
    """θ ~ prior shrunk by ``margin`` (finite differences stay inside the support)."""
    low, high = sim.prior.bounds
    u = np.random.default_rng(rng).uniform(size=(n, sim.param_dim))
    return low + margin + u * (high - low - 2 * margin)


@pytest.mark.parametrize(
    "sim", [PowerSimulator(), ConditionalSphere(), ConditionalSphere(epsilon=0.05),
            Higgs4l(), Higgs4l(cuts=True)], ids=repr
)
def test_truth_level_score_is_the_gradient_of_the_log_likelihood(sim):
    theta = _inside(sim, 40, 0, 1e-3)
    x, t = sim.sample_with_score(theta, rng=1)
    fd = _finite_difference(sim.log_likelihood, x, theta, 1e-5)
    np.testing.assert_allclose(t, fd, rtol=1e-5, atol=1e-6)
    assert np.abs(t).max() > 0.1  # not trivially zero


@pytest.mark.parametrize("cuts", [False, True])
def test_detector_level_score_is_that_of_the_parton_event(cuts):
    sim, parton = Higgs4l(cuts=cuts, smearing=0.02), Higgs4l()
    if cuts:  # a small, cheap S' (the test checks the parton term; S' is checked below)
        sim._norms[("detector", 0.02)] = {"S": parton.S}
    theta = _inside(sim, 30, 0, 1e-3)
    x, z = sim.sample_with_chart(theta, np.random.default_rng(2))
    x2, t = sim.sample_with_score(theta, np.random.default_rng(2))
    np.testing.assert_array_equal(x, x2)
    assert sim.distance_to_manifold(x).min() > 0  # smeared: off the manifold, yet a score
    fd = _finite_difference(parton.log_likelihood, parton.from_chart(z), theta, 1e-5)
    np.testing.assert_allclose(t, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "sim, n", [(PowerSimulator(), 40_000), (ConditionalSphere(), 40_000), (Higgs4l(cuts=True), 20_000)],
    ids=repr,
)
def test_score_has_zero_mean_under_the_model(sim, n):
    """E_{x~p(x|θ)}[∇θ log p(x, z|θ)] = 0: checks the normalisation terms too."""
    theta = _inside(sim, 1, 3, 0.2)
    _, t = sim.sample_with_score(np.repeat(theta, n, 0), rng=4)
    mean, err = t.mean(0), t.std(0) / np.sqrt(n)
    assert np.all(np.abs(mean) < 4 * err), (mean, err)


@pytest.mark.slow
def test_detector_level_score_with_cuts_has_zero_mean():
    """With cuts on smeared events the acceptance normalises the sample (S' by Monte Carlo)."""
    sim = Higgs4l(cuts=True, smearing=0.02)
    theta = np.array([[1.0, -1.5]])
    _, t = sim.sample_with_score(np.repeat(theta, 20_000, 0), rng=5)
    mean, err = t.mean(0), t.std(0) / np.sqrt(len(t))
    assert np.all(np.abs(mean) < 4 * err), (mean, err)


@pytest.mark.parametrize("sim", [PowerSimulator(), ConditionalSphere(epsilon=0.01), Higgs4l()], ids=repr)
def test_simulate_with_score_draws_the_same_events(sim):
    theta, x = sim.simulate(5, rng=7)
    theta2, x2, t = sim.simulate(5, rng=7, score=True)
    np.testing.assert_array_equal(theta, theta2)
    np.testing.assert_array_equal(x, x2)
    assert t.shape == theta.shape and np.isfinite(t).all()


@pytest.mark.parametrize("sim", [Circle(), SphericalGaussian(n=3, epsilon=0.01)], ids=repr)
def test_unconditional_score_is_empty(sim):
    theta, x, t = sim.simulate(4, rng=0, score=True)
    assert theta.shape == t.shape == (4, 0) and x.shape == (4, sim.data_dim)


def test_lorenz_has_no_score():
    with pytest.raises(NotImplementedError, match="no joint score"):
        Lorenz().simulate(2, rng=0, score=True)
