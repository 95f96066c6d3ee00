"""The log posterior, log p(θ | x) + const = log prior(θ) + log_like(θ): the only copy.

The sampler (:func:`~mfinfer.inference.mcmc.sample_posterior`), the :class:`Posterior` object and
the estimator's :class:`LikelihoodPosterior` all evaluate the posterior through
:class:`LogPosterior`. The likelihood is only called inside the prior support, so a model is
never evaluated where the prior vanishes; it must be vectorized and finite or ``-inf`` there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mfinfer._validation import as_matrix
from mfinfer.priors import PriorLike, as_prior

__all__ = ["LogLike", "LogPosterior"]

LogLike = Callable[[np.ndarray], np.ndarray]
"""Vectorized log-likelihood: θ of shape (m, p) -> log p(x | θ) of shape (m,)."""


class LogPosterior:
    """Vectorized unnormalised log posterior, θ (m, p) -> (m,): prior + likelihood in the support.

    ``log_prior(θ) + log_like(θ)`` where the prior is positive, ``-inf`` elsewhere (the
    likelihood is not called there). This is the "potential" that MCMC samples from.

    Arguments:
        log_like: Vectorized log-likelihood, θ (k, p) -> (k,). It may return ``-inf``; NaN,
            ``+inf`` or an output of the wrong shape raise ``ValueError`` naming the θ.
        prior: Prior over θ (see :mod:`mfinfer.priors`), ``prior.dim == p``.

    Example:
        >>> import numpy as np
        >>> from mfinfer.priors import BoxUniform
        >>> prior = BoxUniform((-1.0,), (1.0,))
        >>> log_post = LogPosterior(lambda t: -0.5 * np.sum(t**2, axis=1), prior)
        >>> log_post(np.array([[0.0], [2.0]]))
        array([-0.69314718,        -inf])
    """

    def __init__(self, log_like: LogLike, prior: PriorLike) -> None:
        self.log_like = log_like
        self.prior = as_prior(prior)

    @property
    def dim(self) -> int:
        """Number of parameters p."""
        return self.prior.dim

    def __call__(self, theta: Any) -> np.ndarray:
        """Evaluate the log posterior.

        Arguments:
            theta: Parameter points, shape (m, p), or one point (p,). Rows with NaN or inf lie
                outside the support and get ``-inf``.

        Returns:
            float64 array of shape (m,).

        Raises:
            InputError: ``theta`` is not (m, p) or (p,).
            ValueError: ``log_like`` returned the wrong shape, NaN or ``+inf``.
        """
        theta = as_matrix(theta, self.prior.dim, "theta", finite=False, min_rows=0)
        out = self.prior.log_prob(theta)
        inside = np.isfinite(out)
        if inside.any():
            out[inside] += self._checked_log_like(theta[inside])
        return out

    def _checked_log_like(self, theta: np.ndarray) -> np.ndarray:
        """``log_like`` on (k, p) points inside the support, checked to be (k,), finite or -inf."""
        ll = np.asarray(self.log_like(theta), dtype=float)
        if ll.shape != (len(theta),):
            raise ValueError(
                f"log_like: expected output shape ({len(theta)},) for input {theta.shape}, got "
                f"{ll.shape}; log_like must be vectorized, (m, p) -> (m,)"
            )
        bad = np.isnan(ll) | (ll == np.inf)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "NaN" if np.isnan(ll[i]) else "+inf"
            raise ValueError(
                f"log_like returned {what} at theta = {theta[i].tolist()} ({int(bad.sum())} of "
                f"{ll.size} rows in this batch); the likelihood must be finite or -inf: check the "
                "model / data for this parameter point"
            )
        return ll

    def __repr__(self) -> str:
        return f"LogPosterior(log_like={self.log_like!r}, prior={self.prior!r})"
