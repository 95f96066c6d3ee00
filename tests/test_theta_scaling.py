"""θ reaches the networks scaled by the prior by default (box: centre and half-width; Gaussian:
mean and std) wherever a model meets its prior; explicit values win; saved models keep the map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sbi.utils import BoxUniform as SbiBoxUniform

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
