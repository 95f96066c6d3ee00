"""Posterior inference: likelihoods, the log posterior, MCMC, posterior objects, the estimator.

- :mod:`~mfinfer.inference.likelihood`: Σ_i log p(x_i|θ) of a trained model (with the cached
  projection when ``model.caches_projection``) or of a simulator's exact likelihood.
- :mod:`~mfinfer.inference.potential`: :class:`LogPosterior`, prior + likelihood inside the prior
  support, the one log posterior used by the sampler, :class:`Posterior` and the estimator.
- :mod:`~mfinfer.inference.mcmc`: :func:`sample_posterior` (emcee ensemble sampler with
  autocorrelation-based burn-in, thinning and stopping) and its :class:`MCMCResult`.
- :mod:`~mfinfer.inference.smc`: :func:`sample_smc`, adaptive tempered SMC (prior -> posterior by
  an ESS-chosen temperature ladder, resample-move), ``sample_posterior(..., method="smc")``.
- :mod:`~mfinfer.inference.grid`: :func:`sample_grid`, an adaptively refined grid for p ≤ 3 whose
  cost does not grow with the number of samples, ``sample_posterior(..., method="grid")``.
- :mod:`~mfinfer.inference.posterior`: :class:`Posterior` (samples + log-prob + prior,
  summaries, corner plots); overlays are :func:`mfinfer.plotting.corner_plot`.
- :mod:`~mfinfer.inference.storage`: npz + JSON storage of posteriors (``Posterior.save/load``).
- :mod:`~mfinfer.inference.estimator`: the sbi-style ``LikelihoodEstimator``.
"""

from mfinfer.inference.estimator import LikelihoodEstimator, LikelihoodPosterior
from mfinfer.inference.grid import GridResult, sample_grid
from mfinfer.inference.likelihood import (
    ModelLikelihood,
    SimulatorLikelihood,
    check_events,
    projection_errors,
)
from mfinfer.inference.mcmc import MCMCResult, sample_posterior
from mfinfer.inference.posterior import Posterior
from mfinfer.inference.potential import LogLike, LogPosterior
from mfinfer.inference.smc import SMCResult, sample_smc

__all__ = [
    "GridResult",
    "LikelihoodEstimator",
    "LikelihoodPosterior",
    "LogLike",
    "LogPosterior",
    "MCMCResult",
    "ModelLikelihood",
    "Posterior",
    "SMCResult",
    "SimulatorLikelihood",
    "check_events",
    "projection_errors",
    "sample_grid",
    "sample_posterior",
    "sample_smc",
]
