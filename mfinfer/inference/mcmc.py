"""Posterior sampling with emcee's affine-invariant ensemble sampler (default) or tempered SMC.

The sampler is generic: it needs a vectorized log-likelihood ``log_like: (m, p) -> (m,)``
and a prior from :mod:`mfinfer.priors`. The chain runs in blocks until it is at least
``target_tau`` (default 50) integrated autocorrelation times long; burn-in and thinning are
then set from the autocorrelation time τ, following the emcee documentation
(https://emcee.readthedocs.io/en/stable/tutorials/autocorr/).

``sample_posterior(..., method="smc")`` hands over to :func:`mfinfer.inference.smc.sample_smc`
(adaptive tempered SMC, one likelihood call with all particles per sweep; far fewer
likelihood evaluations for low-dimensional θ), and ``method="grid"`` to
:func:`mfinfer.inference.grid.sample_grid` (an adaptively refined grid for p ≤ 3: a few hundred
to a few thousand evaluations, independent of the number of samples).

Reference: Foreman-Mackey et al., "emcee: The MCMC Hammer", arXiv:1202.3665.
"""

from __future__ import annotations

import inspect
import math
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Literal, get_args, overload

import emcee
import numpy as np

from mfinfer.inference.grid import GridResult, sample_grid
from mfinfer.inference.potential import LogLike, LogPosterior
from mfinfer.inference.smc import SMCResult, sample_smc
from mfinfer.priors import Prior

__all__ = ["LogLike", "MCMCResult", "Method", "sample_posterior"]

Method = Literal["emcee", "smc", "grid"]
"""The samplers of :func:`sample_posterior`."""

#: Burn-in in units of the largest autocorrelation time (emcee docs suggest "a few").
BURN_IN_TAU = 3.0
#: Thinning in units of the smallest autocorrelation time (emcee docs: τ/2).
THIN_TAU = 0.5
#: Length of the first block of steps.
FIRST_BLOCK = 500


@dataclass(frozen=True)
class MCMCResult:
    """Output of :func:`sample_posterior`.

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
    low, high = prior.bounds
    if initial is None:
        pos = prior.sample(num_walkers, rng)
    else:
        initial = np.asarray(initial, dtype=float)
        if initial.shape == (num_walkers, p):
            pos = prior.check(initial.copy(), name="initial")
        elif initial.shape in ((p,), (1, p)):
            centre = prior.check(initial.reshape(1, p), name="initial")[0]
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
            "sample_posterior: the log posterior is -inf at every starting point; pass "
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


def _options(method: str) -> str:
    """The keyword options of the sampler behind ``method`` (for error messages)."""
    sampler = sample_smc if method == "smc" else sample_grid
    params = inspect.signature(sampler).parameters.values()
    return ", ".join(p.name for p in params if p.kind is p.KEYWORD_ONLY)


@overload
def sample_posterior(
    log_like: LogLike, prior: Prior, num_samples: int, *, method: Literal["emcee"] = ...,
    num_walkers: int = ..., rng: np.random.Generator | int | None = ...,
    initial: np.ndarray | None = ..., max_steps: int = ..., target_tau: float = ...,
    progress: bool = ...,
) -> MCMCResult: ...


@overload
def sample_posterior(
    log_like: LogLike, prior: Prior, num_samples: int, *, method: Literal["smc"],
    rng: np.random.Generator | int | None = ..., progress: bool = ..., **smc_options: Any,
) -> SMCResult: ...


@overload
def sample_posterior(
    log_like: LogLike, prior: Prior, num_samples: int, *, method: Literal["grid"],
    rng: np.random.Generator | int | None = ..., progress: bool = ..., **grid_options: Any,
) -> GridResult: ...


@overload
def sample_posterior(
    log_like: LogLike, prior: Prior, num_samples: int, *, method: str,
    rng: np.random.Generator | int | None = ..., progress: bool = ..., **options: Any,
) -> MCMCResult | SMCResult | GridResult: ...


def sample_posterior(
    log_like: LogLike,
    prior: Prior,
    num_samples: int,
    *,
    method: str = "emcee",
    num_walkers: int | None = None,
    rng: np.random.Generator | int | None = None,
    initial: np.ndarray | None = None,
    max_steps: int = 20_000,
    target_tau: float = 50.0,
    progress: bool = True,
    **options: Any,
) -> MCMCResult | SMCResult | GridResult:
    """Sample p(θ | x) ∝ exp(log_like(θ)) · prior(θ) with emcee's ensemble sampler.

    The walkers move on :class:`~mfinfer.inference.potential.LogPosterior` (prior + likelihood
    inside the support, ``-inf`` outside).

    The chain runs in blocks until it is ``target_tau`` autocorrelation times long and
    holds ``num_samples`` thinned samples after burn-in, or until ``max_steps``. Burn-in is
    ``ceil(3 max τ)`` steps and the thinning ``max(1, floor(min τ / 2))``; τ is estimated
    with :func:`emcee.autocorr.integrated_time` on the chain after the provisional burn-in.
    A chain shorter than ``target_tau · τ`` triggers a :class:`UserWarning`.

    Arguments:
        log_like: Vectorized log-likelihood, θ (m, p) -> (m,). It is only called inside
            the prior support. It may return ``-inf``; NaN or ``+inf`` raise ValueError.
        prior: Prior over θ with ``dim == p`` (see :mod:`mfinfer.priors`).
        num_samples: Number of posterior samples to return.
        method: ``"emcee"`` (default: the ensemble sampler described here), ``"smc"``
            (:func:`~mfinfer.inference.smc.sample_smc`) or ``"grid"``
            (:func:`~mfinfer.inference.grid.sample_grid`, p ≤ 3); the last two take ``rng``
            and their ``**options``, and the emcee-only options must be left at their defaults.
        num_walkers: Ensemble size; at least ``2 p`` and even (default 32).
        rng: Seed or generator; makes the run reproducible.
        initial: Start point (p,) — walkers start in a tiny ball around it, inside the
            support — or explicit start positions (num_walkers, p). ``None``: draw from the
            prior.
        max_steps: Upper bound on steps per walker.
        target_tau: Required chain length in units of the autocorrelation time.
        progress: Show emcee's tqdm progress bar for each block; drawn only when stderr is a
            terminal, so logs and redirected output stay free of bar updates.
        **options: ``sample_smc`` options (``num_particles``, ``ess_fraction``, ...) for
            ``method="smc"``; ``sample_grid`` options (``tol``, ``initial_cells``, ...) for
            ``method="grid"``.

    Returns:
        For ``method="smc"`` an :class:`~mfinfer.inference.smc.SMCResult`, for ``"grid"`` a
        :class:`~mfinfer.inference.grid.GridResult`; otherwise an
        :class:`MCMCResult` with ``samples`` of shape (n, p), n = ``num_samples`` unless
        ``max_steps`` was too small (then fewer, with a warning).

    Example:
        >>> import numpy as np
        >>> from mfinfer.priors import BoxUniform
        >>> res = sample_posterior(lambda t: -0.5 * np.sum(t**2, axis=1),
        ...                        BoxUniform((-5.0,), (5.0,)), 1000, rng=0, progress=False)
        >>> res.samples.shape
        (1000, 1)
    """
    if method not in get_args(Method):
        raise ValueError(f"method: must be one of {get_args(Method)}, got {method!r}")
    if method != "emcee":
        emcee_only = {"num_walkers": num_walkers, "initial": initial,
                      "max_steps": max_steps if max_steps != 20_000 else None,
                      "target_tau": target_tau if target_tau != 50.0 else None}
        given = sorted(k for k, v in emcee_only.items() if v is not None)
        if given:
            raise ValueError(f"sample_posterior: {given} are emcee options; method={method!r} "
                             f"takes {_options(method)}")
        sampler = sample_smc if method == "smc" else sample_grid
        return sampler(log_like, prior, num_samples, rng=rng, **options)
    if options:
        raise TypeError(f"sample_posterior: unexpected options {sorted(options)} for "
                        "method='emcee' (they belong to method='smc' or 'grid')")
    num_walkers = 32 if num_walkers is None else num_walkers
    p = prior.dim
    if int(num_samples) < 1:
        raise ValueError(f"num_samples: expected a positive integer, got {num_samples}")
    if num_walkers < 2 * p or num_walkers % 2:
        raise ValueError(
            f"num_walkers: emcee's stretch move needs an even number >= 2 * dim = {2 * p}, "
            f"got {num_walkers}"
        )
    if max_steps < 10:
        raise ValueError(f"max_steps: expected at least 10 steps per walker, got {max_steps}")
    rng = np.random.default_rng(rng)
    log_post = LogPosterior(log_like, prior)
    pos, lp = _initial_positions(log_post, prior, num_walkers, initial, rng)

    sampler = emcee.EnsembleSampler(num_walkers, p, log_post, vectorize=True)
    sampler.random_state = np.random.RandomState(int(rng.integers(2**32 - 1))).get_state()
    state = emcee.State(pos, log_prob=lp)
    show_bar = _show_progress(progress)

    block = min(FIRST_BLOCK, max_steps)
    burn_in, thin = 0, 1
    tau = np.full(p, np.inf)
    while True:
        state = sampler.run_mcmc(
            state, block, progress=show_bar, progress_kwargs={"desc": "MCMC", "leave": False}
        )
        n_steps = sampler.iteration
        chain = sampler.get_chain()
        # τ from the chain after the provisional burn-in (never more than half the chain).
        discard = min(burn_in, n_steps // 2)
        tau = _autocorr_time(chain[discard:])
        burn_in = min(math.ceil(BURN_IN_TAU * tau.max()), n_steps // 2)
        thin = max(1, int(THIN_TAU * tau.min()))
        steps_for_tau = math.ceil(target_tau * tau.max())
        steps_for_samples = burn_in + thin * math.ceil(num_samples / num_walkers)
        needed = max(steps_for_tau, steps_for_samples)
        if n_steps >= needed or n_steps >= max_steps:
            break
        # Aim 20% past the current estimate: τ usually grows a little as the chain lengthens.
        block = min(max(math.ceil(1.2 * needed) - n_steps, 100), max_steps - n_steps)

    converged = n_steps >= target_tau * tau.max()
    if not converged:
        warnings.warn(
            f"sample_posterior: chain of {n_steps} steps is only {n_steps / tau.max():.1f} "
            f"autocorrelation times long (max tau = {tau.max():.1f} steps, wanted "
            f"{target_tau:g} tau = {target_tau * tau.max():.0f} steps); max_steps={max_steps} "
            "was reached. Samples may be biased: raise max_steps or improve `initial`.",
            stacklevel=2,
        )

    available = num_walkers * ((n_steps - burn_in) // thin)
    if available < num_samples:
        # Rather thin less than return too few samples; warn only if even thin=1 is short.
        thin = max(1, (n_steps - burn_in) // math.ceil(num_samples / num_walkers))
        available = num_walkers * ((n_steps - burn_in) // thin)
        if available < num_samples:
            warnings.warn(
                f"sample_posterior: only {available} samples after burn-in ({burn_in} steps) "
                f"with {num_walkers} walkers and {n_steps} steps, {num_samples} requested; "
                "raise max_steps or num_walkers.",
                stacklevel=2,
            )
    chain = sampler.get_chain(discard=burn_in, thin=thin)  # (k, W, p)
    logp = sampler.get_log_prob(discard=burn_in, thin=thin)  # (k, W)
    n = min(num_samples, available)
    samples = chain.reshape(-1, p)[-n:]
    log_prob = logp.reshape(-1)[-n:]
    ess = n / np.maximum(1.0, tau / thin)
    return MCMCResult(
        samples=np.ascontiguousarray(samples),
        log_prob=np.ascontiguousarray(log_prob),
        acceptance_fraction=float(np.mean(sampler.acceptance_fraction)),
        tau=tau,
        ess=ess,
        n_steps=int(n_steps),
        burn_in=int(burn_in),
        thin=int(thin),
        num_walkers=int(num_walkers),
        converged=bool(converged),
    )
