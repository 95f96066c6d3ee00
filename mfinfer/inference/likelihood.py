"""Log-likelihoods of a set of i.i.d. observed events, Σ_i log p(x_i|θ), vectorized over θ.

``ModelLikelihood`` evaluates a trained flow. When the manifold does not depend on θ (the paper's
M-flows), u_i = encode(x_i) and ½ log det JᵀJ(u_i) are computed once per observed event; each θ
then needs only the inner flow, evaluated for all θ rows × events in one batched call.
``SimulatorLikelihood`` does the same with a simulator's exact likelihood (the true posterior).
"""

from __future__ import annotations

import numpy as np
import torch

from mfinfer.models import Flow, InjectiveFlow

__all__ = ["ModelLikelihood", "SimulatorLikelihood", "check_events", "projection_errors"]


def check_events(x: np.ndarray, data_dim: int, name: str = "observed events") -> np.ndarray:
    """Validate observed events: a non-empty, finite (n, D) array."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1 and x.shape[0] == data_dim:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != data_dim:
        raise ValueError(f"{name}: expected shape (n, {data_dim}), got {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name}: the event set is empty; give at least one event")
    bad = ~np.isfinite(x).all(1)
    if bad.any():
        raise ValueError(f"{name}: {int(bad.sum())} event(s) contain NaN or inf (first: row "
                         f"{int(np.flatnonzero(bad)[0])}); remove or fix them")
    return x


def projection_errors(model: Flow, x: np.ndarray) -> np.ndarray:
    """|project(x_i) - x_i| per event, (n, D) -> (n,); zeros for the ambient flow (no manifold)."""
    if not isinstance(model, InjectiveFlow):
        return np.zeros(len(x))
    ref = next(model.parameters())
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=ref.dtype, device=ref.device)
    with torch.no_grad():
        return (model.project(xt) - xt).norm(dim=1).cpu().numpy()


class ModelLikelihood:
    """Σ_i log p̂(x_i|θ) of a trained model, callable on θ (m, p) -> (m,) numpy.

    Args:
        model: a trained ``AmbientFlow``, ``ManifoldFlow`` or ``FOMFlow``.
        x: observed events (n, D).
        mode: ``"manifold"`` or ``"pie"`` for injective flows (ignored for the AF).
        cache: reuse the projection of the events across θ when the manifold is θ-independent.
        chunk: maximal number of (θ, event) pairs per batched model call.
    """

    def __init__(self, model: Flow, x: np.ndarray, mode: str = "manifold", cache: bool = True,
                 chunk: int = 200_000) -> None:
        self.model, self.mode, self.chunk = model.eval(), mode, chunk
        self.x_np = check_events(x, model.data_dim)
        ref = next(model.parameters())
        self.x = torch.as_tensor(self.x_np, dtype=ref.dtype, device=ref.device)
        self.cached = (cache and mode == "manifold" and isinstance(model, InjectiveFlow)
                       and not model.conditional_manifold)
        if self.cached:
            with torch.no_grad():
                self.u = model.encode(self.x)
            self.half_log_det = 0.5 * model.log_det_jtj(self.u).detach()

    @property
    def n_events(self) -> int:
        return len(self.x)

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        ref = self.x
        theta = torch.as_tensor(np.atleast_2d(theta), dtype=ref.dtype, device=ref.device)
        n = self.n_events
        rows_per_call = max(1, self.chunk // n)
        out = [self._batch(t) for t in theta.split(rows_per_call)]
        return torch.cat(out).cpu().numpy()

    def per_event(self, theta: np.ndarray) -> np.ndarray:
        """log p̂(x_i|θ_i) for paired rows: θ (n, p) with one row per observed event -> (n,)."""
        theta = torch.as_tensor(np.atleast_2d(theta), dtype=self.x.dtype, device=self.x.device)
        if len(theta) != self.n_events:
            raise ValueError(f"theta: expected {self.n_events} rows, one per event, got {len(theta)}")
        kwargs = {"mode": self.mode} if isinstance(self.model, InjectiveFlow) else {}
        out = []
        with torch.no_grad():
            for idx in torch.arange(self.n_events).split(max(1, self.chunk // 50)):
                out.append(self.model.log_prob(self.x[idx], theta[idx], **kwargs))
        return torch.cat(out).cpu().numpy()

    def _batch(self, theta: torch.Tensor) -> torch.Tensor:
        m, n = len(theta), self.n_events
        theta_rep = theta.repeat_interleave(n, dim=0)
        if self.cached:
            with torch.no_grad():
                lp = self.model.inner_log_prob(self.u.repeat(m, 1), theta_rep)
            return lp.reshape(m, n).sum(1) - self.half_log_det.sum()
        x_rep = self.x.repeat(m, 1)
        kwargs = {"mode": self.mode} if isinstance(self.model, InjectiveFlow) else {}
        with torch.no_grad():  # forward-mode AD for the Jacobian needs no autograd graph
            lp = self.model.log_prob(x_rep, theta_rep, **kwargs)
        return lp.reshape(m, n).sum(1)

    def reconstruction_error(self) -> np.ndarray:
        """|project(x_i) - x_i| per observed event, (n,); zeros for the ambient flow."""
        return projection_errors(self.model, self.x_np)


class SimulatorLikelihood:
    """Σ_i log p(x_i|θ) with the simulator's exact likelihood, θ (m, p) -> (m,)."""

    def __init__(self, simulator, x: np.ndarray) -> None:  # noqa: ANN001 - any Simulator
        self.simulator = simulator
        self.x = check_events(x, simulator.data_dim)

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        theta = np.atleast_2d(theta)
        m, n = len(theta), len(self.x)
        lp = self.simulator.log_likelihood(np.tile(self.x, (m, 1)), np.repeat(theta, n, axis=0))
        return lp.reshape(m, n).sum(1)
