"""θ reaches the networks scaled by the prior by default (box: centre and half-width; Gaussian:
mean and std) wherever a model meets its prior; explicit values win; saved models keep the map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sbi.utils import BoxUniform as SbiBoxUniform
from torch.distributions import MultivariateNormal

from mfinfer import AmbientFlow, FOMFlow, LikelihoodEstimator, get_simulator, load_model, save_model
from mfinfer.models import build_model, model_options, prior_theta_map
from mfinfer.priors import Gaussian

SMALL = {"hidden_features": 8, "num_blocks": 1, "num_bins": 4}


def _data(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    theta = rng.uniform([0.0, 10.0], [2.0, 30.0], size=(n, 2))
    return theta, theta / [1.0, 10.0] + rng.normal(size=(n, 2))


def test_estimator_scales_theta_by_the_prior_and_save_load_keeps_it(tmp_path) -> None:
    theta, x = _data()
    model = AmbientFlow(2, param_dim=2, num_layers=1, **SMALL)
    assert not model.has_theta_map
    est = LikelihoodEstimator(model, SbiBoxUniform(torch.tensor([0.0, 10.0]), torch.tensor([2.0, 30.0])))
    est.append_simulations(theta, x).train(epochs=1, batch_size=50)
    assert model.config["theta_loc"] == [1.0, 20.0] and model.config["theta_scale"] == [1.0, 10.0]
    # the networks see (θ − loc) / scale: the same log p as feeding scaled θ to an unscaled copy
    bare = AmbientFlow(2, param_dim=2, num_layers=1, **SMALL)
    bare.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("theta_")})
    scaled = (theta[:5] - [1.0, 20.0]) / [1.0, 10.0]
    torch.testing.assert_close(model.log_prob(x[:5], theta[:5]), bare.log_prob(x[:5], scaled))
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.config["theta_scale"] == [1.0, 10.0]
    torch.testing.assert_close(back.log_prob(x[:5], theta[:5]), model.log_prob(x[:5], theta[:5]))


def test_explicit_map_wins_and_gaussian_prior_gives_mean_and_std() -> None:
    theta, x = _data(100)
    model = AmbientFlow(2, param_dim=2, num_layers=1, theta_loc=[0.0, 0.0], theta_scale=[1.0, 1.0],
                        **SMALL)
    prior = Gaussian(loc=[1.0, 20.0], scale=[3.0, 30.0])
    LikelihoodEstimator(model, prior).append_simulations(theta, x).train(epochs=1, batch_size=50)
    assert model.config["theta_scale"] == [1.0, 1.0]
    assert prior_theta_map(prior) == {"theta_loc": [1.0, 20.0], "theta_scale": [3.0, 30.0]}


def test_build_model_default_and_unchanged_keys_where_the_map_is_the_identity() -> None:
    higgs, power = get_simulator("higgs4l"), get_simulator("power")
    model = build_model("AmbientFlow", higgs, num_layers=1, **SMALL)
    assert model.config["theta_loc"] == [0.0, 0.0] and model.config["theta_scale"] == [2.0, 3.0]
    explicit = {"num_layers": 1, "theta_loc": [1.0, 1.0], "theta_scale": [5.0, 5.0]}
    assert model_options(higgs, explicit) == explicit
    # power's prior is U(-1, 1): the map would be the identity, so the options (and the pipeline's
    # cache keys, which hash them) stay as they were
    assert model_options(power, {"num_layers": 1}) == {"num_layers": 1}
    fom = build_model("FOMFlow", get_simulator("conditional_sphere"), inner_layers=1, **SMALL)
    assert not fom.has_theta_map  # conditional_sphere's prior is U(-1, 1)^2 too


def test_fom_flow_keeps_its_map_and_old_saves_load_identically(tmp_path) -> None:
    chart = get_simulator("conditional_sphere")
    fom = FOMFlow(chart, param_dim=2, inner_layers=1, theta_loc=[0.5, 0.5], theta_scale=[2.0, 2.0],
                  **SMALL)
    save_model(fom, tmp_path / "fom")
    assert load_model(tmp_path / "fom").config["theta_scale"] == [2.0, 2.0]
    old = AmbientFlow(2, param_dim=2, num_layers=1, **SMALL)  # as saved before the default existed
    save_model(old, tmp_path / "old")
    back = load_model(tmp_path / "old")
    assert not back.has_theta_map and "theta_loc" not in back.state_dict()
    theta, x = _data(5)
    torch.testing.assert_close(back.log_prob(x, theta), old.log_prob(x, theta))


def test_set_theta_map_follows_the_model_dtype() -> None:
    model = AmbientFlow(2, param_dim=1, num_layers=1, **SMALL).double()
    model.set_theta_map([1.0], [2.0])
    assert model.theta_loc.dtype == torch.float64
    with pytest.raises(ValueError, match="theta_scale"):
        model.set_theta_map([1.0], [0.0])


@pytest.mark.parametrize("prior, loc, scale", [
    (SbiBoxUniform(torch.tensor([40.0, -30.0]), torch.tensor([60.0, -10.0])), [50.0, -20.0],
     [10.0, 10.0]),
    (MultivariateNormal(torch.tensor([50.0, -20.0]), torch.tensor([[100.0, 30.0], [30.0, 25.0]])),
     [50.0, -20.0], [10.0, 5.0]),
], ids=["sbi-BoxUniform", "torch-MultivariateNormal"])
def test_sbi_and_torch_priors_passed_unchanged_give_the_theta_map(prior, loc, scale) -> None:
    theta = prior.sample((100,)).double().numpy()
    x = theta + np.random.default_rng(0).normal(size=theta.shape)
    model = AmbientFlow(2, param_dim=2, num_layers=1, **SMALL)
    LikelihoodEstimator(model, prior).append_simulations(theta, x).train(epochs=1, batch_size=50)
    np.testing.assert_allclose(model.config["theta_loc"], loc, rtol=1e-6)
    np.testing.assert_allclose(model.config["theta_scale"], scale, rtol=1e-6)


def test_default_scaling_recovers_the_conjugate_posterior_far_from_the_unit_scale() -> None:
    """θ ~ N(μ₀, diag s₀²) with μ₀ = (50, −20), s₀ = (10, 5), and x = θ + σ ε with σ = s₀ / 10: the
    posterior of n events is Gaussian with precision 1/s₀² + n/σ² and mean (μ₀/s₀² + Σx/σ²) /
    precision. An AF trained through the estimator with the default θ map (4000 simulations, 20
    epochs) and sampled by the default method gets, per coordinate, its mean within 0.6 exact std
    and its std within a factor 1.5 of the exact ones.

    Measured on 5 data sets x 2 seeds: with the map |Δmean| ≤ 0.46 std and std ratios 0.98-1.43
    (all pass; this seed: 0.12/0.18 and 1.08/1.06); with θ unscaled (``theta_loc=[0, 0],
    theta_scale=[1, 1]``) 9 of 10 fail, std ratios up to 13 and |Δmean| up to 2.8 std (this seed:
    std ratio 13.0 and 1.5).
    """
    loc, s0 = np.array([50.0, -20.0]), np.array([10.0, 5.0])
    sigma, n_obs = s0 / 10, 5
    prior = Gaussian(loc=loc, scale=s0)
    rng = np.random.default_rng(0)
    theta = prior.sample(4000, rng=rng)
    x = theta + sigma * rng.standard_normal(theta.shape)
    x_obs = np.array([56.0, -17.0]) + sigma * rng.standard_normal((n_obs, 2))
    precision = 1 / s0**2 + n_obs / sigma**2
    mean, std = (loc / s0**2 + x_obs.sum(0) / sigma**2) / precision, precision**-0.5

    model = AmbientFlow(2, param_dim=2, num_layers=2, hidden_features=32)
    estimator = LikelihoodEstimator(model, prior).append_simulations(theta, x)
    samples = estimator.train(epochs=20, progress=False).build_posterior(rng=0).sample(1000, x=x_obs)

    assert np.all(np.abs(samples.mean(0) - mean) < 0.6 * std), (samples.mean(0), mean, std)
    assert np.all(np.abs(np.log(samples.std(0) / std)) < np.log(1.5)), (samples.std(0), std)
    assert model.config["theta_loc"] == loc.tolist() and model.config["theta_scale"] == s0.tolist()
