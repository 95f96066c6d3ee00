"""Inference over i.i.d. events: cached = uncached likelihood, the true posterior, the sbi-style
API, the estimator's likelihood cache, bad input."""

import numpy as np
import pytest
import torch

from mfinfer.errors import InputError
from mfinfer.inference import (
    LikelihoodEstimator,
    ModelLikelihood,
    SimulatorLikelihood,
    projection_errors,
    sample_posterior,
)
from mfinfer.models import AmbientFlow, ManifoldFlow
from mfinfer.registry import get_simulator

SMALL = dict(hidden_features=16, num_blocks=1)


@pytest.fixture(scope="module")
def power():
    return get_simulator("power")


@pytest.mark.parametrize("encoder", [False, True])
def test_cached_projection_equals_uncached(power, encoder):
    model = ManifoldFlow(3, 2, param_dim=1, encoder=encoder, outer_layers=2, inner_layers=2,
                         **SMALL).double()
    x = power.sample(np.zeros((20, 1)), rng=1)
    theta = np.linspace(-1, 1, 7)[:, None]
    cached, direct = ModelLikelihood(model, x, cache=True), ModelLikelihood(model, x, cache=False)
    assert cached.cached and not direct.cached
    np.testing.assert_allclose(cached(theta), direct(theta), atol=1e-6, rtol=0)
    per_event = model.log_prob(torch.as_tensor(x), torch.full((20, 1), 0.5)).sum().item()
    assert cached(np.array([[0.5]]))[0] == pytest.approx(per_event, abs=1e-6)


def test_conditional_manifold_is_evaluated_per_theta(power):
    model = ManifoldFlow(3, 2, param_dim=1, conditional_manifold=True, outer_layers=1,
                         inner_layers=1, **SMALL)
    like = ModelLikelihood(model.double(), power.sample(np.zeros((5, 1)), rng=0))
    assert not like.cached
    assert like(np.array([[0.0], [0.3]])).shape == (2,)


def test_true_posterior_concentrates_with_more_events(power):
    widths, errors = [], []
    for n in (5, 40, 200):
        x = power.sample(np.zeros((n, 1)), rng=n)
        like = SimulatorLikelihood(power, x)
        res = sample_posterior(like, power.prior, 2000, rng=0, progress=False)
        widths.append(res.samples.std())
        errors.append(abs(res.samples.mean()))
    assert widths[0] > widths[1] > widths[2]
    assert errors[2] < 3 * widths[2]


def test_estimator_chain_runs(power):
    theta, x = power.simulate(400, rng=0)
    model = AmbientFlow(3, param_dim=1, num_layers=1, **SMALL)
    est = LikelihoodEstimator(model=model, prior=power.prior).append_simulations(theta, x)
    posterior = est.train(epochs=1, progress=False).build_posterior(progress=False, rng=0)
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
    with pytest.raises(ValueError, match=r"1 event.* contain NaN"):
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


def test_likelihood_posterior_builds_the_likelihood_once_per_x(power, monkeypatch):
    import mfinfer.inference.estimator as estimator_module

    model = ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL).double()
    builds = []

    class CountingLikelihood(ModelLikelihood):
        def __init__(self, *args, **kwargs):
            builds.append(args[1])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(estimator_module, "ModelLikelihood", CountingLikelihood)
    posterior = LikelihoodEstimator(model, power.prior).build_posterior()
    x1, x2 = power.sample(np.zeros((6, 1)), rng=0), power.sample(np.full((6, 1), 0.5), rng=1)
    theta = np.array([[-0.5], [0.0], [0.4], [3.0]])

    def direct(x):
        lp = power.prior.log_prob(theta)
        lp[:3] += ModelLikelihood(model, x)(theta[:3])
        return lp

    first = posterior.log_prob(theta, x=x1)
    np.testing.assert_array_equal(posterior.log_prob(theta, x=x1.copy()), first)
    assert len(builds) == 1
    np.testing.assert_array_equal(first, direct(x1))
    assert first[3] == -np.inf
    other = posterior.log_prob(theta, x=x2)
    assert len(builds) == 2
    np.testing.assert_array_equal(other, direct(x2))
    assert not np.allclose(other[:3], first[:3])
    np.testing.assert_array_equal(posterior.set_default_x(x1).log_prob(theta), first)
    assert len(builds) == 2  # x1 is still cached
    # new weights (e.g. more training) give a new likelihood, not the stale projection
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    np.testing.assert_array_equal(posterior.log_prob(theta, x=x1), direct(x1))
    assert len(builds) == 3


def test_append_simulations_checks_against_the_model(power):
    model = AmbientFlow(3, param_dim=1, num_layers=1, **SMALL)
    est = LikelihoodEstimator(model=model, prior=power.prior)
    theta, x = power.simulate(5, rng=0)
    with pytest.raises(InputError, match=r"x: expected shape \(n, 3\), got \(5, 2\)"):
        est.append_simulations(theta, x[:, :2])
    with pytest.raises(InputError, match=r"theta: expected shape \(n, 1\), got \(5, 2\)"):
        est.append_simulations(np.hstack([theta, theta]), x)
    bad = x.copy()
    bad[1, 0] = np.inf
    with pytest.raises(InputError, match="x: 1 of 5 row"):
        est.append_simulations(theta, bad)
    with pytest.raises(InputError, match="same number of rows"):
        est.append_simulations(theta[:4], x)
    with pytest.raises(InputError, match="outside the prior"):
        est.append_simulations(np.full((5, 1), 1.5), x)
    assert not est._x  # nothing was appended by the failed calls
    assert est.append_simulations(theta, x) is est and len(est._x) == 1


def test_likelihood_uses_model_capabilities(power):
    mflow = ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL)
    af = AmbientFlow(3, param_dim=1, num_layers=1, **SMALL)
    x = power.sample(np.zeros((8, 1)), rng=3)
    assert ModelLikelihood(mflow, x).cached == mflow.caches_projection
    assert not ModelLikelihood(mflow, x, mode="pie").cached
    assert not ModelLikelihood(af, x).cached
    rec = projection_errors(mflow, x)
    expected = (mflow.project(x) - torch.as_tensor(x, dtype=torch.float32)).norm(dim=1).numpy()
    assert rec.shape == (8,) and np.array_equal(rec, expected) and rec.max() > 0
    np.testing.assert_array_equal(projection_errors(af, x), np.zeros(8))
    with pytest.raises(InputError, match="mode: must be one of"):
        ModelLikelihood(mflow, x, mode="ambient")
    with pytest.raises(InputError, match="mode"):  # the AF has only its own density
        ModelLikelihood(af, x, mode="pie")(np.zeros((1, 1)))
