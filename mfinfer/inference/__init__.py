"""Posterior inference: likelihoods, the log posterior, MCMC, posterior objects, the estimator.

- :mod:`~mfinfer.inference.likelihood`: Σ_i log p(x_i|θ) of a trained model (with the cached
  projection when ``model.caches_projection``) or of a simulator's exact likelihood.
- :mod:`~mfinfer.inference.potential`: :class:`LogPosterior`, prior + likelihood inside the prior
  support, the one log posterior used by the sampler, :class:`Posterior` and the estimator.
- :mod:`~mfinfer.inference.spec`: :class:`PosteriorSpec`, the one posterior spec (method,
  num_samples, typed options per sampler: :class:`GridOptions`, :class:`SMCOptions`,
  :class:`EmceeOptions`), validated once.
- :mod:`~mfinfer.inference.sampling`: :func:`sample_posterior`, which runs a spec; ``method="auto"``
  (default) is the grid for p ≤ 3 when its checks pass, SMC otherwise (fallback logged, recorded).
- :mod:`~mfinfer.inference.grid`: :func:`sample_grid`, an adaptively refined grid for p ≤ 3 whose
  cost does not grow with the number of samples.
- :mod:`~mfinfer.inference.smc` and :mod:`~mfinfer.inference.smc_moves`: :func:`sample_smc`,
  adaptive tempered SMC whose moves tune their number and step until its diagnostics pass.
- :mod:`~mfinfer.inference.emcee_sampler`: :func:`sample_emcee` (emcee, on request) and
  :class:`MCMCResult`; :mod:`~mfinfer.inference.mcmc` keeps the old import names.
- :mod:`~mfinfer.inference.posterior`: :class:`Posterior` (samples + log-prob + prior,
  summaries, corner plots); overlays are :func:`mfinfer.plotting.corner_plot`.
- :mod:`~mfinfer.inference.storage`: npz + JSON storage of posteriors (``Posterior.save/load``).
- :mod:`~mfinfer.inference.estimator`: the sbi-style ``LikelihoodEstimator``.
"""

from mfinfer.inference.emcee_sampler import MCMCResult, sample_emcee
from mfinfer.inference.estimator import LikelihoodEstimator, LikelihoodPosterior
from mfinfer.inference.grid import GridResult, sample_grid
from mfinfer.inference.likelihood import (
    ModelLikelihood,
    SimulatorLikelihood,
    check_events,
    projection_errors,
)
from mfinfer.inference.posterior import Posterior
from mfinfer.inference.potential import LogLike, LogPosterior
from mfinfer.inference.sampling import sample_posterior
from mfinfer.inference.smc import SMCResult, sample_smc
from mfinfer.inference.spec import EmceeOptions, GridOptions, PosteriorSpec, SMCOptions

__all__ = [
    "EmceeOptions",
    "GridOptions",
    "GridResult",
    "LikelihoodEstimator",
    "LikelihoodPosterior",
    "LogLike",
    "LogPosterior",
    "MCMCResult",
    "ModelLikelihood",
    "Posterior",
    "PosteriorSpec",
    "SMCOptions",
    "SMCResult",
    "SimulatorLikelihood",
    "check_events",
    "projection_errors",
    "sample_emcee",
    "sample_grid",
    "sample_posterior",
    "sample_smc",
]
