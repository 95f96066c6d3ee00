"""Priors over simulator parameters θ: box-uniform and Gaussian, in numpy.

Both expose the same small interface, used by simulators, training and MCMC:
``sample(n, rng) -> (n, p)``, ``log_prob(theta) -> (n,)`` (``-inf`` outside the
support), ``contains(theta) -> (n,) bool`` and ``bounds -> (low, high)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfinfer._validation import as_matrix
from mfinfer.errors import InputError

__all__ = ["BoxUniform", "Gaussian", "Prior", "prior_from_config"]


def _as_2d(theta: np.ndarray, dim: int) -> np.ndarray:
    return as_matrix(theta, dim, "theta", finite=False, min_rows=0)


class Prior:
    """Interface shared by all priors: ``dim``, ``sample``, ``log_prob``, ``contains``, ``bounds``."""

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
        raise NotImplementedError

    def to_config(self) -> dict | None:
        """The JSON config ``prior_from_config`` rebuilds this prior from (None: not storable)."""
        return None

    def check(self, theta: np.ndarray, name: str = "theta") -> np.ndarray:
        """Validate θ (shape, finiteness, support); returns it as (n, p) or raises InputError."""
        theta = _as_2d(theta, self.dim)
        inside = self.contains(theta)
        if not inside.all():
            bad = np.flatnonzero(~inside)
            low, high = self.bounds
            raise InputError(
                f"{name}: {bad.size} row(s) outside the prior support [{low.tolist()}, {high.tolist()}]"
                f" (first: row {bad[0]} = {theta[bad[0]].tolist()}); pass parameters inside the prior"
            )
        return theta


@dataclass(frozen=True)
class BoxUniform(Prior):
    """Uniform prior on the box [low, high] (both (p,) arrays)."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def __post_init__(self) -> None:
        low, high = np.atleast_1d(self.low).astype(float), np.atleast_1d(self.high).astype(float)
        if low.shape != high.shape or np.any(high <= low):
            raise InputError(f"BoxUniform: need low < high of equal length, got {low} and {high}")
        object.__setattr__(self, "low", tuple(low.tolist()))
        object.__setattr__(self, "high", tuple(high.tolist()))

    @property
    def dim(self) -> int:  # type: ignore[override]
        return len(self.low)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.low), np.array(self.high)

    def to_config(self) -> dict:
        return {"type": "box", "low": list(self.low), "high": list(self.high)}

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


@dataclass(frozen=True)
class Gaussian(Prior):
    """Independent Gaussian prior N(mean, std²) per coordinate (both (p,))."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        mean, std = np.atleast_1d(self.mean).astype(float), np.atleast_1d(self.std).astype(float)
        if mean.shape != std.shape or np.any(std <= 0):
            raise InputError(f"Gaussian: need std > 0 and len(mean) == len(std), got {mean}, {std}")
        object.__setattr__(self, "mean", tuple(mean.tolist()))
        object.__setattr__(self, "std", tuple(std.tolist()))

    @property
    def dim(self) -> int:  # type: ignore[override]
        return len(self.mean)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full(self.dim, -np.inf), np.full(self.dim, np.inf)

    def to_config(self) -> dict:
        return {"type": "gaussian", "mean": list(self.mean), "std": list(self.std)}

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        rng = np.random.default_rng(rng)
        return rng.normal(self.mean, self.std, size=(n, self.dim))

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        theta = _as_2d(theta, self.dim)
        mean, std = np.array(self.mean), np.array(self.std)
        z = (theta - mean) / std
        out = -0.5 * np.sum(z**2, axis=1) - np.sum(np.log(std)) - 0.5 * self.dim * np.log(2 * np.pi)
        out[~np.all(np.isfinite(theta), axis=1)] = -np.inf
        return out


def prior_from_config(cfg: dict) -> Prior:
    """Build a prior from ``{"type": "box", "low": [...], "high": [...]}`` or
    ``{"type": "gaussian", "mean": [...], "std": [...]}``."""
    kind = cfg.get("type")
    if kind == "box":
        return BoxUniform(tuple(cfg["low"]), tuple(cfg["high"]))
    if kind == "gaussian":
        return Gaussian(tuple(cfg["mean"]), tuple(cfg["std"]))
    raise InputError(f"prior.type: must be one of ('box', 'gaussian'), got {kind!r}")
