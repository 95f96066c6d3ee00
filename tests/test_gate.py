"""The off-manifold gate: calibrated thresholds, the expected flag rate on held-out H→4ℓ events, and
flags on continuum-like events (m_4l ≈ 230 GeV) for an AF (θ-marginal density) and an M-flow
(reconstruction error), each trained briefly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mfinfer import AmbientFlow, ManifoldFlow, get_simulator
from mfinfer.errors import InputError
from mfinfer.inference.gate import GateReport, GateSettings, OffManifoldGate
from mfinfer.training import TrainConfig, train
from simulators.higgs4l.kinematics import OBSERVABLE_NAMES, momenta_from_observables, observables

M4L = OBSERVABLE_NAMES.index("m_4l")
SMALL = {"hidden_features": 16, "num_blocks": 1, "num_bins": 4}


@pytest.fixture(scope="module")
def higgs():
    """Training (2000), reference (1000) and held-out (1000) H→4ℓ events, θ ~ prior, and 200
    continuum-like events: held-out events with every lepton momentum scaled by 230/125, so
    m_4l = 230 GeV (masses and energies scale, the angles stay)."""
    sim = get_simulator("higgs4l")
    theta, x = sim.simulate(4000, rng=0)
    scaled = observables(*(p * (230.0 / 125.0) for p in momenta_from_observables(x[3000:3200])))
    return sim, (x[:2000], theta[:2000]), x[2000:3000], x[3000:], scaled


def _check_gate(model, sim, reference, held_out, continuum) -> tuple[GateReport, GateReport]:
    model.eval()
    gate = OffManifoldGate(model, sim.prior, GateSettings(quantile=0.99, n_reference=1000, n_theta=8), rng=1)
    gate.calibrate(reference)
    assert gate.expected_rate == pytest.approx(10 / 1001)  # k = ceil(0.99 * 1001) = 991
    on, off = gate(held_out), gate(continuum)
    np.testing.assert_allclose(continuum[:, M4L], 230.0, rtol=1e-9)
    # held-out H→4ℓ: the expected rate within binomial noise (1000 events at 1 %: 10 ± 3.2)
    assert 2 <= on.n_flagged <= 22, on.message()
    assert on.p_value > 1e-3 and not on.excess
    # continuum-like events: (nearly) all flagged, a significant excess
    assert off.flagged_fraction >= 0.95, off.message()
    assert off.excess and off.p_value < 1e-10
    return on, off


def test_gate_of_an_ambient_flow_uses_the_marginal_density(higgs):
    sim, (x, theta), reference, held_out, continuum = higgs
    torch.manual_seed(0)
    model = AmbientFlow(38, param_dim=2, num_layers=1, **SMALL)
    train(model, x, theta, TrainConfig(epochs=2, batch_size=256, progress=False))
    on, _ = _check_gate(model, sim, reference, held_out, continuum)
    assert on.score == "neg_log_marginal_density"
    # the score is −log of the mean of p̂(x|θ_k) over the K prior draws
    gate = OffManifoldGate(model, sim.prior, GateSettings(n_theta=8), rng=1)
    x3 = held_out[:3]
    lp = torch.stack([model.log_prob(x3, np.repeat(t[None], 3, 0)).double() for t in gate.theta], 1)
    np.testing.assert_allclose(gate.scores(x3), -(torch.logsumexp(lp, 1) - math.log(8)).numpy(), rtol=1e-6)


def test_gate_of_an_mflow_uses_the_reconstruction_error(higgs):
    sim, (x, theta), reference, held_out, continuum = higgs
    torch.manual_seed(0)
    model = ManifoldFlow(38, 11, param_dim=2, outer_layers=1, inner_layers=1, **SMALL)
    train(model, x, theta, TrainConfig(epochs=6, batch_size=128, lr=3e-3, schedule="sequential",
                                       progress=False))
    on, _ = _check_gate(model, sim, reference, held_out, continuum)
    assert on.score == "reconstruction_error"
    np.testing.assert_allclose(on.scores[:5], model.reconstruction_error(held_out[:5]).double().numpy(),
                               rtol=1e-6)


class _FirstColumn(OffManifoldGate):
    """A gate whose score is the first column: the calibration arithmetic in isolation."""

    def scores(self, x):
        return np.asarray(x, dtype=np.float64)[:, 0]


def test_threshold_is_an_order_statistic_with_an_exact_rate():
    model = AmbientFlow(2, num_layers=1, **SMALL)
    gate = _FirstColumn(model, _prior(), GateSettings(quantile=0.9, n_reference=99, n_theta=2))
    ref = np.arange(1.0, 100.0)[:, None].repeat(2, 1)  # scores 1..99
    gate.calibrate(ref)
    assert gate.threshold == 90.0 and gate.expected_rate == pytest.approx(10 / 100)  # k = 90 of 99
    report = gate(np.array([[89.0, 0], [90.0, 0], [90.5, 0], [np.inf, 0]]))
    assert report.flagged.tolist() == [False, False, True, True] and report.indices.tolist() == [2, 3]
    # the exact flag rate of an exchangeable event: (n + 1 − k) / (n + 1)
    rng = np.random.default_rng(0)
    rates = [(_FirstColumn(model, _prior(), GateSettings(quantile=0.9, n_reference=99, n_theta=1))
              .calibrate(rng.uniform(size=(99, 2)))(rng.uniform(size=(200, 2))).flagged_fraction)
             for _ in range(200)]
    assert np.mean(rates) == pytest.approx(0.1, abs=0.01)
    summary = report.summary("drop")
    assert summary["dropped_indices"] == [2, 3] and summary["flagged_fraction"] == 0.5
    assert summary["threshold"] == 90.0 and summary["expected_rate"] == pytest.approx(0.1)
    with pytest.raises(InputError, match="not calibrated"):
        _FirstColumn(model, _prior(), GateSettings(quantile=0.9, n_reference=99))(ref)


def _prior():
    from mfinfer import BoxUniform

    return BoxUniform((-1.0,), (1.0,))


def test_settings_are_checked():
    with pytest.raises(InputError, match=r"n_reference: the 0\.99 quantile needs at least 99"):
        GateSettings(n_reference=50)
    with pytest.raises(InputError, match="quantile: expected a number in"):
        GateSettings(quantile=1.0)


def test_conditional_manifold_takes_the_smallest_error_over_theta():
    sim = get_simulator("power")
    model = ManifoldFlow(3, 2, param_dim=1, conditional_manifold=True, outer_layers=1, inner_layers=1,
                         **SMALL).eval()
    gate = OffManifoldGate(model, sim.prior, GateSettings(n_reference=100, n_theta=3), rng=0)
    x = sim.simulate(4, rng=1)[1]
    errors = torch.stack([model.reconstruction_error(x, np.repeat(t[None], 4, 0)) for t in gate.theta], 1)
    np.testing.assert_allclose(gate.scores(x), errors.min(1).values.double().numpy(), rtol=1e-6)


def test_calibration_is_stored_and_reused_by_key(tmp_path):
    model = AmbientFlow(2, num_layers=1, **SMALL)
    settings = GateSettings(quantile=0.9, n_reference=99, n_theta=1)
    calls = []

    def reference():
        calls.append(1)
        return np.arange(1.0, 100.0)[:, None].repeat(2, 1)

    path = tmp_path / "gate.json"
    first = _FirstColumn(model, _prior(), settings).cached(path, "k1", reference)
    again = _FirstColumn(model, _prior(), settings).cached(path, "k1", reference)
    assert len(calls) == 1
    assert (again.threshold, again.expected_rate) == (first.threshold, first.expected_rate)
    _FirstColumn(model, _prior(), settings).cached(path, "k2", reference)  # another key: recalibrated
    assert len(calls) == 2
