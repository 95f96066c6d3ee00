"""The mutation step of tempered SMC: π_β-invariant Metropolis-Hastings sweeps that adapt their
number and their step scale until the stage's own diagnostics pass.

Two kernels alternate: an independence proposal (a Gaussian KDE of the particles mixed with a wide
Gaussian, fitted once per stage) that can jump between modes, and a random walk scaled by the
particle covariance whose scale is tuned sweep by sweep to keep its acceptance rate in
:data:`ACCEPTANCE_BAND`. Sweeps continue until at least ``min_moved`` of the particles have moved
and no parameter's correlation between the stage's resampled and current particles exceeds
``max_correlation`` (the moves forgot where they started), or until ``max_moves`` sweeps.
Both proposals are fixed during a sweep, so every sweep leaves π_β invariant.

The correlation criterion for the number of moves is the one PyMC's SMC kernels use
(``pymc.smc.kernels.IMH(correlation_threshold=...)``); steering a random walk's acceptance rate into a
band is standard adaptive MCMC (Roberts & Rosenthal, "Examples of adaptive MCMC", JCGS 18 (2009)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["ACCEPTANCE_BAND", "Particles", "StageMoves", "mutate"]

#: Width of the defensive Gaussian component relative to the particle covariance.
INDEPENDENCE_SCALE = 1.5
#: Weight of the defensive Gaussian in the independence proposal (the rest is a KDE).
DEFENSIVE_WEIGHT = 0.2
#: Number of particles used as KDE centres (cost per sweep is N x this).
KDE_CENTRES = 500
#: Random-walk scale relative to the particle covariance, times 1/sqrt(p) (the optimum's 2.38).
RANDOM_WALK_SCALE = 2.38
#: The random walk's acceptance rate is steered into this band by rescaling its step.
ACCEPTANCE_BAND = (0.15, 0.5)
#: Bounds of the random walk's scale factor (relative to RANDOM_WALK_SCALE / sqrt(p)).
SCALE_LIMITS = (0.02, 3.0)


@dataclass
class Particles:
    """N particles: θ (N, p), their log-likelihood (N,; -inf outside the support) and log prior."""

    theta: np.ndarray
    ll: np.ndarray
    lpri: np.ndarray

    def take(self, idx: np.ndarray) -> Particles:
        return Particles(self.theta[idx], self.ll[idx], self.lpri[idx])


@dataclass(frozen=True)
class StageMoves:
    """What the mutation of one stage did.

    Attributes:
        sweeps: MH sweeps run.
        acceptance: Mean acceptance rate over the sweeps.
        moved: Fraction of particles that moved at least once.
        correlation: Largest |correlation| over parameters between the stage's resampled and
            final particles.
        scale: The random walk's scale factor after the stage (carried to the next stage).
        passed: Whether ``moved >= min_moved`` and ``correlation <= max_correlation``.
    """

    sweeps: int
    acceptance: float
    moved: float
    correlation: float
    scale: float
    passed: bool


def _gauss_logpdf(x: np.ndarray, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """log N(x; mean, L Lᵀ) up to a constant shared by all x, (n, p) -> (n,)."""
    z = np.linalg.solve(chol, (x - mean).T).T
    return -0.5 * np.sum(z**2, axis=1)


class IndependenceProposal:
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


def _correlation(start: np.ndarray, now: np.ndarray) -> float:
    """Largest |corr(start_j, now_j)| over parameters j (0 where a column is constant)."""
    a, b = start - start.mean(0), now - now.mean(0)
    den = np.sqrt((a**2).sum(0) * (b**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(den > 0, (a * b).sum(0) / den, 0.0)
    return float(np.max(np.abs(corr)))


def _rescale(scale: float, acceptance: float) -> float:
    """The random walk's next scale factor: smaller below the acceptance band, larger above."""
    low, high = ACCEPTANCE_BAND
    if acceptance < low:
        scale *= max(0.3, acceptance / low)
    elif acceptance > high:
        scale *= min(2.0, 1.0 + (acceptance - high) * 2)
    return float(np.clip(scale, *SCALE_LIMITS))


Evaluate = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


def _sweep(parts: Particles, beta: float, prop: np.ndarray, log_q: np.ndarray,
           evaluate: Evaluate, rng: np.random.Generator) -> np.ndarray:
    """One MH sweep of all particles towards π_β with proposals ``prop`` (N, p) and log proposal
    ratios ``log_q`` (N,); updates ``parts`` in place and returns the accepted mask (N,)."""
    ll_prop, lpri_prop = evaluate(prop)
    with np.errstate(invalid="ignore"):
        log_a = beta * (ll_prop - parts.ll) + (lpri_prop - parts.lpri) + log_q
    acc = np.log(rng.random(len(prop))) < np.where(np.isfinite(log_a), log_a, -np.inf)
    parts.theta[acc], parts.ll[acc], parts.lpri[acc] = prop[acc], ll_prop[acc], lpri_prop[acc]
    return acc


def mutate(parts: Particles, beta: float, mean: np.ndarray, cov: np.ndarray, scale: float,
           evaluate: Evaluate, rng: np.random.Generator, *, min_moved: float,
           max_correlation: float, max_moves: int) -> StageMoves:
    """Move the (resampled) particles towards π_β until the stage's diagnostics pass.

    Arguments:
        parts: The particles, updated in place.
        beta: The stage's temperature.
        mean, cov: Weighted moments (p,), (p, p) of the particles before resampling.
        scale: The random walk's scale factor to start from.
        evaluate: θ (m, p) -> (log-likelihood, log prior), each (m,).
        rng: Generator.
        min_moved, max_correlation, max_moves: see :class:`~mfinfer.inference.spec.SMCOptions`.

    Returns:
        A :class:`StageMoves`.
    """
    n, p = parts.theta.shape
    chol = np.linalg.cholesky(cov)
    indep = IndependenceProposal(parts.theta, mean, chol, rng)
    start = parts.theta.copy()
    moved = np.zeros(n, dtype=bool)
    accepted, sweeps, corr = 0, 0, 1.0
    while sweeps < max_moves:
        if sweeps % 2 == 0:  # the independence proposal: global, jumps between modes
            prop = indep.sample(n, rng)
            acc = _sweep(parts, beta, prop, indep.log_pdf(parts.theta) - indep.log_pdf(prop),
                         evaluate, rng)
        else:  # the random walk: local, its scale steered into the acceptance band
            step = (scale * RANDOM_WALK_SCALE / math.sqrt(p)) * chol
            prop = parts.theta + rng.standard_normal((n, p)) @ step.T
            acc = _sweep(parts, beta, prop, np.zeros(n), evaluate, rng)
            scale = _rescale(scale, float(acc.mean()))
        moved |= acc
        accepted += int(acc.sum())
        sweeps += 1
        corr = _correlation(start, parts.theta)
        if sweeps >= 2 and moved.mean() >= min_moved and corr <= max_correlation:
            break
    passed = bool(moved.mean() >= min_moved and corr <= max_correlation)
    return StageMoves(sweeps, accepted / (n * sweeps), float(moved.mean()), corr, scale, passed)
