"""Priors given as ``torch.distributions`` (sbi's priors included) or any object with ``sample``
and ``log_prob``, behind the numpy :class:`~mfinfer.priors.Prior` interface.

:func:`from_distribution` (called by :func:`mfinfer.priors.as_prior`) turns the distributions an
sbi user passes most, sbi's ``BoxUniform`` and torch's ``Uniform``, ``Normal`` and
``MultivariateNormal`` (with ``Independent`` or a batch of p scalars), into the equal native prior,
in float64 and storable with a posterior. Anything else becomes a :class:`DistributionPrior`.

Example:
    >>> import torch
    >>> from torch.distributions import Gamma, Independent
    >>> prior = from_distribution(Independent(Gamma(torch.ones(2), torch.ones(2)), 1))
    >>> prior.bounds
    (array([0., 0.]), array([inf, inf]))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal, Uniform, constraints

from mfinfer.errors import InputError
from mfinfer.priors import BoxUniform, Gaussian, MultivariateGaussian, Prior, _as_2d

__all__ = ["DistributionPrior", "from_distribution"]

#: Draws that estimate the mean and std of a distribution that does not give them.
SCALING_DRAWS = 10_000


def _numpy(t: Any) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t, dtype=float)


def _flat_base(dist: Distribution) -> tuple[Distribution, int] | None:
    """(base, p) when ``dist`` is a vector of p independent scalars: ``Independent(base, 1)`` of a
    (p,) batch, or a bare (p,) batch (as sbi reinterprets it); None otherwise."""
    if isinstance(dist, Independent) and dist.reinterpreted_batch_ndims == 1 \
            and len(dist.batch_shape) == 0 and len(dist.base_dist.batch_shape) == 1:
        return dist.base_dist, dist.base_dist.batch_shape[0]
    if len(dist.batch_shape) == 1 and len(dist.event_shape) == 0:
        return dist, dist.batch_shape[0]
    return None


def from_distribution(dist: Any) -> Prior:
    """The native prior equal to ``dist`` where there is one, else a :class:`DistributionPrior`.

    Arguments:
        dist: Any object with ``sample(sample_shape)`` and ``log_prob(value)`` in torch's
            conventions, e.g. ``sbi.utils.BoxUniform(low, high)`` or
            ``torch.distributions.MultivariateNormal(loc, covariance_matrix)``.
    """
    if isinstance(dist, Distribution):
        if isinstance(dist, MultivariateNormal) and len(dist.batch_shape) == 0:
            return MultivariateGaussian(_numpy(dist.loc), _numpy(dist.covariance_matrix))
        flat = _flat_base(dist)
        if flat is not None and isinstance(flat[0], Uniform):
            return BoxUniform(_numpy(flat[0].low), _numpy(flat[0].high))
        if flat is not None and isinstance(flat[0], Normal):
            return Gaussian(_numpy(flat[0].loc), _numpy(flat[0].scale))
        if len(dist.batch_shape) == 0 and len(dist.event_shape) == 0:
            if isinstance(dist, Uniform):
                return BoxUniform(_numpy(dist.low), _numpy(dist.high))
            if isinstance(dist, Normal):
                return Gaussian(_numpy(dist.loc), _numpy(dist.scale))
    return DistributionPrior(dist)


def _interval(c: Any) -> tuple[Any, Any] | None:
    """(lower, upper) of a torch constraint (None for an open side), or None if not a box."""
    while isinstance(c, constraints.independent):
        c = c.base_constraint
    if c is constraints.real:
        return -np.inf, np.inf
    if isinstance(c, (constraints.interval, constraints.half_open_interval)):
        return c.lower_bound, c.upper_bound
    if isinstance(c, (constraints.greater_than, constraints.greater_than_eq)):
        return c.lower_bound, np.inf
    if isinstance(c, constraints.less_than):
        return -np.inf, c.upper_bound
    return None


class DistributionPrior(Prior):
    """A distribution in torch's conventions as an mfinfer prior (numpy in, numpy out, float64).

    θ of shape (n, p) is reshaped to the distribution's ``batch_shape + event_shape`` (p numbers in
    all; a batch of p scalars is treated as p independent parameters, as sbi does), and
    ``log_prob`` is summed over the batch. ``sample(n, rng)`` seeds torch from ``rng`` inside
    ``torch.random.fork_rng``, so it is reproducible and leaves torch's global RNG alone.

    The support comes from ``dist.support``: an interval, a half-line or R (also per coordinate,
    ``independent``) gives ``bounds``; anything else, or an object with no ``support``, has no
    bounds, and ``bounds`` refuses (the grid sampler needs them; emcee and SMC do not). Outside
    a known support ``log_prob`` is ``-inf`` (the distribution is not asked).

    Arguments:
        dist: An object with ``sample(sample_shape)`` and ``log_prob(value)``.
    """

    def __init__(self, dist: Any) -> None:
        self.dist = dist
        with torch.random.fork_rng(devices=[]):
            draw = dist.sample((1,))
        if not isinstance(draw, torch.Tensor) or not draw.is_floating_point():
            raise InputError(f"prior: {type(dist).__name__}.sample((1,)) gave "
                             f"{type(draw).__name__}; expected a floating-point torch tensor")
        self.shape = tuple(draw.shape[1:])
        self.dim = int(np.prod(self.shape)) if self.shape else 1
        self.batch_ndim = len(getattr(dist, "batch_shape", ()))
        self.dtype, self.device = draw.dtype, draw.device
        support = getattr(dist, "support", None)
        box = None if support is None else _interval(support)
        self._support = support
        self._bounds = None if box is None else tuple(
            np.broadcast_to(_numpy(b), self.shape).reshape(self.dim).copy() for b in box)

    def __repr__(self) -> str:
        return f"DistributionPrior({self.dist!r})"

    def describe_support(self) -> str:
        if self._bounds is not None:
            return super().describe_support()
        return f"of {type(self.dist).__name__} ({self._support})"

    @property
    def has_bounds(self) -> bool:
        return self._bounds is not None

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        if self._bounds is None:
            raise InputError(
                f"prior: {type(self.dist).__name__} declares no box-shaped support (support: "
                f"{self._support}), so it has no bounds; the grid sampler (method='grid') needs "
                "them: use method='smc' or 'emcee', or pass a prior with an interval support "
                "(e.g. mfinfer.BoxUniform)")
        low, high = self._bounds
        return low.copy(), high.copy()

    def _tensor(self, theta: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(theta, dtype=self.dtype, device=self.device).reshape(-1, *self.shape)

    def contains(self, theta: np.ndarray) -> np.ndarray:
        return np.isfinite(self.log_prob(theta))

    def _inside(self, theta: np.ndarray) -> np.ndarray:
        """Finite rows inside the declared support (all finite rows if none is declared)."""
        inside = np.all(np.isfinite(theta), axis=1)
        if inside.any() and self._support is not None:
            with torch.no_grad():
                ok = self._support.check(self._tensor(theta[inside]))
            inside[inside] = _numpy(ok.reshape(int(inside.sum()), -1).all(1)).astype(bool)
        return inside

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        theta = _as_2d(theta, self.dim)
        out = np.full(len(theta), -np.inf)
        inside = self._inside(theta)
        if inside.any():
            with torch.no_grad():
                lp = self.dist.log_prob(self._tensor(theta[inside]))
            lp = _numpy(lp).reshape(int(inside.sum()), -1).sum(1)
            if np.isnan(lp).any():
                raise ValueError(f"prior: {type(self.dist).__name__}.log_prob returned NaN at "
                                 f"θ = {theta[inside][np.isnan(lp)][0].tolist()}")
            out[inside] = lp
        return out

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        seed = int(np.random.default_rng(rng).integers(2**62))
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            draws = self.dist.sample((int(n),))
        return _numpy(draws).reshape(int(n), self.dim)

    def scaling(self) -> tuple[np.ndarray, np.ndarray]:
        """The box's centre and half-width where both bounds are finite; else the distribution's
        mean and std (estimated from ``SCALING_DRAWS`` seeded draws where it gives none)."""
        if self._bounds is not None and np.all(np.isfinite(self._bounds)):
            low, high = self._bounds
            return (low + high) / 2, (high - low) / 2
        try:
            loc = _numpy(self.dist.mean).reshape(self.dim)
            scale = _numpy(self.dist.stddev).reshape(self.dim)
        except (AttributeError, NotImplementedError, RuntimeError, ValueError):
            loc = scale = np.full(self.dim, np.nan)
        if not (np.all(np.isfinite(loc)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            draws = self.sample(SCALING_DRAWS, 0)
            loc, scale = draws.mean(0), draws.std(0)
            scale = np.where(scale > 0, scale, 1.0)
        return loc, scale
