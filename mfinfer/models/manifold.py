"""Manifold-learning flows: M-flow, Mₑ-flow, PIE and FOM (Brehmer & Cranmer, arXiv:2003.13913).

An injective flow has a chart u = encode(x) in R^d, an embedding x = decode(u) in R^D and an inner
conditional flow h: u -> z on R^d with base N(0, I). Its manifold density at the projected point is

    log p(x|θ) = log N(h(u; θ)) + log|det ∂h/∂u| - ½ log det(JᵀJ),   J = ∂decode/∂u  (D × d).
"""

from __future__ import annotations

from typing import Literal

import torch
from nflows.nn.nets import ResidualNet
from torch import Tensor

from mfinfer.jacobian import jacobian, log_det_jtj
from mfinfer.models.base import Flow, standard_normal_log_prob
from mfinfer.models.transforms import Standardize, flow_transform

__all__ = ["InjectiveFlow", "ManifoldFlow", "FOMFlow"]

Mode = Literal["manifold", "pie"]


class InjectiveFlow(Flow):
    """Base of M-flow and FOM: the inner flow, the manifold density and sampling.

    Subclasses define ``encode(x, theta) -> (n, d)`` and ``decode(u, theta) -> (n, D)``.
    """

    manifold_dim: int
    conditional_manifold: bool = False

    def _build_inner(self, num_layers: int, arch: dict) -> None:
        self.inner = flow_transform(self.manifold_dim, num_layers, self.param_dim, **arch)

    def encode(self, x: Tensor, theta: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def decode(self, u: Tensor, theta: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def project(self, x: Tensor, theta: Tensor | None = None) -> Tensor:
        """Projection onto the learned manifold, decode(encode(x)), (n, D) -> (n, D)."""
        return self.decode(self.encode(x, theta), theta)

    def inner_log_prob(self, u: Tensor, theta: Tensor | None = None) -> Tensor:
        """log p(u|θ) of the inner flow, (n, d) -> (n,). The only θ-dependent term when the
        manifold is θ-independent."""
        theta = self._check_theta(theta, len(u))
        z, ladj = self.inner(u, context=theta)
        return standard_normal_log_prob(z) + ladj

    def log_det_jtj(self, u: Tensor, theta: Tensor | None = None) -> Tensor:
        """log det(JᵀJ) of the decoder at u, (n, d) -> (n,), by forward-mode AD."""
        theta = self._check_theta(theta, len(u)) if self.conditional_manifold else None
        if theta is None:
            return log_det_jtj(jacobian(self.decode, u)[1])
        d = self.manifold_dim
        theta_rep = theta.repeat_interleave(d, dim=0)
        return log_det_jtj(jacobian(lambda v: self.decode(v, theta_rep), u)[1])

    def log_prob(self, x: Tensor, theta: Tensor | None = None, mode: Mode = "manifold") -> Tensor:
        """log p(x|θ), (n, D) -> (n,).

        Args:
            x: events (n, D).
            theta: parameters, (p,) or (n, p); None for unconditional models.
            mode: ``"manifold"``: the manifold density at the projected point (formula above);
                ``"pie"``: the full D-dimensional PIE density with off-manifold v ~ N(0, ε² I).
        """
        x = self._check_x(x)
        theta = self._check_theta(theta, len(x))
        if mode == "pie":
            return self._pie_log_prob(x, theta)
        if mode != "manifold":
            raise ValueError(f"mode: must be one of ('manifold', 'pie'), got {mode!r}")
        u = self.encode(x, theta)
        return self.inner_log_prob(u, theta) - 0.5 * self.log_det_jtj(u, theta)

    def _pie_log_prob(self, x: Tensor, theta: Tensor | None) -> Tensor:
        raise ValueError(f"mode='pie' needs an outer bijection; {type(self).__name__} has none")

    def sample(self, n: int, theta: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw n events on the manifold, (n, D); θ is (p,) or (n, p)."""
        theta = self._check_theta(theta, n)
        ref = self._ref()
        z = torch.randn(n, self.manifold_dim, generator=generator, dtype=ref.dtype, device=ref.device)
        u = self.inner.inverse(z, context=theta)[0]
        return self.decode(u, theta)


class ManifoldFlow(InjectiveFlow):
    """The M-flow: outer bijection f on R^D, projection to the first d coordinates, inner flow h.

    f(x) = (u, v) with u in R^d kept; the manifold is g(u) = f⁻¹(u, 0).

    Args:
        data_dim: D.
        manifold_dim: d.
        param_dim: dimension of θ (0: unconditional).
        encoder: Mₑ-flow: a separate ResidualNet encoder replaces f⁻¹ + projection.
        conditional_manifold: make f depend on θ too (default: a θ-independent manifold, as in
            the paper, so u(x) and det JᵀJ can be cached during inference).
        outer_layers, inner_layers: number of spline layers of f and h.
        pie_epsilon: width ε of the off-manifold Gaussian in ``mode="pie"``.
        **arch: hidden_features, num_blocks, num_bins, tail_bound for the spline layers.

    Example:
        >>> flow = ManifoldFlow(3, 2, param_dim=1, outer_layers=2, inner_layers=2, hidden_features=16)
        >>> x = flow.sample(4, torch.zeros(1))
        >>> torch.allclose(flow.project(x), x, atol=1e-4)
        True
    """

    def __init__(
        self,
        data_dim: int,
        manifold_dim: int,
        param_dim: int = 0,
        encoder: bool = False,
        conditional_manifold: bool = False,
        outer_layers: int = 5,
        inner_layers: int = 5,
        pie_epsilon: float = 0.01,
        **arch,
    ) -> None:
        super().__init__()
        if not 0 < manifold_dim < data_dim:
            raise ValueError(f"manifold_dim: expected 0 < d < D = {data_dim}, got {manifold_dim}")
        self.data_dim, self.manifold_dim, self.param_dim = data_dim, manifold_dim, param_dim
        self.conditional_manifold, self.pie_epsilon = conditional_manifold, pie_epsilon
        self.config = {
            "data_dim": data_dim, "manifold_dim": manifold_dim, "param_dim": param_dim,
            "encoder": encoder, "conditional_manifold": conditional_manifold,
            "outer_layers": outer_layers, "inner_layers": inner_layers, "pie_epsilon": pie_epsilon, **arch,
        }
        self.standardize = Standardize(data_dim)
        outer_ctx = param_dim if conditional_manifold else 0
        self.outer = flow_transform(data_dim, outer_layers, outer_ctx, **arch)
        self._build_inner(inner_layers, arch)
        self.encoder = None
        if encoder:
            self.encoder = ResidualNet(
                data_dim, manifold_dim, arch.get("hidden_features", 100),
                context_features=outer_ctx or None, num_blocks=arch.get("num_blocks", 2),
            )

    def _ctx(self, theta: Tensor | None) -> Tensor | None:
        return theta if self.conditional_manifold else None

    def encode(self, x: Tensor, theta: Tensor | None = None) -> Tensor:
        """Manifold coordinates u of x, (n, D) -> (n, d)."""
        xs = self.standardize(x)[0]
        if self.encoder is not None:
            return self.encoder(xs, self._ctx(theta))
        return self.outer(xs, context=self._ctx(theta))[0][:, : self.manifold_dim]

    def decode(self, u: Tensor, theta: Tensor | None = None) -> Tensor:
        """Point g(u) = f⁻¹(u, 0) on the manifold, (n, d) -> (n, D)."""
        h = torch.cat([u, u.new_zeros(len(u), self.data_dim - self.manifold_dim)], dim=1)
        return self.standardize.inverse(self.outer.inverse(h, context=self._ctx(theta))[0])[0]

    def _pie_log_prob(self, x: Tensor, theta: Tensor | None) -> Tensor:
        if self.encoder is not None:
            raise ValueError("mode='pie' is undefined for the Mₑ-flow (encoder=True): use mode='manifold'")
        xs, ladj_s = self.standardize(x)
        h, ladj_f = self.outer(xs, context=self._ctx(theta))
        u, v = h[:, : self.manifold_dim], h[:, self.manifold_dim :]
        eps = self.pie_epsilon
        log_v = standard_normal_log_prob(v / eps) - v.shape[1] * torch.log(torch.as_tensor(eps, dtype=x.dtype))
        return self.inner_log_prob(u, theta) + log_v + ladj_f + ladj_s


class FOMFlow(InjectiveFlow):
    """Flow on a known manifold (FOM): the chart comes from a simulator and is fixed; only the
    inner flow is learned. Uses the same likelihood formula as the M-flow.

    Args:
        simulator: name of a simulator in ``simulators.SIMULATORS`` that has ``chart``/``embed``.
        simulator_options: its keyword options.
        param_dim: dimension of θ.
        inner_layers, **arch: the inner flow.
    """

    def __init__(
        self,
        simulator: str,
        simulator_options: dict | None = None,
        param_dim: int = 0,
        inner_layers: int = 5,
        **arch,
    ) -> None:
        super().__init__()
        from simulators import get_simulator

        self.simulator = get_simulator(simulator, **(simulator_options or {}))
        self.data_dim, self.manifold_dim = self.simulator.data_dim, self.simulator.manifold_dim
        self.param_dim = param_dim
        self.config = {"simulator": simulator, "simulator_options": simulator_options or {},
                       "param_dim": param_dim, "inner_layers": inner_layers, **arch}
        self._build_inner(inner_layers, arch)

    def encode(self, x: Tensor, theta: Tensor | None = None) -> Tensor:
        return self.simulator.chart(x)

    def decode(self, u: Tensor, theta: Tensor | None = None) -> Tensor:
        return self.simulator.embed(u)
