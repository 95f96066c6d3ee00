"""Priors over simulator parameters θ: box-uniform, Gaussian and full-covariance Gaussian, in numpy.

Every prior exposes the same small interface, used by simulators, training and the samplers:
``sample(n, rng) -> (n, p)``, ``log_prob(theta) -> (n,)`` (``-inf`` outside the support),
``contains(theta) -> (n,) bool``, ``bounds -> (low, high)`` and ``scaling() -> (loc, scale)`` (the
affine map that brings θ to order one, which the models apply by default).

Any other object with ``sample`` and ``log_prob`` (a ``torch.distributions.Distribution``, sbi's
``BoxUniform``, ...) enters through :func:`as_prior`, which every public function taking a prior
calls: the common ones become the native priors above, the rest a
:class:`~mfinfer.distribution_prior.DistributionPrior`. :func:`prior_from_config` is the one
reader of priors in configs and stored JSON.

Example:
    >>> import torch
    >>> as_prior(torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))).dim
    2
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mfinfer._validation import as_matrix
from mfinfer.errors import ConfigError, InputError

__all__ = ["BoxUniform", "Gaussian", "MultivariateGaussian", "Prior", "PriorLike", "as_prior",
           "prior_from_config"]

_LOG_2PI = float(np.log(2 * np.pi))


def _as_2d(theta: np.ndarray, dim: int) -> np.ndarray:
    return as_matrix(theta, dim, "theta", finite=False, min_rows=0)


def _vector(value: Any, name: str, owner: str) -> np.ndarray:
    """A finite float64 (p,) array from a number, a sequence, numpy or torch; else InputError."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.atleast_1d(np.asarray(value, dtype=float))
    except (TypeError, ValueError):
        raise InputError(f"{owner}: {name}: expected numbers, got {value!r}") from None
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise InputError(f"{owner}: {name}: expected a non-empty vector of finite numbers, got "
                         f"{arr.tolist()}; pass one finite number per parameter")
    return arr


def _alias(new: Any, old: Any, new_name: str, old_name: str, owner: str) -> Any:
    if new is not None and old is not None:
        raise InputError(f"{owner}: give {new_name} or its old name {old_name}, not both")
    if new is None and old is None:
        raise InputError(f"{owner}: missing {new_name}")
    return new if new is not None else old


@runtime_checkable
class SupportsSampleLogProb(Protocol):
    """Anything with ``sample`` and ``log_prob`` (``torch.distributions``, sbi's priors)."""

    def sample(self, *args: Any, **kwargs: Any) -> Any: ...

    def log_prob(self, value: Any) -> Any: ...


class Prior:
    """Interface shared by all priors: ``dim``, ``sample``, ``log_prob``, ``contains``,
    ``bounds``, ``scaling``."""

    dim: int

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        raise NotImplementedError

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def contains(self, theta: np.ndarray) -> np.ndarray:
        """(n, p) -> (n,) bool: whether each row lies in the support."""
        theta = _as_2d(theta, self.dim)
        low, high = self.bounds
        return np.all((theta >= low) & (theta <= high), axis=1) & np.all(np.isfinite(theta), axis=1)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high), each (p,): the smallest box holding the support (±inf where unbounded)."""
        raise NotImplementedError

    @property
    def has_bounds(self) -> bool:
        """Whether ``bounds`` is known (False for a support that is not box-shaped, e.g. a simplex)."""
        return True

    def scaling(self) -> tuple[np.ndarray, np.ndarray]:
        """(loc, scale), each (p,): θ → (θ − loc) / scale brings the prior to order one (a box's
        centre and half-width, a Gaussian's mean and standard deviation)."""
        raise NotImplementedError

    def to_config(self) -> dict | None:
        """The JSON config ``prior_from_config`` rebuilds this prior from (None: not storable)."""
        return None

    def describe_support(self) -> str:
        """The support in words, for error messages."""
        low, high = self.bounds
        return f"[{low.tolist()}, {high.tolist()}]"

    def check(self, theta: np.ndarray, name: str = "theta") -> np.ndarray:
        """Validate θ (shape, finiteness, support); returns it as (n, p) or raises InputError."""
        theta = _as_2d(theta, self.dim)
        inside = self.contains(theta)
        if not inside.all():
            bad = np.flatnonzero(~inside)
            raise InputError(
                f"{name}: {bad.size} row(s) outside the prior support {self.describe_support()}"
                f" (first: row {bad[0]} = {theta[bad[0]].tolist()}); pass parameters inside the prior"
            )
        return theta


#: What every function taking a prior accepts: an mfinfer prior, or anything :func:`as_prior` adapts.
PriorLike = Prior | SupportsSampleLogProb


@dataclass(frozen=True, init=False)
class BoxUniform(Prior):
    """Uniform prior on the box [low, high] (both (p,); a number is one parameter)."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def __init__(self, low: Any, high: Any) -> None:
        lo, hi = _vector(low, "low", "BoxUniform"), _vector(high, "high", "BoxUniform")
        if lo.shape != hi.shape or np.any(hi <= lo):
            raise InputError(f"BoxUniform: low, high: need low < high of equal length, got "
                             f"{lo.tolist()} and {hi.tolist()}")
        object.__setattr__(self, "low", tuple(lo.tolist()))
        object.__setattr__(self, "high", tuple(hi.tolist()))

    @property
    def dim(self) -> int:  # type: ignore[override]
        return len(self.low)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.low), np.array(self.high)

    def scaling(self) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.bounds
        return (low + high) / 2, (high - low) / 2

    def to_config(self) -> dict:
        return {"box": {"low": list(self.low), "high": list(self.high)}}

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        low, high = self.bounds
        return rng.uniform(low, high, size=(n, self.dim))

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        theta = _as_2d(theta, self.dim)
        low, high = self.bounds
        out = np.full(len(theta), -np.sum(np.log(high - low)))
        out[~self.contains(theta)] = -np.inf
        return out


class _Unbounded(Prior):
    """A prior whose support is R^p: -inf/inf bounds, finite rows inside."""

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(self.dim, -np.inf), np.full(self.dim, np.inf)

    def contains(self, theta: np.ndarray) -> np.ndarray:
        return np.all(np.isfinite(_as_2d(theta, self.dim)), axis=1)


@dataclass(frozen=True, init=False)
class Gaussian(_Unbounded):
    """Independent Gaussian prior N(loc, scale²) per coordinate (both (p,); a number broadcasts).

    ``mean`` and ``std`` are accepted as the old names of ``loc`` and ``scale`` (and remain
    readable as attributes).

    Example:
        >>> Gaussian(loc=[0.0, 1.0], scale=2.0).scale
        (2.0, 2.0)
    """

    loc: tuple[float, ...]
    scale: tuple[float, ...]

    def __init__(self, loc: Any = None, scale: Any = None, *, mean: Any = None, std: Any = None) -> None:
        loc = _vector(_alias(loc, mean, "loc", "mean", "Gaussian"), "loc", "Gaussian")
        scale = _vector(_alias(scale, std, "scale", "std", "Gaussian"), "scale (std)", "Gaussian")
        if loc.shape != scale.shape and 1 not in (loc.size, scale.size):
            raise InputError(f"Gaussian: loc, scale: expected equal lengths (or one number), got "
                             f"{loc.size} and {scale.size}")
        loc, scale = np.broadcast_arrays(loc, scale)
        if np.any(scale <= 0):
            raise InputError(f"Gaussian: scale (std): expected positive numbers, got {scale.tolist()}")
        object.__setattr__(self, "loc", tuple(loc.tolist()))
        object.__setattr__(self, "scale", tuple(scale.tolist()))

    @property
    def mean(self) -> tuple[float, ...]:
        """The old name of ``loc``."""
        return self.loc

    @property
    def std(self) -> tuple[float, ...]:
        """The old name of ``scale``."""
        return self.scale

    @property
    def dim(self) -> int:  # type: ignore[override]
        return len(self.loc)

    def scaling(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.loc), np.array(self.scale)

    def to_config(self) -> dict:
        return {"gaussian": {"loc": list(self.loc), "scale": list(self.scale)}}

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        return rng.normal(self.loc, self.scale, size=(n, self.dim))

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        theta = _as_2d(theta, self.dim)
        loc, scale = self.scaling()
        z = (theta - loc) / scale
        out = -0.5 * np.sum(z**2, axis=1) - np.sum(np.log(scale)) - 0.5 * self.dim * _LOG_2PI
        out[~self.contains(theta)] = -np.inf
        return out


@dataclass(frozen=True, init=False)
class MultivariateGaussian(_Unbounded):
    """Gaussian prior N(loc, covariance) with a full (p, p) covariance matrix.

    Raises:
        InputError: ``covariance`` is not a finite symmetric (p, p) matrix, or not positive
            definite (its Cholesky factorisation fails).

    Example:
        >>> prior = MultivariateGaussian([0.0, 0.0], [[1.0, 0.8], [0.8, 1.0]])
        >>> prior.sample(4, rng=0).shape
        (4, 2)
    """

    loc: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    _cholesky: np.ndarray = field(init=False, repr=False, compare=False)

    def __init__(self, loc: Any, covariance: Any) -> None:
        loc = _vector(loc, "loc", "MultivariateGaussian")
        p = loc.size
        cov = covariance.detach().cpu().numpy() if hasattr(covariance, "detach") else covariance
        try:
            cov = np.asarray(cov, dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"MultivariateGaussian: covariance: expected a ({p}, {p}) matrix of "
                             f"numbers, got {covariance!r}") from None
        if cov.shape != (p, p) or not np.all(np.isfinite(cov)):
            raise InputError(f"MultivariateGaussian: covariance: expected a finite ({p}, {p}) matrix "
                             f"(p = len(loc)), got shape {cov.shape}")
        if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12 * np.abs(cov).max()):
            raise InputError("MultivariateGaussian: covariance: expected a symmetric matrix; pass "
                             "(C + C.T) / 2 if the asymmetry is rounding")
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            smallest = float(np.linalg.eigvalsh(cov).min())
            raise InputError(f"MultivariateGaussian: covariance: not positive definite (smallest "
                             f"eigenvalue {smallest:.3g}); every eigenvalue must be > 0") from None
        object.__setattr__(self, "loc", tuple(loc.tolist()))
        object.__setattr__(self, "covariance", tuple(tuple(r) for r in cov.tolist()))
        object.__setattr__(self, "_cholesky", chol)

    @property
    def dim(self) -> int:  # type: ignore[override]
        return len(self.loc)

    @cached_property
    def _log_norm(self) -> float:
        return float(-np.sum(np.log(np.diag(self._cholesky))) - 0.5 * self.dim * _LOG_2PI)

    def scaling(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.loc), np.sqrt(np.diag(np.array(self.covariance)))

    def to_config(self) -> dict:
        return {"multivariate_gaussian": {"loc": list(self.loc),
                                          "covariance": [list(r) for r in self.covariance]}}

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        return np.array(self.loc) + rng.standard_normal((n, self.dim)) @ self._cholesky.T

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        theta = _as_2d(theta, self.dim)
        inside = self.contains(theta)
        out = np.full(len(theta), -np.inf)
        if inside.any():
            z = np.linalg.solve(self._cholesky, (theta[inside] - np.array(self.loc)).T)
            out[inside] = -0.5 * np.sum(z**2, axis=0) + self._log_norm
        return out


def as_prior(prior: Any) -> Prior:
    """The mfinfer prior for ``prior``: itself if it is one; sbi's ``BoxUniform`` and
    ``torch.distributions`` Uniform, Normal and MultivariateNormal (with ``Independent`` as
    needed) as the equal :class:`BoxUniform`, :class:`Gaussian`, :class:`MultivariateGaussian`;
    any other object with ``sample((n,))`` and ``log_prob`` as a
    :class:`~mfinfer.distribution_prior.DistributionPrior`.

    Raises:
        InputError: ``prior`` has no ``sample`` or ``log_prob``.
    """
    if isinstance(prior, Prior):
        return prior
    if not isinstance(prior, SupportsSampleLogProb):
        raise InputError(f"prior: expected an mfinfer prior (BoxUniform, Gaussian, "
                         f"MultivariateGaussian) or an object with sample and log_prob (e.g. a "
                         f"torch.distributions distribution or sbi's BoxUniform), got "
                         f"{type(prior).__name__}")
    from mfinfer.distribution_prior import from_distribution

    return from_distribution(prior)


#: The config forms of each prior kind: its fields (and their old names).
_KINDS: dict[str, tuple[str, ...]] = {"box": ("low", "high"), "gaussian": ("loc", "scale"),
                                      "multivariate_gaussian": ("loc", "covariance")}
_OLD_NAMES = {"mean": "loc", "std": "scale"}


def prior_from_config(cfg: Mapping[str, Any], where: str = "prior") -> Prior:
    """Build a prior from its config, the one reader of priors in YAML configs and stored JSON.

    One key names the kind, its mapping the fields::

        prior: {box: {low: [0, 0], high: [1, 1]}}
        prior: {gaussian: {loc: [0, 0], scale: [1, 2]}}          # old names mean, std accepted
        prior: {multivariate_gaussian: {loc: [0, 0], covariance: [[1, 0.5], [0.5, 1]]}}

    The older form ``{"type": "box", "low": ..., "high": ...}`` (also ``"gaussian"`` with
    ``mean``/``std``) is read too.

    Raises:
        ConfigError: naming the field (under ``where``), what was expected and what was got.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where}: expected a mapping such as {{box: {{low: [...], high: [...]}}}}, "
                          f"got {type(cfg).__name__}")
    if "type" in cfg:  # the older flat form
        kind, fields, at = cfg["type"], {k: v for k, v in cfg.items() if k != "type"}, where
    elif len(cfg) == 1:
        kind, fields = next(iter(cfg.items()))
        at = f"{where}.{kind}"
    else:
        raise ConfigError(f"{where}: expected exactly one of {tuple(_KINDS)}, got {sorted(cfg)}")
    if kind not in _KINDS:
        raise ConfigError(f"{where}: prior kind must be one of {tuple(_KINDS)}, got {kind!r}")
    if not isinstance(fields, Mapping):
        raise ConfigError(f"{at}: expected a mapping of {_KINDS[kind]}, got {fields!r}")
    fields = {_OLD_NAMES.get(k, k) if kind == "gaussian" else k: v for k, v in fields.items()}
    unknown = sorted(set(fields) - set(_KINDS[kind]))
    missing = [k for k in _KINDS[kind] if k not in fields]
    if unknown or missing:
        problems = [f"unknown {unknown}"] * bool(unknown) + [f"missing {missing}"] * bool(missing)
        raise ConfigError(f"{at}: expected the fields {_KINDS[kind]}; {' and '.join(problems)}")
    cls = {"box": BoxUniform, "gaussian": Gaussian, "multivariate_gaussian": MultivariateGaussian}[kind]
    try:
        return cls(*(fields[k] for k in _KINDS[kind]))
    except InputError as err:
        raise ConfigError(f"{at}: {err}") from None
