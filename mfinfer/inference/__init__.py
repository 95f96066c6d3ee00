"""Posterior inference: MCMC over a vectorized log-likelihood, and posterior objects.

- :mod:`~mfinfer.inference.mcmc`: :func:`sample_posterior` (emcee ensemble sampler with
  autocorrelation-based burn-in, thinning and stopping) and its :class:`MCMCResult`.
- :mod:`~mfinfer.inference.posterior`: :class:`Posterior` (samples + log-prob + prior,
  summaries, corner plots, npz/JSON storage); overlays are :func:`mfinfer.plotting.corner_plot`.
- :mod:`~mfinfer.inference.likelihood`: Σ_i log p(x_i|θ) of a trained model (with the cached
  projection) or of a simulator's exact likelihood.
- :mod:`~mfinfer.inference.estimator`: the sbi-style ``LikelihoodEstimator``.
"""

from mfinfer.inference.estimator import LikelihoodEstimator, LikelihoodPosterior
from mfinfer.inference.likelihood import (
    ModelLikelihood,
    SimulatorLikelihood,
    check_events,
    projection_errors,
)
from mfinfer.inference.mcmc import LogLike, MCMCResult, sample_posterior
from mfinfer.inference.posterior import Posterior

__all__ = [
    "LogLike",
    "MCMCResult",
    "Posterior",
    "sample_posterior",
    "LikelihoodEstimator",
    "LikelihoodPosterior",
    "ModelLikelihood",
    "SimulatorLikelihood",
    "check_events",
    "projection_errors",
]
