"""The one entry point to the samplers: :func:`sample_posterior` runs a :class:`PosteriorSpec`.

``method="auto"`` (the default) runs the adaptive grid (:func:`~mfinfer.inference.grid.sample_grid`)
for p ≤ 3 and keeps it when the grid's own checks pass; otherwise it runs adaptive tempered SMC
(:func:`~mfinfer.inference.smc.sample_smc`). The reason is logged (logger ``mfinfer.inference``) and
recorded in ``SMCResult.fallback``. emcee (:func:`~mfinfer.inference.emcee_sampler.sample_emcee`) runs
only on request (``method="emcee"``). The table :data:`SAMPLERS` maps each method to its function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from mfinfer.inference.emcee_sampler import MCMCResult, sample_emcee
from mfinfer.inference.grid import GridResult, sample_grid
from mfinfer.inference.potential import LogLike
from mfinfer.inference.smc import SMCResult, sample_smc
from mfinfer.inference.spec import PosteriorSpec
from mfinfer.priors import Prior, PriorLike, as_prior

__all__ = ["SAMPLERS", "SamplerResult", "method_used", "resolve_spec", "sample_posterior"]

log = logging.getLogger("mfinfer.inference")

SamplerResult = MCMCResult | SMCResult | GridResult
"""What a sampler returns: each carries ``samples`` (n, p) and ``converged``."""


def _auto(log_like: LogLike, prior: Prior, spec: PosteriorSpec, rng: np.random.Generator,
          progress: bool, initial: np.ndarray | None) -> SamplerResult:
    """The grid for p ≤ 3 when its checks pass, SMC otherwise (the reason logged and recorded)."""
    if prior.dim <= 3 and prior.has_bounds:
        res = sample_grid(log_like, prior, spec.num_samples, spec.options("grid"), rng=rng,
                          warn=False)
        if res.converged:
            return res
        reason = f"the grid did not pass its checks ({res.reason})"
        log.warning("method='auto': falling back to SMC: %s", reason)
    elif not prior.has_bounds:
        reason = f"the prior's support {prior.describe_support()} has no bounds for the grid"
        log.info("method='auto': using SMC: %s", reason)
    else:
        reason = f"p = {prior.dim} > 3 parameters (the grid handles p <= 3)"
        log.info("method='auto': using SMC: %s", reason)
    return sample_smc(log_like, prior, spec.num_samples, spec.options("smc"), rng=rng,
                      fallback=reason)


def _grid(log_like: LogLike, prior: Prior, spec: PosteriorSpec, rng: np.random.Generator,
          progress: bool, initial: np.ndarray | None) -> SamplerResult:
    return sample_grid(log_like, prior, spec.num_samples, spec.options("grid"), rng=rng)


def _smc(log_like: LogLike, prior: Prior, spec: PosteriorSpec, rng: np.random.Generator,
         progress: bool, initial: np.ndarray | None) -> SamplerResult:
    return sample_smc(log_like, prior, spec.num_samples, spec.options("smc"), rng=rng)


def _emcee(log_like: LogLike, prior: Prior, spec: PosteriorSpec, rng: np.random.Generator,
           progress: bool, initial: np.ndarray | None) -> SamplerResult:
    return sample_emcee(log_like, prior, spec.num_samples, spec.options("emcee"), rng=rng,
                        initial=initial, progress=progress)


Sampler = Callable[[LogLike, Prior, PosteriorSpec, np.random.Generator, bool, "np.ndarray | None"],
                   SamplerResult]
#: method -> the function that runs it (a new sampler: its module, plus one line here).
SAMPLERS: dict[str, Sampler] = {"auto": _auto, "grid": _grid, "smc": _smc, "emcee": _emcee}


def resolve_spec(spec: PosteriorSpec | None = None, num_samples: int | None = None,
                 **options: Any) -> PosteriorSpec:
    """The spec to run: ``spec`` (default ``PosteriorSpec()``) with ``num_samples`` and flat options
    (``method``, ``max_moves``, ...) replaced; validated.

    Raises:
        ConfigError: an unknown option, or an option of a sampler the method never runs.
    """
    base = PosteriorSpec() if spec is None else spec
    if num_samples is not None:
        options["num_samples"] = num_samples
    return base.replace(**options) if options else base


def method_used(result: SamplerResult) -> str:
    """The sampler that produced ``result``: ``grid``, ``smc`` or ``emcee``."""
    return {GridResult: "grid", SMCResult: "smc", MCMCResult: "emcee"}[type(result)]


def sample_posterior(
    log_like: LogLike,
    prior: PriorLike,
    num_samples: int | None = None,
    *,
    spec: PosteriorSpec | None = None,
    rng: np.random.Generator | int | None = None,
    progress: bool = True,
    initial: np.ndarray | None = None,
    **options: Any,
) -> SamplerResult:
    """Sample p(θ | x) ∝ exp(log_like(θ)) · prior(θ) as a :class:`PosteriorSpec` says.

    Arguments:
        log_like: Vectorized log-likelihood, θ (m, p) -> (m,); only called inside the prior
            support. It may return ``-inf``; NaN or ``+inf`` raise ValueError.
        prior: Prior over θ with ``dim == p`` (see :mod:`mfinfer.priors`).
        num_samples: Number of samples (default: the spec's, 5000).
        spec: The posterior spec (default ``PosteriorSpec()``: ``method="auto"``).
        rng: Seed or generator; makes the run reproducible.
        progress: emcee's progress bar, drawn only when stderr is a terminal.
        initial: emcee's start point (p,) or positions (num_walkers, p); ``method="emcee"`` only.
        **options: ``method`` and flat sampler options, replacing the spec's (``tol`` ... for the
            grid, ``max_moves`` ... for SMC, ``num_walkers`` ... for emcee); an option of a sampler
            the method never runs is an error naming its sampler.

    Returns:
        A :class:`~mfinfer.inference.grid.GridResult`, :class:`~mfinfer.inference.smc.SMCResult`
        or :class:`~mfinfer.inference.emcee_sampler.MCMCResult`, with ``samples`` of shape (n, p).

    Example:
        >>> import numpy as np
        >>> from mfinfer.priors import BoxUniform
        >>> res = sample_posterior(lambda t: -0.5 * np.sum(t**2, axis=1),
        ...                        BoxUniform((-5.0,), (5.0,)), 1000, rng=0)
        >>> type(res).__name__, res.samples.shape
        ('GridResult', (1000, 1))
    """
    prior = as_prior(prior)
    spec = resolve_spec(spec, num_samples, **options)
    if initial is not None and spec.method != "emcee":
        raise ValueError(f"initial: an argument of method 'emcee' (its walkers' start), but method "
                         f"is {spec.method!r}; remove it, or set method='emcee'")
    return SAMPLERS[spec.method](log_like, prior, spec, np.random.default_rng(rng), progress,
                                 initial)
