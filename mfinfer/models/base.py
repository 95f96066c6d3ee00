"""Shared pieces of all flows: input checks, the Gaussian base density, θ broadcasting."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["Flow", "standard_normal_log_prob"]


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I), (n, k) -> (n,)."""
    return -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


class Flow(nn.Module):
    """Base of every mfinfer model: dimensions, a JSON-able ``config`` and input validation.

    Subclasses store their constructor keyword arguments in ``self.config`` so that
    ``mfinfer.models.save_model`` / ``load_model`` can rebuild them.
    """

    data_dim: int
    param_dim: int
    config: dict

    def _ref(self) -> Tensor:
        """A tensor whose dtype and device the model's inputs must follow (a parameter, or a
        buffer for a model without parameters, e.g. a FOM flow with a fixed inner map)."""
        ref = next(self.parameters(), None)
        if ref is None:
            ref = next(self.buffers(), torch.empty(0))
        return ref

    def _check_x(self, x: Tensor) -> Tensor:
        ref = self._ref()
        x = torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
        if x.ndim != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"x: expected shape (n, {self.data_dim}), got {tuple(x.shape)}")
        return x

    def _check_theta(self, theta: Tensor | None, n: int) -> Tensor | None:
        """Validate θ and broadcast it to n rows: None, (p,) or (n, p) -> None or (n, p)."""
        if self.param_dim == 0:
            if theta is not None and torch.as_tensor(theta).numel() > 0:
                raise ValueError("theta: this model is unconditional (param_dim=0), got a theta")
            return None
        if theta is None:
            raise ValueError(f"theta: this model is conditional, expected shape (n, {self.param_dim})")
        ref = self._ref()
        theta = torch.as_tensor(theta, dtype=ref.dtype, device=ref.device)
        if theta.ndim == 1:
            theta = theta[None]
        if theta.ndim != 2 or theta.shape[1] != self.param_dim:
            raise ValueError(f"theta: expected shape (n, {self.param_dim}), got {tuple(theta.shape)}")
        if theta.shape[0] == 1 and n != 1:
            theta = theta.expand(n, -1)
        if theta.shape[0] != n:
            raise ValueError(f"theta: expected 1 or {n} rows to match x, got {theta.shape[0]}")
        return theta

    def fit_standardization(self, x: Tensor) -> None:
        """Fit the fixed input standardisation to training data x (n, D)."""
        self.standardize.fit(self._check_x(x))
