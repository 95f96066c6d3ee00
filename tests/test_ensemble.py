"""Ensembles (mixture of the members' likelihoods per event), train_ensemble, and the config's
``ensemble: K`` and ``train: {score_weight}`` through a tiny pipeline run."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mfinfer.config import ModelConfig, load_config
from mfinfer.errors import ConfigError, InputError
from mfinfer.inference import ModelLikelihood
from mfinfer.inference.spec import PosteriorSpec
from mfinfer.models import AmbientFlow, Ensemble, ManifoldFlow, load_model, save_model
from mfinfer.pipeline import Run
from mfinfer.training import TrainConfig, train, train_ensemble
from simulators.power import PowerSimulator

SMALL = {"hidden_features": 8, "num_blocks": 1, "num_bins": 4}
TINY = Path(__file__).parent / "configs" / "tiny.yaml"


def _members(k: int = 3) -> list[ManifoldFlow]:
    torch.manual_seed(0)
    return [ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL) for _ in range(k)]


def test_log_prob_is_the_per_event_mixture_of_the_members():
    members = _members()
    ens = Ensemble(members)
    theta, x = PowerSimulator().simulate(50, rng=0)
    lp = np.stack([m.log_prob(x, theta).numpy() for m in members])
    got = ens.log_prob(x, theta).numpy()
    np.testing.assert_allclose(got, np.log(np.exp(lp).mean(0)), rtol=1e-5, atol=1e-5)
    # a mixture: between the worst and the best member per event, above the mean log p (Jensen)
    assert np.all(got <= lp.max(0) + 1e-5) and np.all(got >= lp.min(0) - 1e-5)
    assert np.all(got >= lp.mean(0) - 1e-5)
    # the likelihood of i.i.d. events multiplies the per-event mixtures
    like = ModelLikelihood(ens, x[:10])
    grid = np.array([[-0.5], [0.0], [0.5]])
    want = [float(ens.log_prob(x[:10], np.repeat(g[None], 10, 0)).sum()) for g in grid]
    np.testing.assert_allclose(like(grid), want, rtol=1e-5)


def test_sample_save_load_and_bad_members(tmp_path):
    ens = Ensemble(_members(2))
    x = ens.sample(40, np.array([0.3]), generator=torch.Generator().manual_seed(1))
    assert x.shape == (40, 3) and torch.isfinite(x).all()
    assert float(ens.reconstruction_error(x).max()) < 1e-3 + float(
        torch.stack([m.reconstruction_error(x) for m in ens.members]).max())
    back = load_model(save_model(ens, tmp_path / "ens"))
    assert isinstance(back, Ensemble) and back.size == 2
    torch.testing.assert_close(back.log_prob(x, np.array([0.3])), ens.log_prob(x, np.array([0.3])))
    with pytest.raises(InputError, match="equal"):
        Ensemble([AmbientFlow(3, param_dim=1, num_layers=1, **SMALL),
                  AmbientFlow(2, param_dim=1, num_layers=1, **SMALL)])
    with pytest.raises(InputError, match="non-empty"):
        Ensemble([])


def test_train_ensemble_members_differ_and_member_zero_is_the_single_model():
    theta, x = PowerSimulator().simulate(120, rng=0)
    cfg = TrainConfig(epochs=1, progress=False)

    def build():
        return AmbientFlow(3, param_dim=1, num_layers=1, **SMALL)

    single, _ = train_ensemble(build, 1, x, theta, cfg, init_seed=5)
    torch.manual_seed(5)
    plain = build()
    train(plain, x, theta, cfg)
    for a, b in zip(single.state_dict().values(), plain.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    ens, hist2 = train_ensemble(build, 2, x, theta, cfg, init_seed=5)
    assert isinstance(ens, Ensemble) and {r["member"] for r in hist2} == {0, 1}
    w0, w1 = (list(m.state_dict().values()) for m in ens.members)
    for a, b in zip(w0, single.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(w0, w1, strict=True))
    with pytest.raises(ConfigError, match="train_ensemble"):
        train(ens, x, theta, cfg)


@pytest.mark.filterwarnings("ignore:sample_:UserWarning")  # short chains on purpose
def test_config_ensemble_and_score_weight_train_in_a_tiny_pipeline(tmp_path):
    cfg = load_config(TINY)
    model = ModelConfig(name="MF-ens", kind="ManifoldFlow", ensemble=2,
                        options={"outer_layers": 1, "inner_layers": 1, "hidden_features": 8, "num_blocks": 1},
                        train={"schedule": "sequential", "epochs": 2, "score_weight": 1.0})
    spec = PosteriorSpec.from_options(method="emcee", num_samples=100, num_walkers=8, max_steps=200)
    cfg = dataclasses.replace(cfg, models=[model], truth=False, posterior=spec, output_dir=str(tmp_path))
    run = Run(cfg, 0, progress=False)
    run.simulate()
    data = np.load(run.data_path(None))
    assert data["score"].shape == data["theta"].shape  # stored because a model trains on it
    run.run(("train", "infer"))
    loaded = run.load(model)
    assert isinstance(loaded, Ensemble) and loaded.size == 2
    assert (run.model_dir(model) / "member_1" / "train_config.json").is_file()
    with pytest.raises(ConfigError, match="ensemble"):
        ModelConfig(name="bad", kind="AmbientFlow", ensemble=0)
    assert math.isfinite(float(loaded.log_prob(data["x"][:5], data["theta"][:5]).sum()))
