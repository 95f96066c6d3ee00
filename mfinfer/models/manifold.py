"""Manifold-learning flows: M-flow, Mₑ-flow and PIE (Brehmer & Cranmer, arXiv:2003.13913).

An injective flow has a chart u = encode(x) in R^d, an embedding x = decode(u) in R^D and an inner
conditional flow h: u -> z on R^d with base N(0, I). Its manifold density at the projected point is

    log p(x|θ) = log N(h(u; θ)) + log|det ∂h/∂u| - ½ log det(JᵀJ),   J = ∂decode/∂u  (D × d).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from nflows.nn.nets import ResidualNet
from torch import Tensor, nn

from mfinfer.errors import InputError
from mfinfer.models.base import Flow, Schedule, standard_normal_log_prob
from mfinfer.models.jacobian import jacobian, log_det_jtj
from mfinfer.models.transforms import Standardize, check_arch, flow_transform

__all__ = ["InjectiveFlow", "ManifoldFlow"]

Mode = Literal["manifold", "pie"]


class InjectiveFlow(Flow):
    """Base of M-flow and FOM: the inner flow, the manifold density and sampling.

    Subclasses define ``_encode(x, theta) -> (n, d)`` and ``_decode(u, theta) -> (n, D)`` on
    validated tensors; the public ``encode``/``decode``/``project`` accept numpy too.
    """

    has_manifold = True
    default_schedule: ClassVar[Schedule] = "sequential"
    manifold_dim: int
    conditional_manifold: bool = False

    @property
    def caches_projection(self) -> bool:
        return not self.conditional_manifold

    def density_parameters(self) -> list[nn.Parameter]:
        return self._parameters_of(self.inner)

    def _build_inner(self, num_layers: int, arch: dict) -> None:
        self.inner = flow_transform(self.manifold_dim, num_layers, self.param_dim, **arch)

    def _encode(self, x: Tensor, theta: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _decode(self, u: Tensor, theta: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _manifold_theta(self, theta: Any, n: int) -> Tensor | None:
        """θ as the manifold maps see it: validated when the manifold depends on θ, else None."""
        return self._check_theta(theta, n) if self.conditional_manifold else None

    def _check_u(self, u: Any) -> Tensor:
        return self._check_input(u, self.manifold_dim, "u")

    def encode(self, x: Any, theta: Any = None) -> Tensor:
        """Manifold coordinates u of x, (n, D) -> (n, d)."""
        x = self._check_x(x)
        with self._grad_context(x, theta):
            return self._encode(x, self._manifold_theta(theta, len(x)))

    def decode(self, u: Any, theta: Any = None) -> Tensor:
        """Point on the learned manifold with coordinates u, (n, d) -> (n, D)."""
        u = self._check_u(u)
        with self._grad_context(u, theta):
            return self._decode(u, self._manifold_theta(theta, len(u)))

    def project(self, x: Any, theta: Any = None) -> Tensor:
        """Projection onto the learned manifold, decode(encode(x)), (n, D) -> (n, D)."""
        x = self._check_x(x)
        t = self._manifold_theta(theta, len(x))
        with self._grad_context(x, t):
            return self._decode(self._encode(x, t), t)

    def reconstruction_error(self, x: Any, theta: Any = None) -> Tensor:
        """|project(x) − x| per event, (n, D) -> (n,)."""
        x = self._check_x(x)
        return (self.project(x, theta) - x).norm(dim=1)

    def reconstruction_loss(self, x: Tensor, theta: Tensor | None) -> Tensor:
        """Mean squared reconstruction error, per column in units of the input standardisation
        (so GeV-scale and angle columns count alike); the M-phase loss."""
        standardize = getattr(self, "standardize", None)
        scale = standardize.scale if standardize is not None else 1.0
        t = self._manifold_theta(theta, len(x))
        return (((self._decode(self._encode(x, t), t) - x) / scale) ** 2).sum(-1).mean()

    def inner_log_prob(self, u: Any, theta: Any = None) -> Tensor:
        """log p(u|θ) of the inner flow, (n, d) -> (n,). The only θ-dependent term when the
        manifold is θ-independent."""
        u = self._check_u(u)
        theta = self._check_theta(theta, len(u))
        with self._grad_context(u, theta):
            return self._inner_log_prob(u, theta)

    def _inner_log_prob(self, u: Tensor, theta: Tensor | None) -> Tensor:
        z, ladj = self.inner(u, context=theta)
        return standard_normal_log_prob(z) + ladj

    def log_det_jtj(self, u: Any, theta: Any = None) -> Tensor:
        """log det(JᵀJ) of the decoder at u, (n, d) -> (n,), by forward-mode AD."""
        u = self._check_u(u)
        theta = self._manifold_theta(theta, len(u))
        with self._grad_context(u, theta):
            return self._log_det_jtj(u, theta)

    def _log_det_jtj(self, u: Tensor, theta: Tensor | None) -> Tensor:
        """On validated u and the manifold's θ (None for a θ-independent manifold)."""
        theta_rep = None if theta is None else theta.repeat_interleave(self.manifold_dim, dim=0)
        return log_det_jtj(jacobian(lambda v: self._decode(v, theta_rep), u)[1])

    def log_prob(self, x: Any, theta: Any = None, mode: Mode = "manifold") -> Tensor:
        """log p(x|θ), (n, D) -> (n,).

        Args:
            x: events (n, D).
            theta: parameters, (p,) or (n, p); None for unconditional models.
            mode: ``"manifold"``: the manifold density at the projected point (formula above), a
                density on the d-dimensional manifold; ``"pie"``: the full D-dimensional PIE
                density with off-manifold v ~ N(0, ε² I).
        """
        if mode not in ("manifold", "pie"):
            raise InputError(f"mode: must be one of ('manifold', 'pie'), got {mode!r}")
        x = self._check_x(x)
        theta = self._check_theta(theta, len(x))
        with self._grad_context(x, theta):
            if mode == "pie":
                return self._pie_log_prob(x, theta)
            t_manifold = theta if self.conditional_manifold else None
            u = self._encode(x, t_manifold)
            return self._inner_log_prob(u, theta) - 0.5 * self._log_det_jtj(u, t_manifold)

    def _pie_log_prob(self, x: Tensor, theta: Tensor | None) -> Tensor:
        raise InputError(f"mode='pie' needs an outer bijection; {type(self).__name__} has none")

    def sample(self, n: int, theta: Any = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw n events on the manifold, (n, D); θ is (p,) or (n, p)."""
        n = self._check_n(n)
        theta = self._check_theta(theta, n)
        ref = self._ref()
        z = torch.randn(n, self.manifold_dim, generator=generator, dtype=ref.dtype, device=ref.device)
        with self._grad_context(theta):
            u = self.inner.inverse(z, context=theta)[0]
            return self._decode(u, theta if self.conditional_manifold else None)


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
        theta_loc, theta_scale: every network sees (θ − loc) / scale instead of θ (by default
            ``prior.scaling()`` where the model meets its prior; e.g. the
            prior's centre and half-width); default: θ as given.
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
        *,
        param_dim: int = 0,
        encoder: bool = False,
        conditional_manifold: bool = False,
        outer_layers: int = 5,
        inner_layers: int = 5,
        pie_epsilon: float = 0.01,
        theta_loc: list[float] | None = None,
        theta_scale: list[float] | None = None,
        **arch: Any,
    ) -> None:
        super().__init__()
        check_arch("ManifoldFlow", arch, ("param_dim", "encoder", "conditional_manifold", "outer_layers",
                                          "inner_layers", "pie_epsilon", "theta_loc", "theta_scale"),
                   data_dim=data_dim, manifold_dim=manifold_dim, param_dim=param_dim,
                   outer_layers=outer_layers, inner_layers=inner_layers)
        if not 0 < manifold_dim < data_dim:
            raise InputError(f"manifold_dim: expected 0 < d < D = {data_dim}, got {manifold_dim}")
        self.data_dim, self.manifold_dim, self.param_dim = data_dim, manifold_dim, param_dim
        self.conditional_manifold, self.pie_epsilon = conditional_manifold, pie_epsilon
        self.config = {
            "data_dim": data_dim, "manifold_dim": manifold_dim, "param_dim": param_dim,
            "encoder": encoder, "conditional_manifold": conditional_manifold,
            "outer_layers": outer_layers, "inner_layers": inner_layers, "pie_epsilon": pie_epsilon, **arch,
            **self._set_theta_map(theta_loc, theta_scale),
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
        self.eval()

    @classmethod
    def for_simulator(cls, simulator: Any, **options: Any) -> ManifoldFlow:
        return cls(simulator.data_dim, simulator.manifold_dim, param_dim=simulator.param_dim, **options)

    def manifold_parameters(self) -> list[nn.Parameter]:
        return self._parameters_of(self.outer, self.encoder)

    @property
    def density_modes(self) -> tuple[str, ...]:
        """``("manifold", "pie")``; the Mₑ-flow (encoder=True) has no PIE density."""
        return ("manifold",) if self.encoder is not None else ("manifold", "pie")

    def _encode(self, x: Tensor, theta: Tensor | None) -> Tensor:
        xs = self.standardize(x)[0]
        if self.encoder is not None:
            return self.encoder(xs, theta)
        return self.outer(xs, context=theta)[0][:, : self.manifold_dim]

    def _decode(self, u: Tensor, theta: Tensor | None) -> Tensor:
        """g(u) = f⁻¹(u, 0)."""
        h = torch.cat([u, u.new_zeros(len(u), self.data_dim - self.manifold_dim)], dim=1)
        return self.standardize.inverse(self.outer.inverse(h, context=theta)[0])[0]

    def _pie_log_prob(self, x: Tensor, theta: Tensor | None) -> Tensor:
        if self.encoder is not None:
            raise InputError("mode='pie' is undefined for the Mₑ-flow (encoder=True): use mode='manifold'")
        xs, ladj_s = self.standardize(x)
        h, ladj_f = self.outer(xs, context=theta if self.conditional_manifold else None)
        u, v = h[:, : self.manifold_dim], h[:, self.manifold_dim :]
        eps = self.pie_epsilon
        log_v = standard_normal_log_prob(v / eps) - v.shape[1] * torch.log(
            torch.as_tensor(eps, dtype=x.dtype)
        )
        return self._inner_log_prob(u, theta) + log_v + ladj_f + ladj_s
