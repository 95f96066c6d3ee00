"""Posterior and manifold metrics against known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import gaussian_kde

from mfinfer.evaluation.metrics import (
    bias_and_width,
    c2st,
    log_prob_at_truth,
    manifold_distance,
    median_distance,
    mmd2,
    reconstruction_error,
)


def _mmd2_gaussians(mu: np.ndarray, s: float, h: float) -> float:
    """Population MMD² of N(0, s² I) vs N(mu, s² I) for k = exp(-|x-y|²/(2h²)).

    E k(X, X') with X - X' ~ N(m, 2 s² I) in d dims is (h²/(h²+2s²))^(d/2) exp(-|m|²/(2(h²+2s²))),
    so MMD² = 2 (h²/(h²+2s²))^(d/2) (1 - exp(-|mu|²/(2(h²+2s²)))).
    """
    c = h**2 + 2 * s**2
    return 2 * (h**2 / c) ** (len(mu) / 2) * (1 - np.exp(-mu @ mu / (2 * c)))


def test_mmd2_same_distribution_is_zero_within_noise():
    rng = np.random.default_rng(0)
    vals = np.array([mmd2(rng.normal(size=(300, 2)), rng.normal(size=(300, 2))) for _ in range(20)])
    sd = vals.std(ddof=1)
    assert abs(vals.mean()) < 3 * sd / np.sqrt(len(vals))
    assert np.all(np.abs(vals) < 4 * sd)
    assert vals.min() < 0 < vals.max()  # unbiased: scatters around 0


def test_mmd2_shifted_gaussians_match_closed_form():
    rng = np.random.default_rng(1)
    mu, s, h = np.array([1.0, 0.0]), 1.0, 1.0
    x = rng.normal(0.0, s, size=(3000, 2))
    y = mu + rng.normal(0.0, s, size=(3000, 2))
    expected = _mmd2_gaussians(mu, s, h)  # 0.1023
    # estimator std at n = 3000 is ~0.006 (measured over replicates); allow ~3.5 std
    assert mmd2(x, y, bandwidth=h) == pytest.approx(expected, abs=0.02)
    # a larger shift gives a larger discrepancy
    assert mmd2(x, y + 1.0, bandwidth=h) > mmd2(x, y, bandwidth=h)


def test_mmd2_default_bandwidth_is_reference_median():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 3)), 2.0 * rng.normal(size=(150, 3))
    h = median_distance(y)
    diffs = y[:, None, :] - y[None, :, :]
    iu = np.triu_indices(len(y), 1)
    assert h == pytest.approx(np.median(np.linalg.norm(diffs, axis=-1)[iu]))
    assert mmd2(x, y) == mmd2(x, y, bandwidth=h)
    assert mmd2(x, y) != mmd2(y, x)  # the bandwidth comes from the second argument


def test_mmd2_matches_brute_force_and_subsamples_deterministically():
    rng = np.random.default_rng(3)
    x, y, h = rng.normal(size=(40, 2)), rng.normal(0.5, 1, size=(30, 2)), 0.7

    def k(a, b):
        return np.exp(-np.sum((a[:, None] - b[None]) ** 2, -1) / (2 * h**2))

    kxx, kyy = k(x, x), k(y, y)
    brute = (
        (kxx.sum() - np.trace(kxx)) / (40 * 39)
        + (kyy.sum() - np.trace(kyy)) / (30 * 29)
        - 2 * k(x, y).mean()
    )
    assert mmd2(x, y, bandwidth=h) == pytest.approx(brute, rel=1e-12)
    big = rng.normal(size=(5000, 2))
    a = mmd2(big, big[::-1] + 0.1, bandwidth=1.0, max_n=500)
    assert a == mmd2(big, big[::-1] + 0.1, bandwidth=1.0, max_n=500)


def test_mmd2_rejects_bad_input():
    with pytest.raises(ValueError, match="columns"):
        mmd2(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2(np.random.default_rng(0).normal(size=(10, 2)), np.zeros((10, 2)))


def test_c2st_identical_and_separated():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
    assert abs(c2st(a, b) - 0.5) < 0.1
    assert c2st(a, b + 6.0) > 0.97


def test_log_prob_at_truth_single_sample_is_gaussian_density():
    theta_i, truth, h = np.array([[0.3, -0.2]]), np.array([0.0, 0.1]), 0.15
    r2 = np.sum((theta_i[0] - truth) ** 2)
    expected = -r2 / (2 * h**2) - np.log(2 * np.pi * h**2)  # p = 2
    assert log_prob_at_truth(theta_i, truth, h) == pytest.approx(expected, rel=1e-12)
    # two samples: average of the two kernel densities
    two = np.array([[0.0], [1.0]])
    dens = 0.5 * (np.exp(-0.5 * 0.2**2) + np.exp(-0.5 * 0.8**2)) / np.sqrt(2 * np.pi)
    assert log_prob_at_truth(two, np.array([0.2]), 1.0) == pytest.approx(np.log(dens))


def test_log_prob_at_truth_covariance_mode_matches_scipy():
    rng = np.random.default_rng(5)
    s = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 2]], size=300)
    t = np.array([0.3, -0.4])
    ref = gaussian_kde(s.T, bw_method=0.15).logpdf(t[:, None])[0]
    assert log_prob_at_truth(s, t, 0.15, scale="covariance") == pytest.approx(ref, rel=1e-10)


def test_bias_and_width_known_gaussian():
    z = np.random.default_rng(6).normal(size=(1000, 2))
    z = (z - z.mean(0)) / z.std(0, ddof=1)  # exactly mean 0, std 1
    samples = np.array([1.0, -2.0]) + z * np.array([0.5, 2.0])
    out = bias_and_width(samples, truth=np.array([0.0, -2.5]))
    np.testing.assert_allclose(out["bias"], [1.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(out["std"], [0.5, 2.0], atol=1e-12)
    np.testing.assert_allclose(out["pull"], [2.0, 0.25], atol=1e-12)


class _UnitCircle:
    def distance_to_manifold(self, x: np.ndarray) -> np.ndarray:
        return np.abs(np.linalg.norm(x, axis=1) - 1.0)


def test_manifold_distance_and_reconstruction_error():
    x = np.array([[2.0, 0.0], [0.0, 0.5], [0.6, 0.8]])
    assert manifold_distance(_UnitCircle(), x) == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    err, mean = reconstruction_error(
        np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[3.0, 4.0], [1.0, 1.0]])
    )
    np.testing.assert_allclose(err, [5.0, 0.0])
    assert mean == pytest.approx(2.5)
    with pytest.raises(ValueError, match="equal shapes"):
        reconstruction_error(np.zeros((2, 2)), np.zeros((3, 2)))


def test_inputs_are_checked_by_the_shared_validator():
    x = np.random.default_rng(7).normal(size=(20, 1))
    bad = x.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match=r"samples: 1 of 20 row\(s\) contain NaN or inf"):
        mmd2(bad, x)
    with pytest.raises(ValueError, match=r"reference: expected at least 2 row\(s\), got 1"):
        mmd2(x, x[:1])
    # a 1-d input is n samples of one parameter
    assert mmd2(x[:, 0], x[::-1, 0] + 0.3) == mmd2(x, x[::-1] + 0.3)
    assert log_prob_at_truth(x[:, 0], np.zeros(1)) == log_prob_at_truth(x, np.zeros(1))
