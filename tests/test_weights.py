"""Event weights in training: the weighted mean loss in every schedule, negative weights, the
weighted validation loss, the run identity, the estimator's ``append_simulations(..., weights=)``,
and a toy where weighted training matches training on the reweighted distribution."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mfinfer import AmbientFlow, BoxUniform, FOMFlow, LikelihoodEstimator, ManifoldFlow, get_simulator
from mfinfer.caching import array_digest
from mfinfer.errors import ConfigError, InputError
from mfinfer.training import PHASES, TrainConfig, train
from mfinfer.training.data import split

SMALL = {"hidden_features": 16, "num_blocks": 1, "num_bins": 6}


def _fit(x, weights=None, seed=0, epochs=8) -> AmbientFlow:
    torch.manual_seed(seed)
    model = AmbientFlow(2, num_layers=2, **SMALL)
    train(model, x, config=TrainConfig(epochs=epochs, batch_size=200, lr=5e-3, patience=None, progress=False),
          weights=weights)
    return model.eval()


def test_weighted_training_matches_training_on_the_reweighted_distribution():
    """x ~ N(0, I) with weights w(x) = N(x; a, I) / N(x; 0, I) describes N(a, I). A flow trained on
    the weighted sample must fit N(a, I) as well as one trained on an unweighted N(a, I) sample
    (test NLL within the training noise, ~0.05 nats here), while ignoring the weights costs
    KL = |a|²/2 = 0.33 nats; with 20 % negative weights (same mean) too."""
    a = np.array([0.7, -0.4])
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(2000, 2))
    w = np.exp(x0 @ a - a @ a / 2)
    sign = np.where(rng.uniform(size=len(w)) < 0.8, 1.0, -1.0)  # E[sign] = 0.6
    test = rng.normal(size=(20000, 2)) + a

    def nll(model: AmbientFlow) -> float:
        return float(-model.log_prob(test).mean())

    reference = nll(_fit(rng.normal(size=(2000, 2)) + a))
    weighted, negative = nll(_fit(x0, w)), nll(_fit(x0, w * sign / 0.6))
    ignored = nll(_fit(x0))
    entropy = 1 + np.log(2 * np.pi)  # of N(a, I) in 2-d: the best possible test NLL
    assert entropy - 0.01 < reference < entropy + 0.05
    assert abs(weighted - reference) < 0.1, (weighted, reference)
    assert abs(negative - reference) < 0.12, (negative, reference)
    assert ignored - reference > 0.25, (ignored, reference)


def test_weighted_loss_is_the_mean_over_duplicated_events_in_every_phase():
    """Integer weights k_i: the weighted loss of every phase equals its plain loss on the batch with
    row i repeated k_i times; all-one weights give the plain loss (the M phase through project)."""
    sim = get_simulator("power")
    theta, x = sim.simulate(12, rng=0)
    x, theta = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(theta, dtype=torch.float32)
    k = torch.tensor([1, 2, 3, 1, 1, 2, 1, 4, 1, 1, 2, 1], dtype=torch.float32)
    rep = torch.repeat_interleave(torch.arange(12), k.long())
    torch.manual_seed(0)
    mflow = ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL)
    mflow.fit_standardization(x)
    af = AmbientFlow(3, param_dim=1, num_layers=1, **SMALL)
    cases = (("nll", af), ("pie", mflow), ("M", mflow), ("D", mflow), ("S", mflow), ("nll", mflow))
    for name, model in cases:
        loss = PHASES[name].loss
        with torch.no_grad():
            plain = loss(model, x, theta, 10.0)
            ones = loss(model, x, theta, 10.0, weights=torch.ones(12))
            weighted = loss(model, x, theta, 10.0, weights=k / k.mean())
            duplicated = loss(model, x[rep], theta[rep], 10.0)
        torch.testing.assert_close(ones, plain, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(weighted, duplicated, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("schedule", ["pie", "sequential", "alternating", "simultaneous"])
def test_every_schedule_trains_with_weights(schedule):
    sim = get_simulator("power")
    theta, x = sim.simulate(300, rng=0)
    w = np.random.default_rng(1).uniform(-0.5, 2.0, len(x))
    torch.manual_seed(0)
    model = ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL)
    history = train(model, x, theta, TrainConfig(schedule=schedule, epochs=2, batch_size=100, progress=False),
                    weights=w)
    assert len(history) >= 2 and all(np.isfinite(h["val"]) for h in history)


def test_fom_schedule_trains_with_weights():
    sim = get_simulator("circle")
    _, x = sim.simulate(200, rng=0)
    model = FOMFlow(sim, inner_layers=1, **SMALL)
    history = train(model, x, config=TrainConfig(epochs=1, batch_size=100, progress=False),
                    weights=np.linspace(0.1, 2.0, len(x)))
    assert np.isfinite(history[0]["val"])


def test_validation_loss_is_the_weighted_mean_and_weights_enter_the_identity(tmp_path):
    sim = get_simulator("power")
    theta, x = sim.simulate(400, rng=0)
    w = np.random.default_rng(2).uniform(-0.3, 1.5, len(x))
    cfg = TrainConfig(epochs=1, batch_size=100, progress=False)
    torch.manual_seed(0)
    model = AmbientFlow(3, param_dim=1, num_layers=1, **SMALL)
    history = train(model, x, theta, cfg, run_dir=tmp_path, weights=w)
    _, val = split(len(x), cfg.validation_fraction, cfg.seed)
    nll = -model.eval().log_prob(x[val.numpy()], theta[val.numpy()]).double().numpy()
    assert history[0]["val"] == pytest.approx(np.sum(w[val] * nll) / np.sum(w[val]), rel=1e-5)

    record = json.loads((tmp_path / "train_config.json").read_text())
    assert record["weights_sha256"] == array_digest(w)
    fresh = AmbientFlow(3, param_dim=1, num_layers=1, **SMALL)
    for other in (w * 2, None):
        with pytest.raises(ConfigError, match="weights_sha256"):
            train(fresh, x, theta, TrainConfig(epochs=2, batch_size=100, progress=False), run_dir=tmp_path,
                  resume=True, weights=other)


@pytest.mark.parametrize(("weights", "message"), [
    (lambda n: -np.ones(n), "weights: the total weight must be positive, got -"),
    (lambda n: np.r_[np.nan, np.ones(n - 1)], "weights: 1 of 50 weights are NaN or inf"),
    (lambda n: np.ones(n - 1), "weights: expected one real number per event, shape (50,)"),
    (lambda n: np.where(np.isin(np.arange(n), split(n, 0.25, 0)[1].numpy()), -1.0, 5.0),
     "weights: the validation split's weights sum to -12 (<= 0)"),
])
def test_bad_weights_are_clear_errors(weights, message):
    sim = get_simulator("power")
    theta, x = sim.simulate(50, rng=0)
    model = AmbientFlow(3, param_dim=1, num_layers=1, **SMALL)
    with pytest.raises(InputError) as err:
        train(model, x, theta, TrainConfig(epochs=1, progress=False), weights=weights(len(x)))
    assert message in str(err.value)


def test_estimator_passes_weights_to_training(tmp_path):
    sim = get_simulator("power")
    theta, x = sim.simulate(200, rng=0)
    w = np.linspace(-0.2, 2.0, 100)
    est = LikelihoodEstimator(AmbientFlow(3, param_dim=1, num_layers=1, **SMALL), sim.prior)
    est.append_simulations(theta[:100], x[:100], weights=w).append_simulations(theta[100:], x[100:])
    est.train(epochs=1, progress=False, run_dir=str(tmp_path))
    record = json.loads((tmp_path / "train_config.json").read_text())
    assert record["weights_sha256"] == array_digest(np.r_[w, np.ones(100)])
    with pytest.raises(InputError, match=r"weights: 1 of 100 weights are NaN or inf \(rows \[3\]\)"):
        est.append_simulations(theta[:100], x[:100], weights=np.where(np.arange(100) == 3, np.nan, 1.0))
    with pytest.raises(InputError, match="weights: expected one real number per event"):
        LikelihoodEstimator(AmbientFlow(3, param_dim=1), BoxUniform((-1.0,), (1.0,))).append_simulations(
            theta[:10], x[:10], weights=np.ones((10, 2)))
