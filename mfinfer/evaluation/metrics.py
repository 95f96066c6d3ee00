"""Metrics for posteriors and manifolds, as used in the M-flow paper (arXiv:2003.13913).

- :func:`mmd2`: unbiased squared maximum mean discrepancy between posterior samples and
  reference (true-posterior) samples, Gaussian kernel with median-heuristic bandwidth.
- :func:`c2st`: classifier two-sample test accuracy (0.5: indistinguishable, 1: disjoint).
- :func:`log_prob_at_truth`: log of a Gaussian KDE of posterior samples at the true θ*.
- :func:`bias_and_width`: posterior mean minus truth, posterior std, and their ratio.
- :func:`manifold_distance`, :func:`reconstruction_error`: how close generated or projected
  points are to the true manifold / to the inputs.

Each is registered, with what it needs and how it is aggregated, in
:mod:`mfinfer.evaluation.registry`.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np
from scipy.special import logsumexp

from mfinfer._validation import as_matrix
from mfinfer.errors import InputError

__all__ = [
    "C2ST_CLASSIFIERS",
    "bias_and_width",
    "c2st",
    "log_prob_at_truth",
    "manifold_distance",
    "median_distance",
    "mmd2",
    "reconstruction_error",
]

_BLOCK = 2048  # rows per kernel block: at most _BLOCK**2 float64 (32 MiB) in memory at once


def _column(a: Any) -> Any:
    """A 1-d sample (n,) of one parameter as a column (n, 1); anything else unchanged."""
    if np.ndim(a) == 1:
        return a[:, None] if hasattr(a, "shape") else np.asarray(a)[:, None]
    return a


def _as_samples(a: Any, name: str, dim: int | None = None, *, min_rows: int = 2,
                finite: bool = True) -> np.ndarray:
    """Samples as a float64 (n, p) array; a 1-d input is n samples of one parameter."""
    a = as_matrix(_column(a), None, name, finite=finite, min_rows=min_rows, allow_row=False)
    if dim is not None and a.shape[1] != dim:
        raise InputError(f"{name}: expected {dim} columns to match the other sample, got {a.shape}")
    return a


def _truth(truth: Any, samples: np.ndarray) -> np.ndarray:
    """The true θ* as a finite (p,) array matching the samples' columns."""
    t = np.asarray(truth, dtype=float).reshape(-1)
    if t.shape != (samples.shape[1],):
        raise InputError(f"truth: expected shape ({samples.shape[1]},) to match samples "
                         f"{samples.shape}, got {t.shape}")
    if not np.isfinite(t).all():
        raise InputError(f"truth: expected finite values, got {t.tolist()}")
    return t


def _subsample(a: np.ndarray, max_n: int | None, seed: int) -> np.ndarray:
    """Deterministic subset of at most max_n rows (without replacement)."""
    if max_n is None or len(a) <= max_n:
        return a
    idx = np.random.default_rng(seed).choice(len(a), size=max_n, replace=False)
    return a[np.sort(idx)]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances, (n, p), (m, p) -> (n, m)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def _kernel_sum(a: np.ndarray, b: np.ndarray, gamma: float, same: bool) -> float:
    """Σ_ij exp(-gamma |a_i - b_j|²), excluding i == j when ``same`` (a is b), in blocks."""
    total = 0.0
    for i in range(0, len(a), _BLOCK):
        ai = a[i : i + _BLOCK]
        for j in range(0, len(b), _BLOCK):
            k = np.exp(-gamma * _sq_dists(ai, b[j : j + _BLOCK]))
            if same and i == j:
                np.fill_diagonal(k, 0.0)
            total += float(k.sum())
    return total


def median_distance(samples: np.ndarray, max_n: int = 2000, seed: int = 0) -> float:
    """Median Euclidean distance over all pairs i < j of ``samples`` (n, p).

    At most ``max_n`` rows (a deterministic subset) are used, i.e. ~2 million pairs.
    """
    a = _subsample(_as_samples(samples, "samples"), max_n, seed)
    iu = np.triu_indices(len(a), k=1)
    return float(np.median(np.sqrt(_sq_dists(a, a)[iu])))


def mmd2(
    samples: np.ndarray,
    reference: np.ndarray,
    bandwidth: float | None = None,
    *,
    max_n: int | None = 10_000,
    seed: int = 0,
) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy MMD²(samples, reference).

    Kernel: ``k(x, y) = exp(-|x - y|² / (2 h²))`` with bandwidth ``h``. By default ``h`` is
    the median pairwise Euclidean distance of the *reference* samples (the paper's choice:
    median distance of true-posterior samples; see :func:`median_distance`). The estimator
    (Gretton et al. 2012, eq. 3) is::

        MMD² = 1/(n(n-1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m-1)) Σ_{i≠j} k(y_i, y_j)
               - 2/(n m) Σ_{i,j} k(x_i, y_j)

    It is unbiased, so it can be slightly negative when the distributions agree.

    Arguments:
        samples: Samples x, shape (n, p), e.g. from an approximate posterior.
        reference: Samples y, shape (m, p), e.g. from the true posterior.
        bandwidth: Kernel bandwidth h > 0 in the units of the samples; ``None``: median
            heuristic on ``reference``.
        max_n: Use at most this many rows of each input (deterministic subset from
            ``seed``); the cost is O((n + m)² p) time and O(2048²) memory. ``None``: all.
        seed: Seed of the subsampling.

    Returns:
        The estimate, a float.

    References:
        Gretton et al., "A Kernel Two-Sample Test", JMLR 13 (2012).
        Brehmer & Cranmer, arXiv:2003.13913, section 5.2.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> abs(mmd2(rng.normal(size=(500, 2)), rng.normal(size=(500, 2)))) < 0.01
        True
    """
    x = _as_samples(samples, "samples")
    y = _as_samples(reference, "reference", dim=x.shape[1])
    x, y = _subsample(x, max_n, seed), _subsample(y, max_n, seed + 1)
    if bandwidth is None:
        bandwidth = median_distance(y, seed=seed)
    if not (np.isfinite(bandwidth) and bandwidth > 0):
        raise InputError(
            f"bandwidth: expected a finite h > 0, got {bandwidth}; with the default median "
            "heuristic this means the reference samples are (nearly) all identical"
        )
    gamma = 0.5 / float(bandwidth) ** 2
    n, m = len(x), len(y)
    kxx = _kernel_sum(x, x, gamma, same=True) / (n * (n - 1))
    kyy = _kernel_sum(y, y, gamma, same=True) / (m * (m - 1))
    kxy = _kernel_sum(x, y, gamma, same=False) / (n * m)
    return float(kxx + kyy - 2.0 * kxy)


#: The classifiers of :func:`c2st`: sbi's MLP (the default) and sklearn's random forest.
C2ST_CLASSIFIERS = ("mlp", "rf")


def c2st(
    samples: np.ndarray,
    reference: np.ndarray,
    seed: int = 0,
    folds: int = 5,
    *,
    classifier: Literal["mlp", "rf"] = "mlp",
    max_n: int | None = 10_000,
) -> float:
    """Classifier two-sample test: cross-validated accuracy of telling samples from reference.

    Runs :func:`sbi.utils.metrics.c2st`: inputs z-scored with the mean and std of ``reference``,
    ``folds``-fold shuffled cross-validation, mean test accuracy. Both sets are first cut to the
    same size (deterministic subset), so that chance level is exactly 0.5.

    The default classifier is sbi's ``"mlp"``: scikit-learn's ``MLPClassifier`` with two hidden
    layers of 10·p ReLU units, adam, at most 1000 iterations, early stopping after 50 without
    improvement; the classifier of the sbi benchmark (sbibm), whose C2ST numbers users compare
    with. ``"rf"`` is sklearn's ``RandomForestClassifier`` with its defaults (what sbi's own
    ``c2st`` defaults to, and what mfinfer used before): it is less sensitive to small shifts
    (e.g. 0.52 where the MLP gives 0.56 and the Bayes-optimal classifier 0.56, for a 0.3σ shift
    of one coordinate of a 2-d Gaussian at 10k samples; see the README).

    Arguments:
        samples: Samples, shape (n, p).
        reference: Reference samples, shape (m, p).
        seed: Seed of the classifier, the folds and the subsampling.
        folds: Number of cross-validation folds.
        classifier: ``"mlp"`` (default) or ``"rf"``.
        max_n: Use at most this many rows of each set.

    Returns:
        Mean test accuracy in [0, 1]: ~0.5 for identical distributions, ~1 for disjoint.

    Raises:
        InputError: an unknown classifier, fewer than 2 folds, or too few samples for the folds.
    """
    import torch
    from sbi.utils.metrics import c2st as sbi_c2st

    if classifier not in C2ST_CLASSIFIERS:
        raise InputError(f"classifier: must be one of {C2ST_CLASSIFIERS}, got {classifier!r}")
    if folds < 2:
        raise InputError(f"folds: expected at least 2 cross-validation folds, got {folds}")
    x = _as_samples(samples, "samples")
    y = _as_samples(reference, "reference", dim=x.shape[1])
    n = min(len(x), len(y), max_n or max(len(x), len(y)))
    x, y = _subsample(x, n, seed), _subsample(y, n, seed + 1)
    if n < 2 * folds:
        raise InputError(
            f"c2st: need at least {2 * folds} samples per set for {folds} folds, got {n}"
        )
    acc = sbi_c2st(
        torch.as_tensor(y, dtype=torch.float32),
        torch.as_tensor(x, dtype=torch.float32),
        seed=seed,
        n_folds=folds,
        classifier=classifier,
    )
    return float(acc)


def log_prob_at_truth(
    samples: np.ndarray,
    truth: np.ndarray,
    bandwidth: float = 0.15,
    *,
    scale: Literal["absolute", "covariance"] = "absolute",
) -> float:
    """Log density at θ* of a Gaussian kernel density estimate of posterior samples.

    With ``scale="absolute"`` (default; the paper's LHC metric with h = 0.15 in the
    units of θ) the estimate is the isotropic KDE::

        log p̂(θ*) = log( 1/n Σ_i N(θ* | θ_i, h² I_p) )
                  = logsumexp_i(-|θ* - θ_i|² / (2 h²)) - log n - (p/2) log(2π h²)

    With ``scale="covariance"`` the kernel covariance is ``h² Σ̂`` (Σ̂ the sample
    covariance), which is :class:`scipy.stats.gaussian_kde` with ``bw_method=h``.

    Arguments:
        samples: Posterior samples θ_i, shape (n, p); n >= 1 (n >= 2 for "covariance").
        truth: True parameter θ*, shape (p,).
        bandwidth: h > 0.
        scale: Kernel convention, see above.

    Returns:
        log p̂(θ*), a float (``-inf`` if it underflows).

    Example:
        >>> float(np.round(log_prob_at_truth(np.zeros((1, 1)), np.zeros(1), 1.0), 4))
        -0.9189
    """
    s = _as_samples(samples, "samples", min_rows=1)
    n, p = s.shape
    t = _truth(truth, s)
    if not (np.isfinite(bandwidth) and bandwidth > 0):
        raise InputError(f"bandwidth: expected a finite h > 0, got {bandwidth}")
    if scale == "absolute":
        sq = np.sum((s - t) ** 2, axis=1) / bandwidth**2
        log_det = p * np.log(bandwidth)  # log sqrt|h² I|
    elif scale == "covariance":
        if n < 2:
            raise InputError("samples: scale='covariance' needs n >= 2 samples for a covariance")
        cov = np.atleast_2d(np.cov(s, rowvar=False)) * bandwidth**2
        chol = np.linalg.cholesky(cov)
        z = np.linalg.solve(chol, (s - t).T)
        sq = np.sum(z**2, axis=0)
        log_det = float(np.sum(np.log(np.diag(chol))))
    else:
        raise InputError(f"scale: must be one of ('absolute', 'covariance'), got {scale!r}")
    return float(logsumexp(-0.5 * sq) - np.log(n) - 0.5 * p * np.log(2 * np.pi) - log_det)


def bias_and_width(samples: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-parameter bias and width of a posterior relative to the true θ*.

    Arguments:
        samples: Posterior samples, shape (n, p), n >= 2.
        truth: True parameter, shape (p,).

    Returns:
        ``{"bias": mean - truth, "std": std (ddof=1), "pull": |bias| / std}``, each (p,).
    """
    s = _as_samples(samples, "samples")
    t = _truth(truth, s)
    bias = s.mean(axis=0) - t
    std = s.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = np.abs(bias) / std
    return {"bias": bias, "std": std, "pull": pull}


class _HasManifold(Protocol):
    def distance_to_manifold(self, x: np.ndarray) -> np.ndarray: ...


def manifold_distance(simulator: _HasManifold, x: np.ndarray) -> float:
    """Mean Euclidean distance of points x (n, D) to the simulator's true manifold.

    Arguments:
        simulator: Anything with ``distance_to_manifold(x) -> (n,)`` (see
            :class:`simulators.base.Simulator`).
        x: Points, e.g. samples generated by a flow, shape (n, D).
    """
    d = np.asarray(simulator.distance_to_manifold(np.asarray(x, dtype=float)), dtype=float)
    if d.ndim != 1 or len(d) != len(x):
        raise InputError(f"distance_to_manifold: expected shape ({len(x)},), got {d.shape}")
    return float(d.mean())


def reconstruction_error(x: np.ndarray, x_proj: np.ndarray) -> tuple[np.ndarray, float]:
    """Euclidean distance between inputs and their projections onto the learned manifold.

    Arguments:
        x: Inputs, shape (n, D).
        x_proj: Reconstructions g(h(x)), shape (n, D).

    Returns:
        ``(per_event, mean)``: distances of shape (n,) and their mean.
    """
    x = as_matrix(x, None, "x", allow_row=False)
    x_proj = as_matrix(x_proj, None, "x_proj", allow_row=False)
    if x.shape != x_proj.shape:
        raise InputError(
            f"x, x_proj: expected equal shapes (n, D), got {x.shape} and {x_proj.shape}"
        )
    err = np.linalg.norm(x - x_proj, axis=1)
    return err, float(err.mean())
