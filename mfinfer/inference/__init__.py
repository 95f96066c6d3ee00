"""Posterior inference: MCMC over a vectorized log-likelihood, and posterior objects.

- :mod:`~mfinfer.inference.mcmc`: :func:`sample_posterior` (emcee ensemble sampler with
  autocorrelation-based burn-in, thinning and stopping) and its :class:`MCMCResult`.
- :mod:`~mfinfer.inference.posterior`: :class:`Posterior` (samples + log-prob + prior,
  summaries, corner plots, npz/JSON storage) and :func:`corner_plot` for overlays.
"""

from mfinfer.inference.mcmc import LogLike, MCMCResult, sample_posterior
from mfinfer.inference.posterior import Posterior, corner_plot

# Model-based likelihoods (i.i.d. events through a trained flow) are added here:
# from mfinfer.inference.likelihood import IIDLikelihood, LikelihoodEstimator

__all__ = [
    "LogLike",
    "MCMCResult",
    "Posterior",
    "corner_plot",
    "sample_posterior",
    # "IIDLikelihood",
    # "LikelihoodEstimator",
]
