"""Adaptive tempered sequential Monte Carlo (SMC) that tunes itself until its diagnostics pass.

Particles move from the prior to the posterior through π_β(θ) ∝ prior(θ) · exp(β log_like(θ)),
0 = β_0 < β_1 < ... < β_T = 1. Each tempering stage has three named steps:

1. :func:`_reweight`: the next β by bisection, so that the effective sample size (ESS) of the
   incremental weights is ``ess_fraction · N``;
2. :func:`_systematic` resampling;
3. :func:`~mfinfer.inference.smc_moves.mutate`: Metropolis-Hastings sweeps that leave π_β
   invariant, alternating an independence proposal (KDE of the particles + a wide Gaussian) and a
   random walk whose step is rescaled until its acceptance rate is in a band; sweeps continue
   until the stage's diagnostics pass (at least ``min_moved`` of the particles moved, and no
   parameter's correlation between the stage's start and end exceeds ``max_correlation``), capped
   at ``max_moves`` sweeps.

The result records what it did: the temperatures, the sweeps, acceptance, moved fraction and
correlation of every stage, and ``converged`` (every stage passed and the final ESS is at least half
the target). Every likelihood call evaluates all N particles at once. The estimator is exact in the
limit N → ∞ (importance sampling + π_β-invariant moves whose proposals are fixed within a sweep).

References:
    Del Moral, Doucet & Jasra, "Sequential Monte Carlo samplers", JRSS B 68 (2006).
    Jasra, Stephens, Doucet & Tsagaris, "Inference for Lévy-driven stochastic volatility models
    via adaptive sequential Monte Carlo", Scand. J. Stat. 38 (2011) (ESS-adaptive temperatures).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mfinfer.inference.potential import LogLike, LogPosterior
from mfinfer.inference.smc_moves import Particles, StageMoves, mutate
from mfinfer.inference.spec import SMCOptions, num_samples_of
from mfinfer.priors import PriorLike, as_prior

__all__ = ["SMCResult", "sample_smc"]

log = logging.getLogger("mfinfer.inference")


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
        moved_fraction: Fraction of particles that moved at least once in the last stage.
        log_evidence: Estimate of log ∫ prior(θ) exp(log_like(θ)) dθ.
        num_particles: N.
        num_evaluations: Number of θ points at which ``log_like`` was evaluated.
        converged: β reached 1, every stage's diagnostics passed within ``max_moves`` sweeps, and
            ``final_ess >= ess_fraction · N / 2``.
        stage_moved: Fraction of particles moved at each stage, (T,).
        stage_correlation: Largest start-end correlation over parameters at each stage, (T,).
        stage_scale: The random walk's scale factor after each stage, (T,).
        reason: Why it is not converged, empty when converged.
        fallback: Why ``method="auto"`` ran SMC instead of the grid (None: SMC was asked for).
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
    stage_moved: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stage_correlation: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stage_scale: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reason: str = ""
    fallback: str | None = None


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


def _reweight(ll: np.ndarray, beta: float, target: float) -> tuple[float, np.ndarray, float]:
    """The next temperature and the incremental log-weights (N,), and the log-evidence increment."""
    new_beta = _next_beta(np.where(np.isfinite(ll), ll, -1e300), beta, target)
    with np.errstate(invalid="ignore"):
        log_w = (new_beta - beta) * ll
    log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
    mx = log_w.max()
    return new_beta, log_w, float(mx + np.log(np.mean(np.exp(log_w - mx))))


def _moments(theta: np.ndarray, log_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean (p,) and covariance (p, p) of the particles (they shape the proposals)."""
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    p = theta.shape[1]
    cov = np.atleast_2d(np.cov(theta.T, aweights=w)) + 1e-12 * np.eye(p)
    return w @ theta, cov


@dataclass
class _Ladder:
    """The per-stage record of a run (lists filled stage by stage)."""

    betas: list[float] = field(default_factory=list)
    ess: list[float] = field(default_factory=list)
    moves: list[StageMoves] = field(default_factory=list)

    def array(self, name: str, dtype: Any = float) -> np.ndarray:
        return np.asarray([getattr(m, name) for m in self.moves], dtype=dtype)


def _verdict(ladder: _Ladder, beta: float, n: int, opts: SMCOptions) -> str:
    """Why the run is not converged, in words ("" when it is)."""
    if beta < 1.0:
        return f"beta reached only {beta:.3g} after max_stages={opts.max_stages} stages"
    failed = [i for i, m in enumerate(ladder.moves) if not m.passed]
    if failed:
        m = ladder.moves[failed[-1]]
        return (f"{len(failed)} of {len(ladder.moves)} stages did not mix within max_moves="
                f"{opts.max_moves} sweeps (last: stage {failed[-1] + 1}, {m.moved:.0%} moved, "
                f"correlation {m.correlation:.2f}, acceptance {m.acceptance:.2f})")
    if ladder.ess[-1] < 0.5 * opts.ess_fraction * n:
        return f"final ESS {ladder.ess[-1]:.0f} of {n} particles"
    return ""


def sample_smc(
    log_like: LogLike,
    prior: PriorLike,
    num_samples: int,
    options: SMCOptions | None = None,
    *,
    rng: np.random.Generator | int | None = None,
    warn: bool = True,
    fallback: str | None = None,
    **option_values: Any,
) -> SMCResult:
    """Sample p(θ | x) ∝ exp(log_like(θ)) · prior(θ) by adaptive tempered SMC.

    Arguments:
        log_like: Vectorized log-likelihood, θ (m, p) -> (m,); only called inside the prior
            support, once per sweep with all particles.
        prior: Prior over θ (see :mod:`mfinfer.priors`).
        num_samples: Number of samples to return (>= 1).
        options: :class:`~mfinfer.inference.spec.SMCOptions` (``num_particles``,
            ``ess_fraction``, ``min_moved``, ``max_correlation``, ``max_moves``, ``max_stages``).
        rng: Seed or generator.
        warn: Raise a ``UserWarning`` when not converged.
        fallback: Recorded in the result: why ``method="auto"`` chose SMC.
        **option_values: The same options as keywords, when ``options`` is None.

    Returns:
        An :class:`SMCResult`.

    Example:
        >>> import numpy as np
        >>> from mfinfer.priors import BoxUniform
        >>> res = sample_smc(lambda t: -0.5 * np.sum(t**2, axis=1), BoxUniform((-5.0,), (5.0,)),
        ...                  1000, rng=0)
        >>> res.samples.shape, res.converged
        ((1000, 1), True)
    """
    opts = options if options is not None else SMCOptions(**option_values)
    prior = as_prior(prior)
    n_out = num_samples_of(num_samples)
    n = n_out if opts.num_particles is None else opts.num_particles
    if n < n_out:
        raise ValueError(f"num_particles: expected >= num_samples = {n_out}, got {n}")
    rng = np.random.default_rng(rng)
    log_post = LogPosterior(log_like, prior)
    n_eval = 0

    def evaluate(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log_like, log_prior) of (m, p) points; log_like is -inf outside the support."""
        nonlocal n_eval
        n_eval += len(theta)
        lpri = prior.log_prob(theta)
        return log_post(theta) - np.where(np.isfinite(lpri), lpri, 0.0), lpri

    theta = prior.sample(n, rng)
    parts = Particles(theta, *evaluate(theta))
    if not np.isfinite(parts.ll).any():
        raise ValueError("sample_smc: log_like is -inf at every prior draw; check the likelihood")
    beta, log_z, scale = 0.0, 0.0, 1.0
    ladder = _Ladder()
    while beta < 1.0 and len(ladder.betas) < opts.max_stages:
        beta, log_w, dz = _reweight(parts.ll, beta, opts.ess_fraction * n)
        log_z += dz
        ladder.betas.append(beta)
        ladder.ess.append(_ess(log_w))
        mean, cov = _moments(parts.theta, log_w)
        parts = parts.take(_systematic(log_w, rng))
        stage = mutate(parts, beta, mean, cov, scale, evaluate, rng, min_moved=opts.min_moved,
                       max_correlation=opts.max_correlation, max_moves=opts.max_moves)
        ladder.moves.append(stage)
        scale = stage.scale
    reason = _verdict(ladder, beta, n, opts)
    log.info("sample_smc: %d tempering stages, sweeps per stage %s, acceptance %s, final ESS %.0f of "
             "%d, %s", len(ladder.betas), [m.sweeps for m in ladder.moves],
             [round(m.acceptance, 2) for m in ladder.moves], ladder.ess[-1], n,
             "converged" if not reason else f"not converged: {reason}")
    if reason and warn:
        warnings.warn(f"sample_smc: not converged ({reason}); raise max_moves, max_stages or "
                      "num_particles", stacklevel=2)
    keep = rng.choice(n, size=n_out, replace=False) if n_out < n else np.arange(n)
    return SMCResult(
        samples=np.ascontiguousarray(parts.theta[keep]),
        log_prob=np.ascontiguousarray(parts.ll[keep] + parts.lpri[keep]),
        betas=np.asarray(ladder.betas),
        stage_ess=np.asarray(ladder.ess),
        stage_acceptance=ladder.array("acceptance"),
        stage_moves=ladder.array("sweeps", int),
        final_ess=float(ladder.ess[-1]) if beta >= 1.0 else 0.0,
        moved_fraction=ladder.moves[-1].moved,
        log_evidence=log_z,
        num_particles=n,
        num_evaluations=n_eval,
        converged=not reason,
        stage_moved=ladder.array("moved"),
        stage_correlation=ladder.array("correlation"),
        stage_scale=ladder.array("scale"),
        reason=reason,
        fallback=fallback,
    )
