"""The simulator interface every mfinfer simulator implements.

A simulator maps parameters θ (n, p) to one event x (n, D) per row. Events lie on (or near) a
d-dimensional manifold. Where the simulator knows more, it exposes it:

- ``log_likelihood(x, theta) -> (n,)``: the exact log density (raises NotImplementedError where it is
  intractable);
- ``distance_to_manifold(x) -> (n,)``: Euclidean distance of each row to the true manifold;
- ``chart(x) -> (n, d)`` / ``embed(z) -> (n, D)``: a coordinate chart of the manifold, for the FOM flow.
  Both are written with torch ops: torch tensors in give (differentiable) tensors out, numpy in gives
  numpy out;
- ``sample_with_score(theta, rng) -> (x, t)``: events plus their joint score
  ``t = ∇θ log p(x, z | θ)`` (n, p), z the simulator's latent variables, for score-augmented training
  (SCANDAL, Brehmer et al., arXiv:1805.12244; the M-flow paper's LHC experiment). ``E[t | x] =
  ∇θ log p(x|θ)``, so t is an unbiased regression target for the score of the likelihood. A simulator
  that can integrate a latent out exactly does so (the target then has less variance); where x
  determines the latents, t *is* ``∇θ log p(x|θ)``. ``simulate(n, rng, score=True)`` returns
  ``(θ, x, t)``, drawing θ and x from the same random stream as ``simulate(n, rng)`` does.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mfinfer._validation import as_matrix, broadcast_rows
from mfinfer.priors import Prior

__all__ = ["Simulator", "check_last_dim", "check_score", "check_theta", "check_x", "numpy_or_torch"]


def check_x(x: Any, data_dim: int, name: str = "x") -> np.ndarray:
    """Validate events: a finite (n, D) array; returns it as float64 or raises InputError."""
    return as_matrix(x, data_dim, name, min_rows=0)


def check_theta(theta: Any, prior: Prior, n: int | None = None, name: str = "theta") -> np.ndarray:
    """Validate θ against the prior (shape and support); broadcast a single (p,) row to n rows."""
    theta = prior.check(theta, name=name)
    return theta if n is None else broadcast_rows(theta, n, name)


def check_score(score: np.ndarray, theta: np.ndarray, who: str) -> np.ndarray:
    """A simulator's joint score: finite, one (p,) row per θ row; float64 (n, p).

    Raises:
        RuntimeError: the simulator returned a wrong shape or NaN/inf (a bug in the simulator,
            named by ``who``, not in the caller's input).
    """
    score = np.asarray(score, dtype=float)
    if score.shape != theta.shape:
        raise RuntimeError(f"{who}: joint score of shape {score.shape}, expected {theta.shape} (one "
                           "row per θ row)")
    bad = np.flatnonzero(~np.isfinite(score).all(axis=1))
    if bad.size:
        raise RuntimeError(f"{who}: joint score is NaN or inf in {bad.size} row(s) (first: row "
                           f"{int(bad[0])}, θ = {theta[bad[0]].tolist()})")
    return score


def numpy_or_torch(fn: Callable[[Any, torch.Tensor], torch.Tensor]) -> Callable:
    """Let a method written with torch ops take numpy too: numpy in -> numpy out (float64),
    torch in -> torch out (same dtype, differentiable, also under ``torch.func.jvp``)."""

    @functools.wraps(fn)
    def wrapper(self: Any, a: Any) -> Any:
        if isinstance(a, torch.Tensor):
            return fn(self, a)
        return fn(self, torch.as_tensor(np.asarray(a, dtype=float))).numpy()

    return wrapper


def check_last_dim(a: Any, dim: int, name: str) -> Any:
    """Shape check shared by chart/embed: numpy via ``check_x``, torch only by its last axis
    (value checks would break ``torch.func`` transforms)."""
    if isinstance(a, torch.Tensor):
        if a.ndim == 0 or a.shape[-1] != dim:
            raise ValueError(f"{name}: expected shape (*, {dim}), got {tuple(a.shape)}")
        return a
    return check_x(a, dim, name)


class Simulator(ABC):
    """Base class. Subclasses set ``param_dim``, ``data_dim``, ``manifold_dim`` and ``prior``."""

    param_dim: int
    data_dim: int
    manifold_dim: int
    prior: Prior

    @abstractmethod
    def sample(self, theta: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Simulate one event per θ row: (n, p) -> (n, D)."""

    def log_likelihood(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Exact log p(x|θ), (n, D), (n, p) or (p,) -> (n,)."""
        raise NotImplementedError(f"{type(self).__name__} has no tractable likelihood")

    def distance_to_manifold(self, x: np.ndarray) -> np.ndarray:
        """Distance of each event to the true manifold, (n, D) -> (n,)."""
        raise NotImplementedError(f"{type(self).__name__} does not know its manifold")

    def chart(self, x):
        """Manifold coordinates z of points x on the manifold, (n, D) -> (n, d)."""
        raise NotImplementedError(f"{type(self).__name__} has no chart")

    def embed(self, z):
        """Point on the manifold for coordinates z, (n, d) -> (n, D)."""
        raise NotImplementedError(f"{type(self).__name__} has no embedding")

    def sample_with_score(
        self, theta: np.ndarray, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Simulate one event per θ row with its joint score ∇θ log p(x, z | θ):
        (n, p) -> (x (n, D), t (n, p)); x is what ``sample(theta, rng)`` gives for the same rng."""
        raise NotImplementedError(f"{type(self).__name__} provides no joint score")

    def simulate(
        self, n: int, rng: np.random.Generator | int | None = None, score: bool = False
    ) -> tuple[np.ndarray, ...]:
        """Draw θ ~ prior and x ~ p(x|θ): returns (theta (n, p), x (n, D)); with ``score=True``
        also the joint score t = ∇θ log p(x, z | θ) (n, p): ``(theta, x, t)``.

        Raises:
            NotImplementedError: ``score=True`` for a simulator without a joint score.
        """
        rng = np.random.default_rng(rng)
        theta = self.prior.sample(n, rng)
        if not score:
            return theta, self.sample(theta, rng)
        x, t = self.sample_with_score(theta, rng)
        return theta, x, check_score(t, theta, type(self).__name__)
