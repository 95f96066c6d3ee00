"""The adaptive grid sampler (``sample_posterior(..., method="grid")``) against analytic posteriors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import N_OBS, SIGMA
from scipy import stats

from mfinfer.inference import GridResult, LikelihoodEstimator, Posterior, sample_grid, sample_posterior
from mfinfer.priors import BoxUniform, Gaussian


def test_grid_matches_analytic_box_prior(gauss1d):
    """Posterior ~ N(mean x, σ²/n), a 60th of the box: the grid must zoom in and resolve it."""
    log_like, prior, x = gauss1d
    res = sample_posterior(log_like, prior, 20_000, method="grid", rng=0)
    assert isinstance(res, GridResult) and res.converged and res.samples.shape == (20_000, 1)
    mu, sd = x.mean(), SIGMA / np.sqrt(N_OBS)
    assert abs(res.samples.mean() - mu) < 0.05 * sd
    assert res.samples.std() == pytest.approx(sd, rel=0.02)
    assert stats.kstest(res.samples[:, 0], stats.norm(mu, sd).cdf).pvalue > 0.01
    log_z = (np.log(1 / 20) - 0.5 * np.sum((x - mu) ** 2) / SIGMA**2
             + 0.5 * np.log(2 * np.pi * sd**2))
    assert res.log_evidence == pytest.approx(log_z, abs=0.01)
    assert res.error <= 0.01 and res.resolution >= 8 and res.check_ess > 0.99
    assert res.num_evaluations < 1000


def test_grid_cost_does_not_grow_with_samples(gauss1d):
    log_like, prior, _ = gauss1d
    calls: list[int] = []

    def counted(theta: np.ndarray) -> np.ndarray:
        calls.append(len(theta))
        return log_like(theta)

    small = sample_grid(counted, prior, 100, rng=0)
    n_small = len(calls)
    large = sample_grid(counted, prior, 50_000, rng=0)
    assert small.num_evaluations == large.num_evaluations == sum(calls) // 2
    assert len(calls) == 2 * n_small == 2 * (small.rounds + 2)  # one call per round


def test_grid_correlated_2d():
    cov = np.array([[0.04, 0.03], [0.03, 0.09]])
    mean = np.array([0.1, -0.2])
    prec = np.linalg.inv(cov)

    def log_like(t: np.ndarray) -> np.ndarray:
        d = t - mean
        return -0.5 * np.einsum("ni,ij,nj->n", d, prec, d)

    res = sample_grid(log_like, BoxUniform((-2.0, -2.0), (2.0, 2.0)), 20_000, rng=1)
    assert res.converged
    np.testing.assert_allclose(res.samples.mean(0), mean, atol=0.01)
    np.testing.assert_allclose(np.cov(res.samples.T), cov, atol=0.004)
    log_z = np.log(2 * np.pi * np.sqrt(np.linalg.det(cov)) / 16)
    assert res.log_evidence == pytest.approx(log_z, abs=0.01)


def test_grid_gaussian_prior_truncation():
    """Conjugate 2-D case with an unbounded prior: the grid covers its range of draws."""
    x = np.random.default_rng(1).normal([1.0, -2.0], 1.0, size=(10, 2))

    def log_like(theta: np.ndarray) -> np.ndarray:
        return -0.5 * np.sum((x[None] - theta[:, None]) ** 2, axis=(1, 2))

    res = sample_grid(log_like, Gaussian((0.0, 0.0), (1.0, 1.0)), 10_000, rng=3)
    mean, sd = x.sum(0) / 11, np.sqrt(1 / 11)
    np.testing.assert_allclose(res.samples.mean(0), mean, atol=0.015)
    np.testing.assert_allclose(res.samples.std(0), sd, rtol=0.03)
    assert res.converged and res.boundary_mass < 1e-6


def test_grid_flags_mass_at_a_truncated_edge():
    """A likelihood that pushes far into the prior's tail: the truncation must be reported."""
    with pytest.warns(UserWarning, match="truncated edge"):
        res = sample_grid(lambda t: 10.0 * t[:, 0], Gaussian((0.0,), (1.0,)), 100, rng=0)
    assert not res.converged and res.boundary_mass > 1e-3


def test_grid_bimodal_weights():
    """Two separated modes with weights 0.3 / 0.7."""
    def log_like(t: np.ndarray) -> np.ndarray:
        a = np.log(0.3) + stats.norm(-0.5, 0.05).logpdf(t[:, 0])
        b = np.log(0.7) + stats.norm(0.4, 0.08).logpdf(t[:, 0])
        return np.logaddexp(a, b)

    res = sample_grid(log_like, BoxUniform((-1.0,), (1.0,)), 20_000, rng=2)
    assert res.converged
    assert np.mean(res.samples[:, 0] < 0) == pytest.approx(0.3, abs=0.015)
    right = res.samples[res.samples[:, 0] > 0, 0]
    assert right.std() == pytest.approx(0.08, rel=0.03)


def test_grid_respects_support_and_edge_shape():
    """Mass piles up at the box edge: samples follow the truncated normal, inside the box."""
    prior = BoxUniform((0.0,), (1.0,))
    res = sample_grid(lambda t: -50.0 * (t[:, 0] - 1.2) ** 2, prior, 5000, rng=0)
    assert prior.contains(res.samples).all()
    sd = np.sqrt(1 / 100)
    trunc = stats.truncnorm((0 - 1.2) / sd, (1 - 1.2) / sd, loc=1.2, scale=sd)
    assert stats.kstest(res.samples[:, 0], trunc.cdf).pvalue > 0.01


def test_grid_seeded_is_reproducible(gauss1d):
    log_like, prior, _ = gauss1d
    np.testing.assert_array_equal(sample_grid(log_like, prior, 300, rng=5).samples,
                                  sample_grid(log_like, prior, 300, rng=5).samples)


def test_grid_warns_when_budget_is_exhausted(gauss1d):
    log_like, prior, _ = gauss1d
    with pytest.warns(UserWarning, match="not converged"):
        res = sample_grid(log_like, prior, 100, max_evaluations=70, rng=0)
    assert not res.converged and res.num_evaluations <= 70 + 256


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial_cells": 1}, "initial_cells"),
        ({"tol": 0.0}, "tol"),
        ({"resolution": -1.0}, "resolution"),
    ],
)
def test_grid_bad_options(gauss1d, kwargs, match):
    log_like, prior, _ = gauss1d
    with pytest.raises(ValueError, match=match):
        sample_grid(log_like, prior, 100, **kwargs)


def test_grid_refuses_many_parameters():
    with pytest.raises(ValueError, match="p <= 3"):
        sample_grid(lambda t: np.zeros(len(t)), BoxUniform((0.0,) * 4, (1.0,) * 4), 10)


def test_grid_rejects_emcee_options(gauss1d):
    log_like, prior, _ = gauss1d
    with pytest.raises(ValueError, match="num_walkers: an option of method 'emcee', but method is 'grid'"):
        sample_posterior(log_like, prior, 100, method="grid", num_walkers=8)


def test_posterior_from_grid_summary_and_storage(gauss1d, tmp_path):
    log_like, prior, _ = gauss1d
    post = Posterior.from_mcmc(log_like, prior, 500, method="grid", rng=0)
    assert post.grid is not None and post.mcmc is None and post.log_probs is None
    assert post.summary()["grid"]["converged"]
    loaded = Posterior.load(post.save(tmp_path / "post"))
    np.testing.assert_array_equal(loaded.samples, post.samples)
    assert post.map() == pytest.approx(post.mean, abs=0.05)


def test_estimator_build_posterior_grid():
    from mfinfer.models import AmbientFlow

    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, size=(200, 1))
    x = theta + 0.1 * rng.standard_normal((200, 2))
    est = LikelihoodEstimator(AmbientFlow(2, param_dim=1, num_layers=1), BoxUniform((-1,), (1,)))
    post = est.append_simulations(theta, x).build_posterior(method="grid", rng=0)
    res = post.posterior(200, x=x[:5])
    assert res.grid is not None and res.samples.shape == (200, 1)


def test_grid_error_control_alone(gauss1d):
    """Without the resolution target, the quadrature error estimate alone must refine the grid."""
    log_like, prior, x = gauss1d
    res = sample_grid(log_like, prior, 10_000, resolution=1e-3, initial_cells=16, rng=0)
    mu, sd = x.mean(), SIGMA / np.sqrt(N_OBS)
    log_z = (np.log(1 / 20) - 0.5 * np.sum((x - mu) ** 2) / SIGMA**2
             + 0.5 * np.log(2 * np.pi * sd**2))
    assert res.converged and res.error <= 0.01
    assert res.log_evidence == pytest.approx(log_z, abs=0.02)
    assert res.samples.std() == pytest.approx(sd, rel=0.05)
