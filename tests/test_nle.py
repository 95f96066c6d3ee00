"""sbi's NLE as the baseline (mfinfer.interop.nle): training with sbi's defaults, the likelihood our
samplers use, and the weights-only round trip."""

import numpy as np
import pytest
import torch

from mfinfer.errors import ConfigError
from mfinfer.interop.nle import NLELikelihood, load_nle, save_nle, train_nle
from mfinfer.priors import BoxUniform


@pytest.fixture(scope="module")
def gaussian():
    """x | θ ~ N(θ, 0.1²) in 2-d, θ ~ U(-1, 1)²; a trained NLE."""
    rng = np.random.default_rng(0)
    prior = BoxUniform([-1.0, -1.0], [1.0, 1.0])
    theta = prior.sample(3000, rng)
    x = theta + 0.1 * rng.standard_normal(theta.shape)
    estimator, info = train_nle(theta, x, prior, seed=0, max_epochs=30)
    return prior, theta, x, estimator, info


def test_nle_likelihood_peaks_at_the_analytic_posterior_mode(gaussian):
    *_, estimator, info = gaussian
    assert info["epochs"] >= 2 and np.isfinite(info["best_validation_loss"])
    x_obs = np.array([0.3, -0.4]) + 0.1 * np.random.default_rng(1).standard_normal((20, 2))
    like = NLELikelihood(estimator, x_obs, chunk=50)  # several chunks
    g = np.linspace(-0.8, 0.8, 33)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    values = like(grid)
    assert values.shape == (len(grid),)
    # the exact posterior's mode is the events' mean (flat prior); one grid step is 0.05
    assert np.abs(grid[np.argmax(values)] - x_obs.mean(0)).max() < 0.11
    # the sum over events of the estimator's log-density
    with torch.no_grad():
        one = estimator.log_prob(torch.as_tensor(x_obs, dtype=torch.float32)[:, None, :],
                                 condition=torch.as_tensor(grid[:1], dtype=torch.float32))
    assert values[0] == pytest.approx(float(one.sum()), rel=1e-5)


def test_nle_round_trip_is_exact_and_refuses_other_data(gaussian, tmp_path):
    _, theta, x, estimator, info = gaussian
    save_nle(estimator, info, tmp_path)
    loaded, info2 = load_nle(tmp_path, theta, x)
    assert info2 == info
    x_obs = x[:7]
    t = theta[:3]
    assert np.array_equal(NLELikelihood(loaded, x_obs)(t), NLELikelihood(estimator, x_obs)(t))
    with pytest.raises(ConfigError, match="other simulations"):
        load_nle(tmp_path, theta, x + 1.0)
