"""Former home of the samplers, kept so that old imports keep working.

:func:`sample_posterior` now lives in :mod:`mfinfer.inference.sampling` (it runs a
:class:`~mfinfer.inference.spec.PosteriorSpec`: ``auto``, ``grid``, ``smc`` or ``emcee``), emcee and
:class:`MCMCResult` in :mod:`mfinfer.inference.emcee_sampler`, the methods in :mod:`mfinfer.inference.spec`.
"""

from mfinfer.inference.emcee_sampler import MCMCResult, sample_emcee
from mfinfer.inference.potential import LogLike
from mfinfer.inference.sampling import sample_posterior
from mfinfer.inference.spec import Method

__all__ = ["LogLike", "MCMCResult", "Method", "sample_emcee", "sample_posterior"]
