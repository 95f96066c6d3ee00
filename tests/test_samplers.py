"""Tempered SMC (``sample_posterior(..., method="smc")``) against analytic posteriors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import N_OBS, SIGMA
from scipy import stats

from mfinfer.inference import (
    LikelihoodEstimator,
    MCMCResult,
    Posterior,
    SMCResult,
    sample_posterior,
    sample_smc,
)
from mfinfer.priors import BoxUniform, Gaussian


def test_smc_matches_analytic_box_prior(gauss1d):
    log_like, prior, x = gauss1d
    res = sample_posterior(log_like, prior, 4000, method="smc", rng=0)
    assert isinstance(res, SMCResult)
    assert res.converged and res.samples.shape == (4000, 1)
    mu, sd = x.mean(), SIGMA / np.sqrt(N_OBS)
    assert abs(res.samples.mean() - mu) < 0.1 * sd
    assert res.samples.std() == pytest.approx(sd, rel=0.05)
    assert stats.kstest(res.samples[:, 0], stats.norm(mu, sd).cdf).pvalue > 0.01
    # Diagnostics: a ladder ending at 1, ESS near the target, final stage well mixed.
    assert res.betas[-1] == 1.0 and np.all(np.diff(res.betas) > 0)
    assert np.all(res.stage_ess[:-1] == pytest.approx(2000, rel=1e-3))
    assert res.final_ess >= 1000 and res.moved_fraction >= 0.95
    assert np.all((res.stage_acceptance > 0.2) & (res.stage_acceptance <= 1))
    assert res.num_evaluations == 4000 * (1 + res.stage_moves.sum())
    # log Z = log ∫ U(θ; ±10) exp(log_like) dθ, analytic for a Gaussian.
    log_z = (np.log(1 / 20) - 0.5 * np.sum((x - mu) ** 2) / SIGMA**2
             + 0.5 * np.log(2 * np.pi * sd**2))
    assert res.log_evidence == pytest.approx(log_z, abs=0.1)
    np.testing.assert_allclose(res.log_prob, log_like(res.samples) + prior.log_prob(res.samples))


def test_smc_gaussian_prior_2d():
    """Conjugate 2-D case: prior N(0, I), x_i ~ N(θ, I): posterior N(Σx/(n+1), I/(n+1))."""
    x = np.random.default_rng(1).normal([1.0, -2.0], 1.0, size=(10, 2))

    def log_like(theta: np.ndarray) -> np.ndarray:
        return -0.5 * np.sum((x[None] - theta[:, None]) ** 2, axis=(1, 2))

    res = sample_smc(log_like, Gaussian((0.0, 0.0), (1.0, 1.0)), 3000, rng=3)
    mean, sd = x.sum(0) / 11, np.sqrt(1 / 11)
    np.testing.assert_allclose(res.samples.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(res.samples.std(0), sd, rtol=0.06)
    for j in range(2):
        assert stats.kstest(res.samples[:, j], stats.norm(mean[j], sd).cdf).pvalue > 0.01
    assert res.converged


def test_smc_seeded_is_reproducible(gauss1d):
    log_like, prior, _ = gauss1d
    a = sample_smc(log_like, prior, 500, rng=7).samples
    b = sample_smc(log_like, prior, 500, rng=7).samples
    np.testing.assert_array_equal(a, b)


def test_smc_more_particles_than_samples(gauss1d):
    log_like, prior, _ = gauss1d
    res = sample_smc(log_like, prior, 300, num_particles=1000, rng=0)
    assert res.samples.shape == (300, 1) and res.num_particles == 1000


def test_smc_warns_when_not_converged(gauss1d):
    log_like, prior, _ = gauss1d
    with pytest.warns(UserWarning, match="not converged"):
        res = sample_smc(log_like, prior, 500, max_stages=1, rng=0)
    assert not res.converged and res.betas[-1] < 1


def test_smc_respects_support():
    """Posterior mass piles up at the box edge: no sample may leave the support."""
    prior = BoxUniform((0.0,), (1.0,))
    res = sample_smc(lambda t: -50.0 * (t[:, 0] - 1.2) ** 2, prior, 1000, rng=0)
    assert prior.contains(res.samples).all()


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"method": "hmc"}, ValueError, "must be one of"),
        ({"method": "smc", "num_walkers": 64}, ValueError,
         "num_walkers: an option of method 'emcee', but method is 'smc'"),
        ({"method": "grid", "num_particles": 100}, ValueError,
         "num_particles: an option of method 'smc', but method is 'grid'"),
        ({"method": "grid", "max_steps": 20000}, ValueError,
         "max_steps: an option of method 'emcee', but method is 'grid'"),
        ({"max_steps": 20001}, ValueError, "max_steps: an option of method 'emcee', but method is 'auto'"),
        ({"method": "grid", "tol": 2.0}, ValueError, r"grid.tol: expected a finite number > 0 and < 1"),
        ({"nonsense": 1}, ValueError, "nonsense: unknown option"),
        ({"method": "smc", "num_particles": 10}, ValueError, "num_particles"),
        ({"method": "smc", "ess_fraction": 1.5}, ValueError, "ess_fraction"),
    ],
)
def test_sample_posterior_bad_options(gauss1d, kwargs, err, match):
    log_like, prior, _ = gauss1d
    with pytest.raises(err, match=match):
        sample_posterior(log_like, prior, 100, rng=0, progress=False, **kwargs)


def test_emcee_on_request(gauss1d):
    log_like, prior, _ = gauss1d
    res = sample_posterior(log_like, prior, 200, rng=0, progress=False, method="emcee")
    assert isinstance(res, MCMCResult)


def test_posterior_from_smc_summary_and_storage(gauss1d, tmp_path):
    log_like, prior, _ = gauss1d
    post = Posterior.from_mcmc(log_like, prior, 500, method="smc", rng=0)
    assert post.mcmc is None and post.smc is not None
    summary = post.summary()
    assert summary["smc"]["converged"] and summary["smc"]["betas"][-1] == 1.0
    loaded = Posterior.load(post.save(tmp_path / "post"))
    np.testing.assert_array_equal(loaded.samples, post.samples)


def test_estimator_build_posterior_smc():
    from mfinfer.models import AmbientFlow

    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, size=(200, 1))
    x = theta + 0.1 * rng.standard_normal((200, 2))
    est = LikelihoodEstimator(AmbientFlow(2, param_dim=1, num_layers=1), BoxUniform((-1,), (1,)))
    post = est.append_simulations(theta, x).build_posterior(method="smc", rng=0)
    res = post.posterior(200, x=x[:5])
    assert res.smc is not None and res.samples.shape == (200, 1)
    assert BoxUniform((-1,), (1,)).contains(res.samples).all()
