"""Priors as an sbi user passes them: mfinfer's Gaussian(loc, scale), MultivariateGaussian,
torch.distributions and sbi's BoxUniform unchanged, each checked against the analytic posterior of
a Gaussian likelihood; the generic adapter, its bounds, and the config reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sbi.utils import BoxUniform as SbiBoxUniform
from torch.distributions import Dirichlet, Gamma, Independent, MultivariateNormal, Normal

from mfinfer import BoxUniform, Gaussian, MultivariateGaussian, Posterior, as_prior, sample_posterior
from mfinfer.distribution_prior import DistributionPrior
from mfinfer.errors import ConfigError, InputError
from mfinfer.priors import prior_from_config

# A Gaussian likelihood of N events x_i ~ N(θ, Σ) with mean XBAR: log L = -N/2 (θ-x̄)ᵀ Σ⁻¹ (θ-x̄).
# The prior is as strong as the likelihood, so a prior ignored or its correlation lost fails.
N, XBAR = 1, np.array([0.8, 0.1])
SIGMA = np.array([[1.0, -0.4], [-0.4, 0.8]])
M0, S0 = np.array([-0.5, 0.6]), np.array([[0.5, 0.3], [0.3, 0.6]])


def log_like(theta: np.ndarray) -> np.ndarray:
    d = theta - XBAR
    return -0.5 * N * np.einsum("ni,ij,nj->n", d, np.linalg.inv(SIGMA), d)


def conjugate(m0: np.ndarray | None, s0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and covariance for the prior N(m0, s0) (None: flat)."""
    prec_like = N * np.linalg.inv(SIGMA)
    prec = prec_like if s0 is None else prec_like + np.linalg.inv(s0)
    cov = np.linalg.inv(prec)
    shift = prec_like @ XBAR + (0 if s0 is None else np.linalg.solve(s0, m0))
    return cov @ shift, cov


def check_posterior(samples: np.ndarray, mean: np.ndarray, cov: np.ndarray, tol: float = 0.08) -> None:
    """Mean within tol posterior std, covariance entries within tol of the std products."""
    std = np.sqrt(np.diag(cov))
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean) / std, tol)
    np.testing.assert_array_less(np.abs(np.cov(samples.T) - cov) / np.outer(std, std), 2 * tol)


DIAG = np.diag(np.diag(S0))
CASES = {
    "mfinfer Gaussian(loc, scale)": (lambda: Gaussian(loc=M0, scale=np.sqrt(np.diag(S0))), (M0, DIAG)),
    "MultivariateGaussian": (lambda: MultivariateGaussian(M0, S0), (M0, S0)),
    "torch MultivariateNormal": (lambda: MultivariateNormal(torch.tensor(M0), torch.tensor(S0)), (M0, S0)),
    "torch Independent(Normal)": (lambda: Independent(Normal(torch.tensor(M0), torch.tensor(np.sqrt(
        np.diag(S0)))), 1), (M0, DIAG)),
    "sbi BoxUniform": (lambda: SbiBoxUniform(-6 * torch.ones(2), 6 * torch.ones(2)), (None, None)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_conjugate_posterior_with_each_prior(name: str) -> None:
    make, (m0, s0) = CASES[name]
    prior = make()
    res = sample_posterior(log_like, prior, 4000, rng=0)
    assert res.converged
    check_posterior(res.samples, *conjugate(m0, s0))


def test_torch_priors_become_the_equal_native_prior() -> None:
    box = as_prior(SbiBoxUniform(torch.zeros(2), torch.tensor([1.0, 3.0])))
    assert box == BoxUniform((0.0, 0.0), (1.0, 3.0))
    mvn = as_prior(MultivariateNormal(torch.tensor(M0), torch.tensor(S0)))
    assert isinstance(mvn, MultivariateGaussian)
    theta = np.random.default_rng(0).normal(size=(5, 2))
    exact = MultivariateNormal(torch.tensor(M0), torch.tensor(S0)).log_prob(torch.tensor(theta))
    np.testing.assert_allclose(mvn.log_prob(theta), exact.numpy(), rtol=1e-10)
    assert as_prior(Normal(torch.zeros(3), 2.0)) == Gaussian(0.0, [2.0, 2.0, 2.0])
    # stored with a posterior and rebuilt from its config
    assert prior_from_config(mvn.to_config()) == mvn


class OnlySampleLogProb:
    """A prior as a user might write it: sample and log_prob, no support."""

    def __init__(self) -> None:
        self.dist = MultivariateNormal(torch.tensor(M0), torch.tensor(S0))

    def sample(self, shape: tuple[int, ...] = ()) -> torch.Tensor:
        return self.dist.sample(shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(value)


def test_any_object_with_sample_and_log_prob() -> None:
    prior = as_prior(OnlySampleLogProb())
    assert isinstance(prior, DistributionPrior) and prior.dim == 2 and not prior.has_bounds
    state = torch.random.get_rng_state()
    np.testing.assert_array_equal(prior.sample(3, 7), prior.sample(3, 7))  # seeded by rng
    assert torch.equal(state, torch.random.get_rng_state())  # torch's global RNG untouched
    with pytest.raises(InputError, match="grid"):
        sample_posterior(log_like, prior, 100, method="grid", rng=0)
    res = sample_posterior(log_like, prior, 3000, rng=1)  # auto: no bounds -> SMC
    assert type(res).__name__ == "SMCResult" and "no bounds" in res.fallback
    check_posterior(res.samples, *conjugate(M0, S0), tol=0.12)
    post = Posterior(res.samples, prior)
    assert post.prior is prior and post.summary()["prior"] is None  # not storable, still usable


def test_bounds_and_scaling_from_the_support() -> None:
    gamma = as_prior(Independent(Gamma(torch.tensor([2.0, 3.0]), torch.ones(2)), 1))
    low, high = gamma.bounds
    np.testing.assert_array_equal(low, [0.0, 0.0])
    assert np.all(np.isinf(high))
    loc, scale = gamma.scaling()
    np.testing.assert_allclose(loc, [2.0, 3.0], rtol=1e-6)  # the distribution's mean and std
    np.testing.assert_allclose(scale, np.sqrt([2.0, 3.0]), rtol=1e-6)
    assert gamma.log_prob(np.array([[-1.0, 1.0]]))[0] == -np.inf  # outside: not asked (validate)
    simplex = as_prior(Dirichlet(torch.ones(3)))
    with pytest.raises(InputError, match=r"no box-shaped support.*method='smc'"):
        _ = simplex.bounds
    np.testing.assert_allclose(BoxUniform((0, 10), (2, 30)).scaling(), [[1, 20], [1, 10]])
    np.testing.assert_allclose(MultivariateGaussian([1.0, 2.0], [[4.0, 1.0], [1.0, 9.0]]).scaling(),
                               [[1, 2], [2, 3]])


def test_gaussian_names_and_refusals() -> None:
    assert Gaussian(mean=(1.0,), std=(2.0,)) == Gaussian(loc=(1.0,), scale=(2.0,)) == Gaussian(1.0, 2.0)
    assert Gaussian((1.0,), (2.0,)).std == (2.0,)
    with pytest.raises(InputError, match="scale"):
        Gaussian((0,), (np.nan,))
    with pytest.raises(InputError, match="loc"):
        Gaussian((np.inf,), (1.0,))
    with pytest.raises(InputError, match="not both"):
        Gaussian(loc=0.0, mean=0.0, scale=1.0)
    with pytest.raises(InputError, match="low"):
        BoxUniform((-np.inf,), (0.0,))
    with pytest.raises(InputError, match="positive definite"):
        MultivariateGaussian([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(InputError, match="symmetric"):
        MultivariateGaussian([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(InputError, match="sample and log_prob"):
        as_prior([0.0, 1.0])


def test_multivariate_gaussian_is_normalised_with_the_right_moments() -> None:
    prior = MultivariateGaussian(M0, S0)
    draws = prior.sample(200_000, rng=0)
    np.testing.assert_allclose(draws.mean(0), M0, atol=0.01)
    np.testing.assert_allclose(np.cov(draws.T), S0, atol=0.02)
    # importance estimate of ∫ p = 1 with a wide Gaussian proposal
    wide = Gaussian(M0, 3.0)
    z = wide.sample(200_000, rng=1)
    assert abs(np.mean(np.exp(prior.log_prob(z) - wide.log_prob(z))) - 1) < 0.02


@pytest.mark.parametrize("cfg, expected", [
    ({"box": {"low": [0, 1], "high": [1, 2]}}, BoxUniform((0, 1), (1, 2))),
    ({"gaussian": {"loc": [0], "scale": [2]}}, Gaussian(0.0, 2.0)),
    ({"gaussian": {"mean": [0], "std": [2]}}, Gaussian(0.0, 2.0)),
    ({"type": "gaussian", "mean": [0], "std": [2]}, Gaussian(0.0, 2.0)),  # stored by older versions
    ({"type": "box", "low": [0], "high": [1]}, BoxUniform(0.0, 1.0)),
    ({"multivariate_gaussian": {"loc": [0, 0], "covariance": [[1, 0.5], [0.5, 1]]}},
     MultivariateGaussian([0, 0], [[1, 0.5], [0.5, 1]])),
])
def test_prior_from_config(cfg: dict, expected: object) -> None:
    prior = prior_from_config(cfg)
    assert prior == expected
    assert prior_from_config(prior.to_config()) == prior


@pytest.mark.parametrize("cfg, match", [
    ({"gaussian": {"loc": [0], "scale": [float("nan")]}}, r"prior\.gaussian: .*scale"),
    ({"box": {"low": [0]}}, r"prior\.box: .*missing \['high'\]"),
    ({"box": {"low": [0], "high": [1], "width": 2}}, r"unknown \['width'\]"),
    ({"uniform": {"low": [0], "high": [1]}}, "must be one of"),
    ({"box": {"low": [0], "high": [1]}, "gaussian": {}}, "exactly one"),
    ({"multivariate_gaussian": {"loc": [0, 0], "covariance": [[1, 2], [2, 1]]}}, "positive definite"),
])
def test_prior_from_config_refuses(cfg: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        prior_from_config(cfg)


@pytest.mark.parametrize("prior", [BoxUniform((0, 1), (1, 2)), Gaussian(0.5, [1.0, 2.0]),
                                   MultivariateGaussian([0, 1], [[1, 0.5], [0.5, 2]])])
def test_sbi_gets_the_equal_torch_prior(prior: object) -> None:
    from mfinfer.interop.nle import sbi_prior

    theta = np.array([[0.5, 1.5], [0.2, 1.1]])
    torch_lp = sbi_prior(prior).log_prob(torch.tensor(theta, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(torch_lp, as_prior(prior).log_prob(theta), rtol=1e-5)
