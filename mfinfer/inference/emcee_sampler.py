"""emcee's affine-invariant ensemble sampler with autocorrelation-based burn-in, thinning and stopping.

The chain runs in blocks until it is at least ``target_tau`` (default 50) integrated
autocorrelation times long; burn-in and thinning are then set from the autocorrelation time τ,
following the emcee documentation (https://emcee.readthedocs.io/en/stable/tutorials/autocorr/).
``sample_posterior(..., method="emcee")`` runs it (:mod:`mfinfer.inference.sampling`).

Reference: Foreman-Mackey et al., "emcee: The MCMC Hammer", arXiv:1202.3665.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass

import emcee
import numpy as np

from mfinfer.inference.potential import LogLike, LogPosterior
from mfinfer.inference.spec import EmceeOptions, num_samples_of
from mfinfer.priors import Prior, PriorLike, as_prior

__all__ = ["MCMCResult", "sample_emcee"]

#: Burn-in in units of the largest autocorrelation time (emcee docs suggest "a few").
BURN_IN_TAU = 3.0
#: Thinning in units of the smallest autocorrelation time (emcee docs: τ/2).
THIN_TAU = 0.5
#: Length of the first block of steps.
FIRST_BLOCK = 500


@dataclass(frozen=True)
class MCMCResult:
    """Output of :func:`sample_emcee`.

    Attributes:
        samples: Posterior samples after burn-in and thinning, shape (n, p). Rows are a
            contiguous stretch of the thinned chain (last steps), walkers interleaved.
        log_prob: Unnormalised log posterior (log_like + log_prior) of each sample, (n,).
        acceptance_fraction: Mean acceptance fraction over walkers (0.2-0.5 is healthy).
        tau: Integrated autocorrelation time per parameter, in steps, shape (p,), estimated
            on the last block's chain after the provisional burn-in.
        ess: Effective sample size of ``samples`` per parameter, shape (p,):
            ``n / max(1, tau / thin)``.
        n_steps: Steps per walker that were run (including burn-in).
        burn_in: Steps per walker discarded as burn-in.
        thin: Thinning factor applied after burn-in.
        num_walkers: Number of walkers in the ensemble.
        converged: Whether ``n_steps >= target_tau * max(tau)``.
    """

    samples: np.ndarray
    log_prob: np.ndarray
    acceptance_fraction: float
    tau: np.ndarray
    ess: np.ndarray
    n_steps: int
    burn_in: int
    thin: int
    num_walkers: int
    converged: bool


def _initial_positions(
    log_post: LogPosterior,
    prior: Prior,
    num_walkers: int,
    initial: np.ndarray | None,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Walker start positions (num_walkers, p) inside the support, and their log posteriors."""
    p = prior.dim
    if initial is None:
        pos = prior.sample(num_walkers, rng)
    else:
        initial = np.asarray(initial, dtype=float)
        if initial.shape == (num_walkers, p):
            pos = prior.check(initial.copy(), name="initial")
        elif initial.shape in ((p,), (1, p)):
            centre = prior.check(initial.reshape(1, p), name="initial")[0]
            low, high = prior.bounds
            width = high - low
            scale = 1e-3 * np.where(np.isfinite(width), width, np.maximum(np.abs(centre), 1.0))
            step = scale * rng.standard_normal((num_walkers, p))
            # Reflect coordinates that leave the box through the centre: as the ball is much
            # smaller than the box, one of ±step is always inside (even at a corner).
            outside = (centre + step < low) | (centre + step > high)
            pos = np.clip(centre + np.where(outside, -step, step), low, high)
        else:
            raise ValueError(
                f"initial: expected shape ({p},) or ({num_walkers}, {p}) "
                f"(one point or one per walker), got {initial.shape}"
            )
    lp = log_post(pos)
    # Walkers that start where the posterior vanishes are re-drawn from the prior.
    for _ in range(20):
        dead = ~np.isfinite(lp)
        if not dead.any():
            break
        pos[dead] = prior.sample(int(dead.sum()), rng)
        lp[dead] = log_post(pos[dead])
    if not np.isfinite(lp).any():
        raise ValueError(
            "sample_emcee: the log posterior is -inf at every starting point; pass "
            "`initial=` a parameter point where log_like is finite"
        )
    return pos, lp


def _show_progress(progress: bool) -> bool:
    """Whether to draw the progress bar: asked for, and stderr is a terminal (no bar updates in
    CI logs or in ``2> log`` redirects)."""
    if not progress:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _autocorr_time(chain: np.ndarray) -> np.ndarray:
    """τ per parameter for chain (steps, walkers, p); NaN (e.g. stuck chains) -> number of steps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tau = np.atleast_1d(emcee.autocorr.integrated_time(chain, tol=0, quiet=True))
    return np.where(np.isfinite(tau) & (tau > 0), tau, float(len(chain)))


def _chain_length(sampler: emcee.EnsembleSampler, state: emcee.State, num_samples: int,
                  opts: EmceeOptions, show_bar: bool) -> tuple[np.ndarray, int, int]:
    """Run blocks of steps until the chain is ``target_tau`` τ long and holds ``num_samples``
    thinned samples after burn-in, or ``max_steps``; returns (τ (p,), burn-in, thinning)."""
    num_walkers = sampler.nwalkers
    block = min(FIRST_BLOCK, opts.max_steps)
    burn_in, thin = 0, 1
    while True:
        state = sampler.run_mcmc(
            state, block, progress=show_bar, progress_kwargs={"desc": "MCMC", "leave": False}
        )
        n_steps = sampler.iteration
        # τ from the chain after the provisional burn-in (never more than half the chain).
        tau = _autocorr_time(sampler.get_chain()[min(burn_in, n_steps // 2):])
        burn_in = min(math.ceil(BURN_IN_TAU * tau.max()), n_steps // 2)
        thin = max(1, int(THIN_TAU * tau.min()))
        steps_for_tau = math.ceil(opts.target_tau * tau.max())
        steps_for_samples = burn_in + thin * math.ceil(num_samples / num_walkers)
        needed = max(steps_for_tau, steps_for_samples)
        if n_steps >= needed or n_steps >= opts.max_steps:
            return tau, burn_in, thin
        # Aim 20% past the current estimate: τ usually grows a little as the chain lengthens.
        block = min(max(math.ceil(1.2 * needed) - n_steps, 100), opts.max_steps - n_steps)


def _thinning_for(num_samples: int, num_walkers: int, n_steps: int, burn_in: int,
                  thin: int) -> tuple[int, int]:
    """(thinning, available samples): rather thin less than return too few samples; warns only
    if even no thinning is short."""
    available = num_walkers * ((n_steps - burn_in) // thin)
    if available < num_samples:
        thin = max(1, (n_steps - burn_in) // math.ceil(num_samples / num_walkers))
        available = num_walkers * ((n_steps - burn_in) // thin)
        if available < num_samples:
            warnings.warn(
                f"sample_emcee: only {available} samples after burn-in ({burn_in} steps) "
                f"with {num_walkers} walkers and {n_steps} steps, {num_samples} requested; "
                "raise max_steps or num_walkers.",
                stacklevel=3,
            )
    return thin, available


def sample_emcee(
    log_like: LogLike,
    prior: PriorLike,
    num_samples: int,
    options: EmceeOptions | None = None,
    *,
    rng: np.random.Generator | int | None = None,
    initial: np.ndarray | None = None,
    progress: bool = True,
) -> MCMCResult:
    """Sample p(θ | x) ∝ exp(log_like(θ)) · prior(θ) with emcee's ensemble sampler.

    The walkers move on :class:`~mfinfer.inference.potential.LogPosterior` (prior + likelihood
    inside the support, ``-inf`` outside). The chain runs in blocks until it is ``target_tau``
    autocorrelation times long and holds ``num_samples`` thinned samples after burn-in, or until
    ``max_steps``. Burn-in is ``ceil(3 max τ)`` steps and the thinning ``max(1, floor(min τ / 2))``;
    τ is estimated with :func:`emcee.autocorr.integrated_time` on the chain after the provisional
    burn-in. A chain shorter than ``target_tau · τ`` triggers a :class:`UserWarning`.

    Arguments:
        log_like: Vectorized log-likelihood, θ (m, p) -> (m,), only called inside the prior
            support. It may return ``-inf``; NaN or ``+inf`` raise ValueError.
        prior: Prior over θ with ``dim == p`` (see :mod:`mfinfer.priors`).
        num_samples: Number of posterior samples to return (>= 1).
        options: :class:`~mfinfer.inference.spec.EmceeOptions` (walkers, max_steps, target_tau).
        rng: Seed or generator; makes the run reproducible.
        initial: Start point (p,) (walkers start in a tiny ball around it, inside the support) or
            start positions (num_walkers, p); ``None``: draws from the prior.
        progress: Show emcee's tqdm bar for each block, only when stderr is a terminal.

    Returns:
        An :class:`MCMCResult` with ``samples`` (n, p), n = ``num_samples`` unless ``max_steps``
        was too small (then fewer, with a warning).

    Example:
        >>> import numpy as np
        >>> from mfinfer.priors import BoxUniform
        >>> res = sample_emcee(lambda t: -0.5 * np.sum(t**2, axis=1), BoxUniform((-5.0,), (5.0,)),
        ...                    1000, rng=0, progress=False)
        >>> res.samples.shape
        (1000, 1)
    """
    num_samples = num_samples_of(num_samples)
    opts = EmceeOptions() if options is None else options
    prior = as_prior(prior)
    num_walkers, p = opts.num_walkers, prior.dim
    if num_walkers < 2 * p:
        raise ValueError(f"num_walkers: emcee's stretch move needs an even number >= 2 * dim = "
                         f"{2 * p}, got {num_walkers}")
    rng = np.random.default_rng(rng)
    log_post = LogPosterior(log_like, prior)
    pos, lp = _initial_positions(log_post, prior, num_walkers, initial, rng)
    sampler = emcee.EnsembleSampler(num_walkers, p, log_post, vectorize=True)
    sampler.random_state = np.random.RandomState(int(rng.integers(2**32 - 1))).get_state()
    tau, burn_in, thin = _chain_length(sampler, emcee.State(pos, log_prob=lp), num_samples, opts,
                                       _show_progress(progress))
    n_steps = sampler.iteration
    converged = n_steps >= opts.target_tau * tau.max()
    if not converged:
        warnings.warn(
            f"sample_emcee: chain of {n_steps} steps is only {n_steps / tau.max():.1f} "
            f"autocorrelation times long (max tau = {tau.max():.1f} steps, wanted "
            f"{opts.target_tau:g} tau = {opts.target_tau * tau.max():.0f} steps); "
            f"max_steps={opts.max_steps} was reached. Samples may be biased: raise max_steps or "
            "improve `initial`.",
            stacklevel=2,
        )
    thin, available = _thinning_for(num_samples, num_walkers, n_steps, burn_in, thin)
    n = min(num_samples, available)
    samples = sampler.get_chain(discard=burn_in, thin=thin).reshape(-1, p)[-n:]
    log_prob = sampler.get_log_prob(discard=burn_in, thin=thin).reshape(-1)[-n:]
    return MCMCResult(
        samples=np.ascontiguousarray(samples),
        log_prob=np.ascontiguousarray(log_prob),
        acceptance_fraction=float(np.mean(sampler.acceptance_fraction)),
        tau=tau,
        ess=n / np.maximum(1.0, tau / thin),
        n_steps=int(n_steps),
        burn_in=int(burn_in),
        thin=int(thin),
        num_walkers=int(num_walkers),
        converged=bool(converged),
    )
