"""The sbi adapter (``mfinfer.interop.sbi``): sbi's shapes, its potential and MCMC posterior on
wrapped models, the same posterior as mfinfer's samplers, SBC and TARP, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp
from sbi.inference import (
    NLE,
    ImportanceSamplingPosterior,
    MCMCPosterior,
    likelihood_estimator_based_potential,
)
from sbi.neural_nets.estimators import ConditionalDensityEstimator
from sbi.utils import BoxUniform as SbiBoxUniform

from mfinfer.errors import InputError
from mfinfer.inference import LikelihoodEstimator, ModelLikelihood, sample_posterior
from mfinfer.interop.sbi import SbiDensityEstimator, to_sbi
from mfinfer.models import AmbientFlow, FOMFlow, ManifoldFlow
from mfinfer.registry import get_simulator

SMALL = dict(hidden_features=16, num_blocks=1)


@pytest.fixture(scope="module")
def power():
    return get_simulator("power")


@pytest.fixture(scope="module")
def sbi_prior():
    """sbi's equivalent of the power task's prior, BoxUniform(-1, 1)."""
    return SbiBoxUniform(torch.tensor([-1.0]), torch.tensor([1.0]))


@pytest.fixture(scope="module")
def trained_mflow(power):
    """A quickly trained power-task M-flow (its quality does not matter here)."""
    torch.manual_seed(0)
    theta, x = power.simulate(2000, rng=0)
    model = ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL)
    LikelihoodEstimator(model, power.prior).append_simulations(theta, x).train(
        epochs=2, batch_size=32, lr=3e-3, progress=False)
    return model


def _models(power):
    return {
        "AF": AmbientFlow(3, param_dim=1, num_layers=1, **SMALL),
        "M-flow": ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL),
        "Me-flow": ManifoldFlow(3, 2, param_dim=1, encoder=True, outer_layers=1, inner_layers=1, **SMALL),
        "M-flow, conditional manifold": ManifoldFlow(3, 2, param_dim=1, conditional_manifold=True,
                                                     outer_layers=1, inner_layers=1, **SMALL),
        "FOM": FOMFlow(power, param_dim=1, inner_layers=1, **SMALL),
        "AF, p=2": AmbientFlow(4, param_dim=2, num_layers=1, **SMALL),
    }


def _reference(model, x: torch.Tensor, theta: torch.Tensor, mode: str = "manifold") -> torch.Tensor:
    """model.log_prob on every broadcast (x, θ) pair, reshaped to the broadcast batch shape."""
    batch = torch.broadcast_shapes(x.shape[:-1], theta.shape[:-1])
    xs = x.expand(*batch, x.shape[-1]).reshape(-1, x.shape[-1])
    ts = theta.expand(*batch, theta.shape[-1]).reshape(-1, theta.shape[-1])
    return model.log_prob(xs, ts, mode=mode).reshape(batch)


def mmd2_test(a: np.ndarray, b: np.ndarray, permutations: int = 200, quantile: float = 0.99,
              seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD² of samples a (n, p) and b (m, p), Gaussian kernel with the median-distance
    bandwidth, and its permutation threshold: the ``quantile`` of MMD² over random relabellings
    of the pooled samples (the two-sample noise level at these sample sizes)."""
    z = np.concatenate([a, b])
    na, nb = len(a), len(b)
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d2 / np.median(d2[d2 > 0]))
    labels = np.zeros((na + nb, permutations + 1))  # column 0: the true split
    labels[:na, 0] = 1.0
    rng = np.random.default_rng(seed)
    for j in range(1, permutations + 1):
        labels[rng.permutation(na + nb)[:na], j] = 1.0
    ka, kb = k @ labels, k @ (1 - labels)
    s_aa, s_bb, s_ab = (labels * ka).sum(0), ((1 - labels) * kb).sum(0), ((1 - labels) * ka).sum(0)
    mmd = (s_aa - na) / (na * (na - 1)) + (s_bb - nb) / (nb * (nb - 1)) - 2 * s_ab / (na * nb)
    return float(mmd[0]), float(np.quantile(mmd[1:], quantile))


# ------------------------------------------------------------------ log_prob, loss, sample
@pytest.mark.parametrize("name", ["AF", "M-flow", "Me-flow", "M-flow, conditional manifold", "FOM",
                                  "AF, p=2"])
def test_log_prob_equals_model_on_sbi_shapes(power, name):
    model = _models(power)[name]
    est = to_sbi(model)
    assert isinstance(est, ConditionalDensityEstimator)
    assert est.input_shape == (model.data_dim,) and est.condition_shape == (model.param_dim,)
    d, p = model.data_dim, model.param_dim
    x = model.sample(12, torch.full((12, p), 0.3)).float()  # near the (learned) manifold
    theta = torch.rand(4, p) * 2 - 1
    # sbi's i.i.d. trials: x_o (n_trials, D) expanded over a batch of θ, summed over axis 0.
    x_iid = x[:6, None, :].expand(6, 4, d)
    lp = est.log_prob(x_iid, theta)
    assert lp.shape == (6, 4) and lp.dtype == torch.float32
    torch.testing.assert_close(lp, _reference(model, x_iid, theta), atol=1e-4, rtol=1e-5)
    # Paired (batch_dim, D) with (batch_dim, p) -> (1, batch_dim); θ broadcast from one row.
    torch.testing.assert_close(est.log_prob(x[:4], theta)[0], model.log_prob(x[:4], theta),
                               atol=1e-4, rtol=1e-5)
    lp1 = est.log_prob(x[:6, None, :], theta[:1])
    torch.testing.assert_close(lp1, _reference(model, x[:6, None, :], theta[:1]), atol=1e-4, rtol=1e-5)
    # A condition with its own sample dimension: (sample_dim, batch_dim, p).
    theta3 = torch.rand(3, 4, p) * 2 - 1
    x3 = x[:12].reshape(3, 4, d)
    torch.testing.assert_close(est.log_prob(x3, theta3), _reference(model, x3, theta3),
                               atol=1e-4, rtol=1e-5)
    # loss = -log_prob per pair.
    torch.testing.assert_close(est.loss(x[:4], theta), -model.log_prob(x[:4], theta), atol=1e-4, rtol=1e-5)


def test_cached_projection_follows_the_weights(power):
    """The per-event-set cache gives the model's values, and new ones once the weights change."""
    model = ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL)
    est = to_sbi(model)
    x = power.sample(np.zeros((5, 1)), rng=0)
    x_iid = torch.as_tensor(x, dtype=torch.float32)[:, None, :].expand(5, 3, 3)
    theta = torch.tensor([[-0.5], [0.0], [0.5]])
    before = est.log_prob(x_iid, theta)
    assert len(est._projections) == 1
    torch.testing.assert_close(est.log_prob(x_iid, theta.flip(0)), before.flip(1))
    with torch.no_grad():
        for param in model.outer.parameters():
            param.add_(0.05 * torch.randn_like(param))
    after = est.log_prob(x_iid, theta)
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, _reference(model, x_iid, theta), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("name", ["M-flow", "AF"])
def test_gradient_with_respect_to_theta(power, name):
    """sbi's gradient-based samplers differentiate log_prob with respect to θ."""
    model = _models(power)[name]
    x = torch.as_tensor(power.sample(np.zeros((4, 1)), rng=0), dtype=torch.float32)[:, None].expand(4, 3, 3)
    theta = torch.tensor([[-0.5], [0.1], [0.6]], requires_grad=True)
    to_sbi(model).log_prob(x, theta).sum().backward()
    theta_ref = theta.detach().clone().requires_grad_(True)
    _reference(model, x, theta_ref).sum().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0
    torch.testing.assert_close(theta.grad, theta_ref.grad, atol=1e-4, rtol=1e-4)


def test_dtype_device_and_pie_mode(power):
    model = ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL).double()
    x = torch.as_tensor(power.sample(np.zeros((6, 1)), rng=0))  # float64
    theta = torch.zeros(6, 1, dtype=torch.float32)
    est = to_sbi(model)
    lp32 = est.log_prob(x.float(), theta)
    assert lp32.dtype == torch.float32 and lp32.device == x.device
    lp64 = est.log_prob(x, theta)
    assert lp64.dtype == torch.float64
    torch.testing.assert_close(lp64[0], model.log_prob(x, theta))
    pie = to_sbi(model, mode="pie")
    torch.testing.assert_close(pie.log_prob(x, theta)[0], model.log_prob(x, theta, mode="pie"))
    assert not torch.allclose(pie.log_prob(x, theta), lp64)


def test_sample_shapes_and_manifold(power):
    model = ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL)
    est = to_sbi(model)
    theta = torch.tensor([[-0.5], [0.5]])
    x = est.sample((7, 3), theta)
    assert x.shape == (7, 3, 2, 3) and x.dtype == torch.float32
    flat = x.reshape(-1, 3)
    torch.testing.assert_close(model.project(flat), flat, atol=1e-4, rtol=0)  # on the manifold
    assert est.sample((), theta).shape == (2, 3)
    # The same draws as the model's, θ rows in sbi's (sample, batch) order.
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ours = est.sample((4,), theta, generator=g1)
    theirs = model.sample(8, theta.repeat(4, 1), generator=g2).reshape(4, 2, 3)
    torch.testing.assert_close(ours, theirs)
    samples, lp = est.sample_and_log_prob((5,), theta)
    assert samples.shape == (5, 2, 3) and lp.shape == (5, 2)


# ------------------------------------------------------------------ sbi's potential and MCMC
@pytest.mark.parametrize("kind", ["AF", "M-flow"])
def test_sbi_potential_equals_mfinfer_log_posterior(power, sbi_prior, trained_mflow, kind):
    """sbi's likelihood potential on the wrapped model = mfinfer's Σ log p(x_i|θ) + log prior,
    and sbi's MCMCPosterior samples it; also through NLE.build_posterior(density_estimator=...)."""
    model = trained_mflow if kind == "M-flow" else AmbientFlow(3, param_dim=1, num_layers=1, **SMALL)
    x_obs = power.sample(np.zeros((8, 1)), rng=1)
    x_o = torch.as_tensor(x_obs, dtype=torch.float32)
    potential, transform = likelihood_estimator_based_potential(to_sbi(model), sbi_prior, x_o)
    theta = torch.linspace(-0.95, 0.95, 9)[:, None]
    expected = ModelLikelihood(model, x_obs)(theta.numpy()) + power.prior.log_prob(theta.numpy())
    np.testing.assert_allclose(potential(theta).numpy(), expected, rtol=1e-5, atol=1e-3)

    if kind == "AF":  # (the M-flow's MCMCPosterior runs in the posterior comparison below)
        posterior = MCMCPosterior(potential, sbi_prior, theta_transform=transform, num_chains=2,
                                  warmup_steps=2, init_strategy_parameters={"num_candidate_samples": 50})
        samples = posterior.sample((20,), x=x_o, show_progress_bars=False)
        assert samples.shape == (20, 1) and samples.abs().max() <= 1
    nle_posterior = NLE(sbi_prior, show_progress_bars=False).build_posterior(
        density_estimator=to_sbi(model))
    np.testing.assert_allclose(nle_posterior.potential(theta, x=x_o).numpy(), expected,
                               rtol=1e-5, atol=1e-3)


def _same_posterior_check(power, sbi_prior, model, n_events: int, n: int, mfinfer_method: str):
    """Sample p(θ | x_1..x_n) with sbi's MCMC on the wrapped model and with mfinfer's sampler;
    returns the MMD²s and the permutation threshold."""
    x_obs = power.sample(np.zeros((n_events, 1)), rng=1)
    potential, transform = likelihood_estimator_based_potential(
        to_sbi(model), sbi_prior, torch.as_tensor(x_obs, dtype=torch.float32))
    sbi_posterior = MCMCPosterior(potential, sbi_prior, theta_transform=transform, num_chains=20,
                                  warmup_steps=10, init_strategy_parameters={"num_candidate_samples": 200})
    sbi_samples = sbi_posterior.sample((n,), show_progress_bars=False).numpy().astype(float)

    def mfinfer(events: np.ndarray, seed: int) -> np.ndarray:
        return sample_posterior(ModelLikelihood(model, events), power.prior, n, method=mfinfer_method,
                                rng=seed, progress=False).samples

    ref, ref2 = mfinfer(x_obs, 0), mfinfer(x_obs, 1)
    fewer_events = mfinfer(x_obs[: n_events // 2], 2)
    result = {
        "sbi vs mfinfer": mmd2_test(sbi_samples, ref),
        "mfinfer vs mfinfer": mmd2_test(ref2, ref),
        # Power checks: a different posterior, and the prior, must lie above the threshold.
        "half the events vs mfinfer": mmd2_test(fewer_events, ref),
        "prior vs sbi": mmd2_test(power.prior.sample(n, rng=5), sbi_samples),
    }
    print({k: f"MMD² {m:.2e} (threshold {t:.2e})" for k, (m, t) in result.items()})
    return result


def test_sbi_mcmc_on_mflow_gives_mfinfers_posterior(power, sbi_prior, trained_mflow):
    """The key check: sbi's MCMC on the wrapped M-flow and mfinfer's SMC target the same density
    (20 power-task events at θ = 0, 1000 samples each)."""
    res = _same_posterior_check(power, sbi_prior, trained_mflow, n_events=20, n=1000,
                                mfinfer_method="smc")
    mmd, threshold = res["sbi vs mfinfer"]
    assert mmd < threshold
    assert res["mfinfer vs mfinfer"][0] < res["mfinfer vs mfinfer"][1]
    for key in ("half the events vs mfinfer", "prior vs sbi"):
        assert res[key][0] > 2 * res[key][1], key


@pytest.mark.slow
def test_sbi_mcmc_on_mflow_gives_mfinfers_emcee_posterior(power, sbi_prior, trained_mflow):
    """As above with mfinfer's default sampler (emcee) and 2000 samples each."""
    res = _same_posterior_check(power, sbi_prior, trained_mflow, n_events=20, n=2000,
                                mfinfer_method="emcee")
    assert res["sbi vs mfinfer"][0] < res["sbi vs mfinfer"][1]
    for key in ("half the events vs mfinfer", "prior vs sbi"):
        assert res[key][0] > 2 * res[key][1], key


# ------------------------------------------------------------------ sbi's diagnostics
@pytest.mark.filterwarnings("ignore:Number of .* should be on the order of 100s")
def test_sbc_and_tarp_run_on_the_wrapped_mflow(power, sbi_prior, trained_mflow):
    """run_sbc samples sbi's MCMC posterior for a batch of single-event observations (sbi's
    batched sampling: x (1, chains, D) against θ (chains, p)); run_tarp an importance-sampling
    posterior (the i.i.d. path, one observation at a time). Tiny: it checks the plumbing."""
    theta, x = power.simulate(2, rng=7)
    thetas, xs = torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32)
    potential, transform = likelihood_estimator_based_potential(to_sbi(trained_mflow), sbi_prior, None)
    mcmc = MCMCPosterior(potential, sbi_prior, theta_transform=transform, num_chains=1,
                         warmup_steps=2, init_strategy_parameters={"num_candidate_samples": 20})
    ranks, dap = run_sbc(thetas, xs, mcmc, num_posterior_samples=5, show_progress_bar=False)
    assert ranks.shape == (2, 1) and dap.shape == (2, 1)
    assert ((ranks >= 0) & (ranks <= 5)).all() and (dap.abs() <= 1).all()
    sir = ImportanceSamplingPosterior(potential, sbi_prior, theta_transform=transform)
    with pytest.warns(UserWarning, match="Batched sampling not implemented"):
        ecp, alpha = run_tarp(thetas, xs, sir, num_posterior_samples=20, num_bins=2,
                              show_progress_bar=False)
    assert ecp.shape == alpha.shape == (3,) and ((ecp >= 0) & (ecp <= 1)).all()


@pytest.mark.slow
def test_sbc_and_tarp_are_calibrated_on_the_models_own_simulations(sbi_prior, trained_mflow):
    """Observations simulated by the wrapped model itself (x ~ estimator.sample) make the
    posterior under its likelihood calibrated by construction, so sbi's SBC and TARP checks must
    pass (SIR posterior, 200 observations of one event, 100 samples each): the adapter's
    ``sample`` and ``log_prob`` at realistic sizes. One power-task event says little about θ, so
    this catches gross mismatches only; the posterior comparison above is the sharp check."""
    est = to_sbi(trained_mflow)
    thetas = sbi_prior.sample((200,))
    xs = est.sample((), thetas)
    potential, transform = likelihood_estimator_based_potential(est, sbi_prior, None)
    sir = ImportanceSamplingPosterior(potential, sbi_prior, theta_transform=transform)
    ranks, dap = run_sbc(thetas, xs, sir, num_posterior_samples=100, show_progress_bar=False,
                         use_batched_sampling=False)
    ks_pval = check_sbc(ranks, thetas, dap, num_posterior_samples=100)["ks_pvals"]
    ecp, alpha = run_tarp(thetas, xs, sir, num_posterior_samples=100, show_progress_bar=False,
                          use_batched_sampling=False)
    atc, tarp_pval = check_tarp(ecp, alpha)
    print(f"SBC KS p-value {ks_pval.item():.3f}; TARP ATC {atc:.3f}, KS p-value {tarp_pval:.3f}")
    assert ks_pval.item() > 1e-3 and tarp_pval > 1e-3 and abs(atc) < 0.1


# ------------------------------------------------------------------ bad input
def test_bad_models_and_modes():
    with pytest.raises(InputError, match=r"model: expected a trained mfinfer model .* got Linear"):
        to_sbi(torch.nn.Linear(3, 1))
    with pytest.raises(InputError, match=r"model: an unconditional model \(param_dim=0\)"):
        to_sbi(AmbientFlow(3, num_layers=1, **SMALL))
    with pytest.raises(InputError, match=r"mode: must be one of \('manifold', 'pie'\), got 'ambient'"):
        SbiDensityEstimator(AmbientFlow(3, param_dim=1, num_layers=1, **SMALL), mode="ambient")


def test_mismatched_shapes_name_the_argument(power, sbi_prior):
    est = to_sbi(AmbientFlow(3, param_dim=1, num_layers=1, **SMALL))
    x, theta = torch.zeros(5, 4, 3), torch.zeros(4, 1)
    with pytest.raises(InputError, match=r"input: expected x of shape \(sample_dim, batch_dim, 3\) or "
                                         r"\(batch_dim, 3\) \(the model's data_dim is 3\), got \(5, 4, 2\)"):
        est.log_prob(torch.zeros(5, 4, 2), theta)
    with pytest.raises(InputError, match=r"condition: expected θ .*param_dim is 1\), got \(4, 2\)"):
        est.log_prob(x, torch.zeros(4, 2))
    with pytest.raises(InputError, match=r"input: expected x .*got \(3,\)"):
        est.log_prob(torch.zeros(3), theta)
    with pytest.raises(InputError, match=r"batch dimensions \(5, 4\) and \(3,\) do not broadcast"):
        est.log_prob(x, torch.zeros(3, 1))
    with pytest.raises(InputError, match=r"condition: expected θ of shape \(batch_dim, 1\)"):
        est.sample((2,), torch.zeros(2, 3, 1))
    with pytest.raises(InputError, match=r"sample_shape: expected a shape with at least one sample"):
        est.sample((0,), theta)
    with pytest.raises(InputError, match=r"condition: 1 of 4 θ row\(s\) contain NaN"):
        est.log_prob(x, torch.tensor([[0.0], [0.1], [float("nan")], [0.2]]))
    # A prior of the wrong dimension fails in sbi's potential with the estimator's message.
    prior2 = SbiBoxUniform(-torch.ones(2), torch.ones(2))
    potential, _ = likelihood_estimator_based_potential(est, prior2, torch.zeros(3, 3))
    with pytest.raises(InputError, match=r"condition: expected θ .*param_dim is 1\), got \(6, 2\)"):
        potential(torch.zeros(6, 2))
