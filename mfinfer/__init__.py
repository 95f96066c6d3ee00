"""mfinfer: simulation-based inference with manifold-learning flows (M-flows).

Submodules: ``models`` (AF, M-flow, Mₑ-flow, PIE, FOM), ``jacobian`` (exact log det JᵀJ),
``training`` (M/D schedules, checkpoints), ``inference`` (MCMC posteriors), ``metrics``,
``io`` (ROOT files), ``priors`` and ``cli``.

Reference: Brehmer & Cranmer, arXiv:2003.13913.
"""

__version__ = "0.1.0"
