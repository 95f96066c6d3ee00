"""MCMC wrapper and Posterior object against analytic Gaussian posteriors."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from conftest import N_OBS, SIGMA

from mfinfer.errors import InputError
from mfinfer.inference import LogPosterior, MCMCResult, Posterior, sample_posterior
from mfinfer.inference.storage import FORMAT_VERSION
from mfinfer.plotting import corner_plot
from mfinfer.priors import BoxUniform, Gaussian


@pytest.fixture(scope="module")
def gauss1d(gauss1d):
    """The analytic problem of conftest.py with its posterior mean and std."""
    log_like, prior, x = gauss1d
    return log_like, prior, x.mean(), SIGMA / np.sqrt(N_OBS)


@pytest.fixture(scope="module")
def post1d(gauss1d):
    log_like, prior, _, _ = gauss1d
    return Posterior.from_mcmc(
        log_like,
        prior,
        4000,
        rng=1,
        progress=False, method="emcee",
        labels=["mu"],
        metadata={"n_obs": N_OBS, "note": "toy"},
    )


def _check_moments(samples, ess, mean, std):
    """Sample mean and std within 3 Monte Carlo standard errors of the analytic values."""
    mcse_mean = std / np.sqrt(ess)
    mcse_std = std / np.sqrt(2 * ess)
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), 3 * mcse_mean)
    np.testing.assert_array_less(np.abs(samples.std(0, ddof=1) - std), 3 * mcse_std)


def test_gaussian_1d_matches_analytic(post1d, gauss1d):
    _, _, mean, std = gauss1d
    res = post1d.mcmc
    assert isinstance(res, MCMCResult) and res.converged
    assert res.samples.shape == (4000, 1) and res.log_prob.shape == (4000,)
    assert res.n_steps >= 50 * res.tau.max()
    assert res.burn_in >= 2 * res.tau.max() and res.thin >= 1
    assert 0.2 < res.acceptance_fraction < 0.95
    assert np.all(res.ess > 500)
    _check_moments(res.samples, res.ess, mean, std)
    # stored log-probs are log_like + log_prior at the samples
    np.testing.assert_allclose(post1d.log_prob(res.samples[:50]), res.log_prob[:50])


def test_gaussian_2d_correlated():
    mean = np.array([0.5, -1.0])
    cov = np.array([[1.0, 0.8 * 0.5], [0.8 * 0.5, 0.25]])
    prec = np.linalg.inv(cov)

    def log_like(theta: np.ndarray) -> np.ndarray:
        d = theta - mean
        return -0.5 * np.einsum("ni,ij,nj->n", d, prec, d)

    res = sample_posterior(
        log_like, BoxUniform((-8.0, -8.0), (8.0, 8.0)), 4000, rng=3, progress=False, method="emcee"
    )
    assert res.converged and res.samples.shape == (4000, 2)
    _check_moments(res.samples, res.ess, mean, np.sqrt(np.diag(cov)))
    corr = np.corrcoef(res.samples.T)[0, 1]
    assert abs(corr - 0.8) < 0.05


def test_gaussian_prior_is_used():
    """Flat likelihood: the posterior is the (Gaussian) prior."""
    res = sample_posterior(
        lambda t: np.zeros(len(t)), Gaussian((1.0,), (2.0,)), 3000, rng=0, progress=False, method="emcee"
    )
    _check_moments(res.samples, res.ess, np.array([1.0]), np.array([2.0]))


@pytest.mark.filterwarnings("ignore:sample_emcee")
def test_reproducible_with_seed(gauss1d):
    log_like, prior, _, _ = gauss1d
    a = sample_posterior(log_like, prior, 200, rng=7, progress=False, method="emcee", max_steps=300)
    b = sample_posterior(log_like, prior, 200, rng=7, progress=False, method="emcee", max_steps=300)
    np.testing.assert_array_equal(a.samples, b.samples)


def test_short_chain_warns(gauss1d):
    log_like, prior, _, _ = gauss1d
    with pytest.warns(UserWarning, match=r"autocorrelation times long"):
        res = sample_posterior(log_like, prior, 100, rng=0, progress=False, method="emcee", max_steps=40)
    assert not res.converged and res.n_steps == 40


@pytest.mark.filterwarnings("ignore:sample_emcee")
@pytest.mark.parametrize("initial", [None, np.array([10.0, -1.0]), np.array([0.0, 1.0])])
def test_walkers_start_and_stay_inside_support(initial):
    prior = BoxUniform((-10.0, -1.0), (10.0, 1.0))
    calls = []

    def log_like(theta: np.ndarray) -> np.ndarray:
        calls.append(theta.copy())
        return -0.5 * np.sum((theta / np.array([20.0, 2.0])) ** 2, axis=1)

    sample_posterior(log_like, prior, 100, rng=0, initial=initial, progress=False, method="emcee",
                     max_steps=200)
    first = calls[0]
    assert first.shape == (32, 2) and np.all(prior.contains(first))
    if initial is not None:  # a small ball around the start point, clipped inside
        assert np.all(np.abs(first - initial) < 0.1 * (prior.bounds[1] - prior.bounds[0]))
        assert len(np.unique(first, axis=0)) == 32
    assert all(prior.contains(c).all() for c in calls)


def test_nan_log_like_raises_with_theta():
    def log_like(theta: np.ndarray) -> np.ndarray:
        return np.where(theta[:, 0] > 0.5, np.nan, -0.5 * theta[:, 0] ** 2)

    with pytest.raises(ValueError, match=r"NaN at theta = \[0\.[5-9]"):
        sample_posterior(log_like, BoxUniform((-1.0,), (1.0,)), 100, rng=0, progress=False, method="emcee")


def test_bad_arguments():
    prior = BoxUniform((-1.0, -1.0), (1.0, 1.0))

    def ll(t: np.ndarray) -> np.ndarray:
        return np.zeros(len(t))

    with pytest.raises(ValueError, match="num_walkers"):
        sample_posterior(ll, prior, 10, method="emcee", num_walkers=3)
    with pytest.raises(ValueError, match="outside the prior support"):
        sample_posterior(ll, prior, 10, method="emcee", initial=np.array([2.0, 0.0]))
    with pytest.raises(ValueError, match="vectorized"):
        sample_posterior(lambda t: np.zeros(1), prior, 10, progress=False, method="emcee")


# ---------------------------------------------------------------- Posterior


def test_posterior_summaries(post1d, gauss1d):
    _, _, mean, std = gauss1d
    assert post1d.mean.shape == (1,) and post1d.std.shape == (1,)
    q = post1d.quantiles([0.16, 0.5, 0.84])
    assert q.shape == (3, 1) and q[0, 0] < q[1, 0] < q[2, 0]
    assert abs(q[1, 0] - mean) < 0.2 * std


def test_map_near_analytic_mode(post1d, gauss1d):
    _, _, mean, std = gauss1d
    np.testing.assert_allclose(post1d.map(), [mean], atol=1e-3 * std)
    assert abs(post1d.map(refine=False)[0] - mean) < 0.2 * std


def test_sample_resamples_without_replacement(post1d):
    s = post1d.sample(1000, rng=0)
    assert s.shape == (1000, 1) and len(np.unique(s)) == 1000
    np.testing.assert_array_equal(s, post1d.sample(1000, rng=0))


def test_sample_more_than_stored_runs_mcmc(gauss1d):
    log_like, prior, mean, std = gauss1d
    post = Posterior.from_mcmc(log_like, prior, 200, rng=0, progress=False, method="emcee")
    s = post.sample(500, rng=1)
    assert s.shape == (500, 1) and len(post.samples) >= 500
    assert abs(s.mean() - mean) < 0.3 * std
    bare = Posterior(post.samples[:10], prior)
    with pytest.raises(RuntimeError, match="log-likelihood"):
        bare.sample(20)


def test_save_load_round_trip(post1d, tmp_path):
    npz = post1d.save(tmp_path / "post")
    assert npz == tmp_path / "post.npz" and (tmp_path / "post.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    summary = json.loads((tmp_path / "post.json").read_text())
    assert summary["labels"] == ["mu"] and summary["metadata"]["note"] == "toy"
    for key in ("mean", "std", "quantiles", "mcmc"):
        assert key in summary
    assert {"acceptance_fraction", "tau", "ess"} <= set(summary["mcmc"])

    loaded = Posterior.load(tmp_path / "post.json")
    np.testing.assert_array_equal(loaded.samples, post1d.samples)
    np.testing.assert_array_equal(loaded.log_probs, post1d.log_probs)
    assert loaded.labels == post1d.labels and loaded.metadata == post1d.metadata
    assert loaded.prior == post1d.prior
    for f in ("samples", "log_prob", "tau", "ess"):
        np.testing.assert_array_equal(getattr(loaded.mcmc, f), getattr(post1d.mcmc, f))
    for f in ("acceptance_fraction", "n_steps", "burn_in", "thin", "num_walkers", "converged"):
        assert getattr(loaded.mcmc, f) == getattr(post1d.mcmc, f)

    with pytest.raises(RuntimeError, match="no log-likelihood"):
        loaded.log_prob(np.zeros((1, 1)))
    attached = Posterior.load(npz, log_like=post1d.log_like)
    np.testing.assert_allclose(attached.log_prob(post1d.samples[:5]), post1d.log_probs[:5])


def test_npz_has_no_pickled_objects(post1d, tmp_path):
    post1d.save(tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)


def test_corner_writes_png(post1d, tmp_path):
    other = Posterior(post1d.samples + 0.1, post1d.prior)
    path = post1d.corner(tmp_path / "c.png", truth=[0.7], reference=other)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rng = np.random.default_rng(0)
    sets = {f"model {i}": rng.normal(i, 1.0, size=(500, 2)) for i in range(3)}
    path = corner_plot(sets, tmp_path / "overlay.png", truth=[0.0, 0.0], labels=["a", "b"])
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="truth"):
        corner_plot(sets, tmp_path / "bad.png", truth=[0.0])


# ---------------------------------------------------------------- the one log posterior


def test_log_posterior_is_prior_plus_likelihood_inside_support():
    prior = BoxUniform((-1.0, -1.0), (1.0, 1.0))
    seen = []

    def log_like(theta: np.ndarray) -> np.ndarray:
        seen.append(theta.copy())
        return -np.sum(theta**2, axis=1)

    log_post = LogPosterior(log_like, prior)
    theta = np.array([[0.5, 0.5], [2.0, 0.0], [0.0, -0.3], [np.nan, 0.0], [-1.0, 1.0]])
    out = log_post(theta)
    inside = np.array([True, False, True, False, True])
    assert out.shape == (5,) and np.all(out[~inside] == -np.inf)
    expected = prior.log_prob(theta[inside]) + log_like(theta[inside])
    np.testing.assert_array_equal(out[inside], expected)
    # the likelihood is only ever called inside the support, once per call
    assert len(seen) == 2 and prior.contains(seen[0]).all() and len(seen[0]) == 3
    assert log_post(theta[0]).shape == (1,)  # one point (p,)
    assert np.all(log_post(theta[[1, 3]]) == -np.inf) and len(seen) == 3  # none inside: no call
    # an unbounded prior: prior + likelihood everywhere
    gauss = Gaussian((0.0, 1.0), (1.0, 2.0))
    np.testing.assert_array_equal(LogPosterior(log_like, gauss)(theta[[0, 1, 2]]),
                                  gauss.log_prob(theta[[0, 1, 2]]) + log_like(theta[[0, 1, 2]]))


def test_log_posterior_rejects_bad_likelihood_output_and_theta():
    prior = BoxUniform((-1.0,), (1.0,))
    with pytest.raises(ValueError, match=r"\+inf at theta = \[0\.2\]"):
        LogPosterior(lambda t: np.where(t[:, 0] > 0, np.inf, 0.0), prior)(np.array([[-0.2], [0.2]]))
    with pytest.raises(ValueError, match="vectorized"):
        LogPosterior(lambda t: np.zeros((len(t), 1)), prior)(np.zeros((3, 1)))
    assert LogPosterior(lambda t: np.full(len(t), -np.inf), prior)(np.zeros((2, 1)))[0] == -np.inf
    with pytest.raises(InputError, match=r"theta: expected shape \(n, 1\), got \(2, 2\)"):
        LogPosterior(lambda t: np.zeros(len(t)), prior)(np.zeros((2, 2)))


def test_posterior_and_sampler_share_the_log_posterior(post1d, gauss1d):
    log_like, prior, _, _ = gauss1d
    theta = np.array([[0.3], [11.0], [-2.0]])
    expected = LogPosterior(log_like, prior)(theta)
    assert expected[1] == -np.inf
    np.testing.assert_array_equal(post1d.log_prob(theta), expected)
    np.testing.assert_array_equal(post1d.potential(theta), expected)
    # the sampler stores exactly this log posterior for its samples
    np.testing.assert_array_equal(LogPosterior(log_like, prior)(post1d.samples[:20]),
                                  post1d.log_probs[:20])


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.filterwarnings("ignore:sample_emcee")
@pytest.mark.parametrize("stream, progress, shown", [
    (io.StringIO, True, False),  # redirected / CI log: no bar even when asked for
    (_TTY, False, False),
    (_TTY, True, True),
])
def test_progress_bar_only_on_a_terminal(monkeypatch, stream, progress, shown):
    err = stream()
    monkeypatch.setattr(sys, "stderr", err)
    sample_posterior(lambda t: -0.5 * np.sum(t**2, axis=1), BoxUniform((-5.0,), (5.0,)), 50,
                     rng=0, max_steps=20, progress=progress, method="emcee")
    assert ("MCMC" in err.getvalue()) == shown


def test_load_refuses_other_format_version(post1d, tmp_path):
    post1d.save(tmp_path / "p")
    js = tmp_path / "p.json"
    summary = json.loads(js.read_text())
    summary["format_version"] = FORMAT_VERSION + 1
    js.write_text(json.dumps(summary))
    with pytest.raises(ValueError, match=f"format_version {FORMAT_VERSION + 1}"):
        Posterior.load(tmp_path / "p.npz")
    with pytest.raises(FileNotFoundError, match=r"as written by Posterior\.save"):
        Posterior.load(tmp_path / "missing")
