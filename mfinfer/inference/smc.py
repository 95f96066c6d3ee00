"""Adaptive tempered sequential Monte Carlo (SMC) for low-dimensional θ.

Particles move from the prior to the posterior through π_β(θ) ∝ prior(θ) · exp(β log_like(θ)),
0 = β_0 < β_1 < ... < β_T = 1. Each next β is chosen by bisection so that the effective sample
size (ESS) of the incremental weights is ``ess_fraction · N``; the particles are then resampled
(systematic) and moved by Metropolis-Hastings steps that leave π_β invariant. The moves alternate an
independence proposal (a Gaussian KDE of the particles mixed with a wide Gaussian) with a random
walk scaled by the particle covariance; at β = 1 sweeps repeat until almost every particle has
moved. Every
likelihood call evaluates all N particles at once, so a batched model sees one big batch.

The estimator is exact in the limit N → ∞ (importance sampling + π_β-invariant moves; the
proposals are fitted to the particles before each sweep and fixed during it).

References:
    Del Moral, Doucet & Jasra, "Sequential Monte Carlo samplers", JRSS B 68 (2006).
    Jasra, Stephens, Doucet & Tsagaris, "Inference for Lévy-driven stochastic volatility models
    via adaptive sequential Monte Carlo", Scand. J. Stat. 38 (2011) (ESS-adaptive temperatures).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from mfinfer.inference.potential import LogLike, LogPosterior
from mfinfer.priors import Prior

__all__ = ["SMCResult", "sample_smc"]

#: Width of the defensive Gaussian component relative to the particle covariance.
INDEPENDENCE_SCALE = 1.5
#: Weight of the defensive Gaussian in the independence proposal (the rest is a KDE).
DEFENSIVE_WEIGHT = 0.2
#: Number of particles used as KDE centres (cost per sweep is N x this).
KDE_CENTRES = 500
#: Random-walk scale relative to the particle covariance (2.38 / sqrt(p) is the optimum).
RANDOM_WALK_SCALE = 2.38


@dataclass(frozen=True)
class SMCResult:
    """Output of :func:`sample_smc`.

    Attributes:
        samples: Equally weighted posterior samples, shape (n, p).
        log_prob: Unnormalised log posterior (log_like + log_prior) of each sample, (n,).
        betas: The temperature ladder β_1..β_T (the last is 1), shape (T,).
        stage_ess: ESS of the importance weights at each stage before resampling, (T,).
        stage_acceptance: Mean MH acceptance rate of the moves at each stage, (T,).
        stage_moves: Number of MH sweeps at each stage, (T,).
        final_ess: ESS of the weights at β = 1, before the last resample-move.
        moved_fraction: Fraction of particles that moved at least once in the last stage's
            sweeps (duplicates from resampling that never moved reduce diversity).
        log_evidence: Estimate of log ∫ prior(θ) exp(log_like(θ)) dθ.
        num_particles: N.
        num_evaluations: Number of θ points at which ``log_like`` was evaluated.
        converged: ``final_ess >= ess_fraction · N / 2`` and ``moved_fraction >= min_moved``.
    """

    samples: np.ndarray
    log_prob: np.ndarray
    betas: np.ndarray
    stage_ess: np.ndarray
    stage_acceptance: np.ndarray
    stage_moves: np.ndarray
    final_ess: float
    moved_fraction: float
    log_evidence: float
    num_particles: int
    num_evaluations: int
    converged: bool


def _ess(log_w: np.ndarray) -> float:
    """Kish effective sample size of log-weights (n,)."""
    w = np.exp(log_w - log_w.max())
    return float(w.sum() ** 2 / np.sum(w**2))


def _next_beta(ll: np.ndarray, beta: float, target: float) -> float:
    """The largest β' in (β, 1] with ESS(exp((β' - β) ll)) >= target (bisection)."""
    if _ess((1.0 - beta) * ll) >= target:
        return 1.0
    lo, hi = beta, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _ess((mid - beta) * ll) >= target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return max(lo, beta + 1e-12)


def _systematic(log_w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Systematic resampling: indices (n,) drawn with probability ∝ exp(log_w)."""
    n = len(log_w)
    w = np.exp(log_w - log_w.max())
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    return np.searchsorted(cdf, (rng.random() + np.arange(n)) / n)


def _gauss_logpdf(x: np.ndarray, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """log N(x; mean, L Lᵀ) up to a constant shared by all x, (n, p) -> (n,)."""
    z = np.linalg.solve(chol, (x - mean).T).T
    return -0.5 * np.sum(z**2, axis=1)


class _IndependenceProposal:
    """A mixture of a Gaussian KDE on the particles and a wide Gaussian (defensive), fixed for
    one sweep: draws (n, p) and evaluates its log density (up to a shared constant)."""

    def __init__(self, theta: np.ndarray, mean: np.ndarray, chol: np.ndarray,
                 rng: np.random.Generator) -> None:
        n, p = theta.shape
        m = min(n, KDE_CENTRES)
        self.centres = theta[rng.choice(n, size=m, replace=False)]
        silverman = (4.0 / (p + 2)) ** (1 / (p + 4)) * m ** (-1 / (p + 4))
        self.kde_chol = silverman * chol
        self.wide_chol = INDEPENDENCE_SCALE * chol
        self.mean = mean
        # Normalisations relative to each other (the shared (2π)^(p/2) cancels).
        self.log_norm_kde = -np.log(np.diag(self.kde_chol)).sum()
        self.log_norm_wide = -np.log(np.diag(self.wide_chol)).sum()

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        p = self.mean.shape[0]
        wide = rng.random(n) < DEFENSIVE_WEIGHT
        eps = rng.standard_normal((n, p))
        kde = self.centres[rng.integers(len(self.centres), size=n)] + eps @ self.kde_chol.T
        return np.where(wide[:, None], self.mean + eps @ self.wide_chol.T, kde)

    def log_pdf(self, x: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.kde_chol)
        zc = self.centres @ inv.T
        out = np.empty(len(x))
        zc2 = np.sum(zc**2, axis=1)
        for start in range(0, len(x), 2000):
            zx = x[start:start + 2000] @ inv.T
            d2 = np.sum(zx**2, axis=1)[:, None] + zc2[None, :] - 2.0 * zx @ zc.T
            mx = (-0.5 * d2).max(axis=1)
            out[start:start + 2000] = mx + np.log(np.mean(np.exp(-0.5 * d2 - mx[:, None]), 1))
        kde = np.log1p(-DEFENSIVE_WEIGHT) + self.log_norm_kde + out
        wide = (np.log(DEFENSIVE_WEIGHT) + self.log_norm_wide
                + _gauss_logpdf(x, self.mean, self.wide_chol))
        return np.logaddexp(kde, wide)


def sample_smc(
    log_like: LogLike,
    prior: Prior,
    num_samples: int,
    *,
    num_particles: int | None = None,
    ess_fraction: float = 0.5,
    min_moved: float = 0.95,
    max_moves: int = 20,
    max_stages: int = 200,
    rng: np.random.Generator | int | None = None,
) -> SMCResult:
    """Sample p(θ | x) ∝ exp(log_like(θ)) · prior(θ) by adaptive tempered SMC.

    Arguments:
        log_like: Vectorized log-likelihood, θ (m, p) -> (m,); only called inside the prior
            support, once per sweep with all particles.
        prior: Prior over θ (see :mod:`mfinfer.priors`).
        num_samples: Number of samples to return.
        num_particles: N (default ``num_samples``); at least ``num_samples``.
        ess_fraction: Target ESS / N of each tempering step, in (0, 1).
        min_moved: At β = 1, MH sweeps continue (up to ``max_moves``) until this fraction of
            the particles has moved at least once; intermediate stages do one sweep.
        max_moves: Upper bound on MH sweeps at β = 1.
        max_stages: Upper bound on the number of temperatures.
        rng: Seed or generator.

    Returns:
        An :class:`SMCResult`; a ``UserWarning`` is raised when it is not ``converged``.

    Example:
        >>> import numpy as np
        >>> from mfinfer.priors import BoxUniform
        >>> res = sample_smc(lambda t: -0.5 * np.sum(t**2, axis=1), BoxUniform((-5.0,), (5.0,)),
        ...                  1000, rng=0)
        >>> res.samples.shape, res.converged
        ((1000, 1), True)
    """
    n_out = int(num_samples)
    if n_out < 1:
        raise ValueError(f"num_samples: expected a positive integer, got {num_samples}")
    n = n_out if num_particles is None else int(num_particles)
    if n < n_out:
        raise ValueError(f"num_particles: expected >= num_samples = {n_out}, got {n}")
    if not 0.0 < ess_fraction < 1.0:
        raise ValueError(f"ess_fraction: expected a value in (0, 1), got {ess_fraction}")
    if not 0.0 < min_moved <= 1.0:
        raise ValueError(f"min_moved: expected a value in (0, 1], got {min_moved}")
    rng = np.random.default_rng(rng)
    log_post = LogPosterior(log_like, prior)
    p = prior.dim

    def evaluate(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log_like, log_prior) of (m, p) points; log_like is -inf outside the support."""
        lpri = prior.log_prob(theta)
        return log_post(theta) - np.where(np.isfinite(lpri), lpri, 0.0), lpri

    theta = prior.sample(n, rng)
    ll, lpri = evaluate(theta)
    n_eval = n
    if not np.isfinite(ll).any():
        raise ValueError("sample_smc: log_like is -inf at every prior draw; check the likelihood")
    beta, log_z = 0.0, 0.0
    betas: list[float] = []
    stage_ess: list[float] = []
    stage_acc: list[float] = []
    stage_moves: list[int] = []
    final_ess, moved_frac = float(n), 0.0
    ll_fin = np.where(np.isfinite(ll), ll, -np.inf)
    while beta < 1.0 and len(betas) < max_stages:
        new_beta = _next_beta(np.where(np.isfinite(ll_fin), ll_fin, -1e300), beta, ess_fraction * n)
        log_w = (new_beta - beta) * ll_fin
        log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
        mx = log_w.max()
        log_z += float(mx + np.log(np.mean(np.exp(log_w - mx))))
        ess = _ess(log_w)
        beta = new_beta
        betas.append(beta)
        stage_ess.append(ess)
        if beta >= 1.0:
            final_ess = ess
        # Moment estimates from the weighted particles set the proposals' shape.
        w = np.exp(log_w - mx)
        w /= w.sum()
        mean = w @ theta
        cov = np.atleast_2d(np.cov(theta.T, aweights=w)) + 1e-12 * np.eye(p)
        idx = _systematic(log_w, rng)
        theta, ll_fin, lpri = theta[idx], ll_fin[idx], lpri[idx]
        chol = np.linalg.cholesky(cov)
        indep = _IndependenceProposal(theta, mean, chol, rng)
        rw_chol = (RANDOM_WALK_SCALE / math.sqrt(p)) * chol
        moved = np.zeros(n, dtype=bool)
        accepted, sweeps = 0, 0
        while sweeps < max_moves:
            # Two independence sweeps (a KDE of the particles, plus a wide Gaussian for
            # safety), then a random-walk sweep that explores locally, and so on.
            independent = sweeps % 3 != 2
            if independent:
                prop = indep.sample(n, rng)
                log_q = indep.log_pdf(theta) - indep.log_pdf(prop)
            else:
                prop = theta + rng.standard_normal((n, p)) @ rw_chol.T
                log_q = np.zeros(n)
            ll_prop, lpri_prop = evaluate(prop)
            n_eval += n
            with np.errstate(invalid="ignore"):
                log_a = beta * (ll_prop - ll_fin) + (lpri_prop - lpri) + log_q
            acc = np.log(rng.random(n)) < np.where(np.isfinite(log_a), log_a, -np.inf)
            theta[acc], ll_fin[acc], lpri[acc] = prop[acc], ll_prop[acc], lpri_prop[acc]
            moved |= acc
            accepted += int(acc.sum())
            sweeps += 1
            # Intermediate stages need one sweep to refresh duplicates; the last stage sweeps
            # until (almost) every particle has moved, so the output has no stale copies.
            if beta < 1.0 or moved.mean() >= min_moved:
                break
        stage_acc.append(accepted / (n * sweeps))
        stage_moves.append(sweeps)
        moved_frac = float(moved.mean())

    converged = bool(beta >= 1.0 and final_ess >= 0.5 * ess_fraction * n
                     and moved_frac >= min_moved)
    if not converged:
        warnings.warn(
            f"sample_smc: not converged (beta reached {beta:.3g} in {len(betas)} stages, final "
            f"ESS {final_ess:.0f} of {n}, {moved_frac:.0%} of particles moved in the last "
            f"stage, wanted {min_moved:.0%}); raise max_stages / max_moves or num_particles",
            stacklevel=2,
        )
    keep = rng.choice(n, size=n_out, replace=False) if n_out < n else np.arange(n)
    return SMCResult(
        samples=np.ascontiguousarray(theta[keep]),
        log_prob=np.ascontiguousarray(ll_fin[keep] + lpri[keep]),
        betas=np.asarray(betas),
        stage_ess=np.asarray(stage_ess),
        stage_acceptance=np.asarray(stage_acc),
        stage_moves=np.asarray(stage_moves, dtype=int),
        final_ess=float(final_ess),
        moved_fraction=moved_frac,
        log_evidence=log_z,
        num_particles=n,
        num_evaluations=n_eval,
        converged=converged,
    )
