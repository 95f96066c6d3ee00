"""Ambient flow (AF): a conditional RQ-spline coupling flow on the full data space R^D."""

from __future__ import annotations

from typing import Any

import torch
from nflows.transforms import CompositeTransform
from torch import Tensor

from mfinfer.errors import InputError
from mfinfer.models.base import Flow, standard_normal_log_prob
from mfinfer.models.transforms import Standardize, check_arch, flow_transform

__all__ = ["AmbientFlow"]


class AmbientFlow(Flow):
    """p(x|θ) as a D-dimensional normalising flow (the paper's AF baseline).

    Its density is with respect to the Lebesgue measure on R^D, so its log p is not comparable with
    an M-flow's log p on a d-dimensional manifold.

    Args:
        data_dim: D.
        param_dim: dimension of θ (0: unconditional).
        num_layers: number of spline layers.
        theta_loc, theta_scale: the networks see (θ − loc) / scale instead of θ; default: θ as
            given here, ``prior.scaling()`` where the model meets its prior (``build_model``,
            ``LikelihoodEstimator.train``).
        hidden_features, num_blocks, num_bins, tail_bound, linear: architecture
            (see ``mfinfer.models.transforms.flow_transform``).

    Example:
        >>> flow = AmbientFlow(3, param_dim=1, num_layers=2, hidden_features=16)
        >>> flow.log_prob(torch.randn(5, 3), torch.zeros(5, 1)).shape
        torch.Size([5])
    """

    default_schedule = "nll"

    def __init__(self, data_dim: int, *, param_dim: int = 0, num_layers: int = 5,
                 theta_loc: list[float] | None = None, theta_scale: list[float] | None = None,
                 **arch: Any) -> None:
        super().__init__()
        check_arch("AmbientFlow", arch, ("param_dim", "num_layers", "theta_loc", "theta_scale"),
                   data_dim=data_dim, param_dim=param_dim, num_layers=num_layers)
        self.data_dim, self.param_dim = data_dim, param_dim
        self.config = {"data_dim": data_dim, "param_dim": param_dim, "num_layers": num_layers, **arch,
                       **self._set_theta_map(theta_loc, theta_scale)}
        self.standardize = Standardize(data_dim)
        self.transform = CompositeTransform(
            [self.standardize, flow_transform(data_dim, num_layers, param_dim, **arch)]
        )
        self.eval()

    def log_prob(self, x: Any, theta: Any = None, mode: str = "manifold") -> Tensor:
        """log p(x|θ) on R^D, (n, D) and (n, p) or (p,) -> (n,).

        ``mode`` exists for a uniform interface: an AF has only its ambient density, so any mode
        but the default ``"manifold"`` (meaning "the model's own density") is refused.
        """
        if mode != "manifold":
            raise InputError(f"mode: the AmbientFlow has only its own density (mode='manifold'), "
                             f"got {mode!r}; mode='pie' needs a ManifoldFlow")
        x = self._check_x(x)
        theta = self._check_theta(theta, len(x))
        with self._grad_context(x, theta):
            z, ladj = self.transform(x, context=theta)
            return standard_normal_log_prob(z) + ladj

    def sample(self, n: int, theta: Any = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw n events, (n, D); θ is (p,) or (n, p)."""
        n = self._check_n(n)
        theta = self._check_theta(theta, n)
        ref = self._ref()
        z = torch.randn(n, self.data_dim, generator=generator, dtype=ref.dtype, device=ref.device)
        with self._grad_context(theta):
            return self.transform.inverse(z, context=theta)[0]
