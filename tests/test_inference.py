"""Inference over i.i.d. events: cached = uncached likelihood, the true posterior, sbi-style API, bad input."""

import numpy as np
import pytest
import torch

from mfinfer.inference import LikelihoodEstimator, ModelLikelihood, SimulatorLikelihood, sample_posterior
from mfinfer.models import AmbientFlow, ManifoldFlow
from simulators import get_simulator

SMALL = dict(hidden_features=16, num_blocks=1)


@pytest.fixture(scope="module")
def power():
    return get_simulator("power")


@pytest.mark.parametrize("encoder", [False, True])
def test_cached_projection_equals_uncached(power, encoder):
    model = ManifoldFlow(3, 2, param_dim=1, encoder=encoder, outer_layers=2, inner_layers=2, **SMALL).double()
    x = power.sample(np.zeros((20, 1)), rng=1)
    theta = np.linspace(-1, 1, 7)[:, None]
    cached, direct = ModelLikelihood(model, x, cache=True), ModelLikelihood(model, x, cache=False)
    assert cached.cached and not direct.cached
    np.testing.assert_allclose(cached(theta), direct(theta), atol=1e-6, rtol=0)
    per_event = model.log_prob(torch.as_tensor(x), torch.full((20, 1), 0.5)).sum().item()
    assert cached(np.array([[0.5]]))[0] == pytest.approx(per_event, abs=1e-6)


def test_conditional_manifold_is_evaluated_per_theta(power):
    model = ManifoldFlow(3, 2, param_dim=1, conditional_manifold=True, outer_layers=1, inner_layers=1, **SMALL)
    like = ModelLikelihood(model.double(), power.sample(np.zeros((5, 1)), rng=0))
    assert not like.cached
    assert like(np.array([[0.0], [0.3]])).shape == (2,)


def test_true_posterior_concentrates_with_more_events(power):
    widths, errors = [], []
    for n in (5, 40, 200):
        x = power.sample(np.zeros((n, 1)), rng=n)
        res = sample_posterior(SimulatorLikelihood(power, x), power.prior, 2000, rng=0, progress=False)
        widths.append(res.samples.std())
        errors.append(abs(res.samples.mean()))
    assert widths[0] > widths[1] > widths[2]
    assert errors[2] < 3 * widths[2]


def test_estimator_chain_runs(power):
    theta, x = power.simulate(400, rng=0)
    est = LikelihoodEstimator(model=AmbientFlow(3, param_dim=1, num_layers=1, **SMALL), prior=power.prior)
    posterior = est.append_simulations(theta, x).train(epochs=1, progress=False).build_posterior(progress=False,
                                                                                                  rng=0)
    samples = posterior.sample(200, x=power.sample(np.zeros((10, 1)), rng=2))
    assert samples.shape == (200, 1)
    assert power.prior.contains(samples).all()
    with pytest.raises(ValueError, match="no observed events"):
        posterior.sample(10)


def test_bad_observed_events(power):
    model = ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL)
    x = power.sample(np.zeros((4, 1)), rng=0)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="1 event.* contain NaN"):
        ModelLikelihood(model, bad)
    with pytest.raises(ValueError, match=r"expected shape \(n, 3\), got \(4, 2\)"):
        ModelLikelihood(model, x[:, :2])
    with pytest.raises(ValueError, match="empty"):
        ModelLikelihood(model, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="outside the prior"):
        power.sample(np.array([[2.0]]), rng=0)
    est = LikelihoodEstimator(model=model, prior=power.prior)
    with pytest.raises(ValueError, match="outside the prior"):
        est.append_simulations(np.array([[1.5]]), x[:1])
