"""A trained mfinfer model as an sbi likelihood estimator (sbi's ``ConditionalDensityEstimator``).

sbi's neural likelihood estimation (NLE) evaluates an estimator of p(x|θ): the estimator's
``input`` is x (D columns) and its ``condition`` is θ (p columns). :func:`to_sbi` wraps any
mfinfer model (AF, M-flow, Mₑ-flow, FOM) that way, so sbi's potentials, MCMC posteriors and
diagnostics run on it unchanged:

    from sbi.inference import MCMCPosterior, likelihood_estimator_based_potential

    estimator = to_sbi(model)                                   # model: a trained ManifoldFlow
    potential, transform = likelihood_estimator_based_potential(estimator, prior, x_obs)
    posterior = MCMCPosterior(potential, prior, theta_transform=transform)
    samples = posterior.sample((1000,))                         # x_obs (n, D): n i.i.d. events

Written against sbi 0.27 (``sbi.neural_nets.estimators.ConditionalDensityEstimator``).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any, cast, get_args

import torch
from sbi.neural_nets.estimators import ConditionalDensityEstimator
from torch import Tensor, nn

from mfinfer.caching import array_digest
from mfinfer.errors import InputError
from mfinfer.inference.likelihood import Mode
from mfinfer.models import Flow

__all__ = ["SbiDensityEstimator", "to_sbi"]

#: How many event sets an estimator keeps the projection (u, ½ log det JᵀJ) of.
PROJECTION_CACHE_SIZE = 4


class SbiDensityEstimator(ConditionalDensityEstimator):
    """An mfinfer model seen by sbi as a likelihood estimator p(x|θ): input x, condition θ.

    ``log_prob`` is the model's ``log_prob(x, θ, mode=mode)`` on sbi's shapes. For a model whose
    manifold does not depend on θ (``model.caches_projection``), the projection u = encode(x) and
    ½ log det JᵀJ are computed once per distinct event and kept for the last
    ``PROJECTION_CACHE_SIZE`` event sets and the current weights (sbi's MCMC evaluates the same
    observed events at every step), as ``mfinfer.inference.ModelLikelihood`` does; the result
    equals the model's ``log_prob``. Nothing is cached in training mode or when x requires grad;
    gradients with respect to θ (sbi's HMC/NUTS) go through the inner flow.

    Arguments:
        model: A trained mfinfer model (``AmbientFlow``, ``ManifoldFlow``, ``FOMFlow``) with
            ``param_dim ≥ 1``. It is kept, not copied (``self.net``): sbi's ``eval()``, ``to()``
            and the parameters act on it.
        mode: The model's density: ``"manifold"`` (every model) or ``"pie"`` (M-flows without an
            encoder; an unsupported pair fails at the first call with the model's error).

    Attributes:
        net: The wrapped model.
        mode: The density passed as ``model.log_prob(..., mode=mode)``.

    Raises:
        InputError: ``model`` is not an mfinfer model, is unconditional, or ``mode`` is unknown.
    """

    def __init__(self, model: Flow, mode: str = "manifold") -> None:
        if not isinstance(model, Flow):
            raise InputError(
                f"model: expected a trained mfinfer model (AmbientFlow, ManifoldFlow or FOMFlow), "
                f"got {type(model).__name__}; sbi's own estimators need no wrapping")
        if model.param_dim < 1:
            raise InputError(
                f"model: an unconditional model (param_dim=0) is no likelihood p(x|θ); build it "
                f"with param_dim=p, e.g. {type(model).__name__}.for_simulator(simulator)")
        if mode not in get_args(Mode):
            raise InputError(f"mode: must be one of {get_args(Mode)}, got {mode!r}")
        super().__init__(model, input_shape=torch.Size([model.data_dim]),
                         condition_shape=torch.Size([model.param_dim]))
        self.net: Flow = model
        self.mode = cast(Mode, mode)
        self._projections: OrderedDict[tuple, tuple[Tensor, Tensor]] = OrderedDict()

    @property
    def embedding_net(self) -> nn.Module:
        """The embedding of θ: none, so the identity (as for sbi's flows without one)."""
        return nn.Identity()

    # ------------------------------------------------------------------ sbi's interface
    def log_prob(self, input: Tensor, condition: Tensor, **kwargs: Any) -> Tensor:
        """log p(x|θ) with x = ``input`` and θ = ``condition``, batch dimensions broadcast.

        Arguments:
            input: Events x, shape (sample_dim, batch_dim, D) or (batch_dim, D).
            condition: Parameters θ, shape (batch_dim, p) or (sample_dim, batch_dim, p).
            **kwargs: Ignored (sbi's interface).

        Returns:
            Shape (sample_dim, batch_dim) ((1, batch_dim) for a 2-d ``input``), in the dtype and
            on the device of ``input``.

        Raises:
            InputError: a shape does not match the model's ``data_dim`` / ``param_dim``, the batch
                dimensions do not broadcast, or a row holds NaN or inf.
        """
        x = self._check(self._as_tensor(input, "input"), self.net.data_dim, "input", "x", (3, 2))
        theta = self._check(self._as_tensor(condition, "condition"), self.net.param_dim, "condition",
                            "θ", (2, 3))
        given = x
        if x.ndim == 2:
            x = x.unsqueeze(0)
        try:
            batch = torch.broadcast_shapes(x.shape[:-1], theta.shape[:-1])
        except RuntimeError:
            raise InputError(
                f"input and condition: batch dimensions {tuple(x.shape[:-1])} and "
                f"{tuple(theta.shape[:-1])} do not broadcast; give θ one row per x batch entry "
                f"(or one row for all)") from None
        x = x.expand(*batch, x.shape[-1])
        theta = theta.expand(*batch, theta.shape[-1]).reshape(-1, theta.shape[-1])
        lp = self._log_prob(x, theta).reshape(batch)
        return lp.to(dtype=given.dtype if given.is_floating_point() else lp.dtype, device=given.device)

    def loss(self, input: Tensor, condition: Tensor, **kwargs: Any) -> Tensor:
        """−log p(x|θ) per pair, input (batch_dim, D) and condition (batch_dim, p) -> (batch_dim,).

        This is the model's negative log-density only. It is the AF's training loss, but not an
        M-flow's: the manifold density alone does not fit the manifold (mfinfer adds the
        reconstruction error and alternates the M and D phases), so train M-flows with
        ``mfinfer.training.train`` and use this estimator for inference.
        """
        return -self.log_prob(self._as_tensor(input, "input").unsqueeze(0), condition)[0]

    def sample(self, sample_shape: Any, condition: Tensor, **kwargs: Any) -> Tensor:
        """Events x ~ p(x|θ), shape (*sample_shape, batch_dim, D), for θ = ``condition``.

        Arguments:
            sample_shape: Number of events per θ, as a shape (e.g. ``(100,)``).
            condition: Parameters θ, shape (batch_dim, p).
            **kwargs: ``generator`` (a ``torch.Generator``) is passed to ``model.sample``.

        Returns:
            The events, in the dtype and on the device of ``condition``.
        """
        theta = self._check(self._as_tensor(condition, "condition"), self.net.param_dim,
                            "condition", "θ", (2,))
        shape = torch.Size(sample_shape)
        if shape.numel() < 1:
            raise InputError(f"sample_shape: expected a shape with at least one sample, got {tuple(shape)}")
        x = self.net.sample(shape.numel() * len(theta), theta.repeat(shape.numel(), 1),
                            generator=kwargs.get("generator"))
        x = x.reshape(*shape, len(theta), self.net.data_dim)
        return x.to(dtype=theta.dtype if theta.is_floating_point() else x.dtype, device=theta.device)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _as_tensor(a: Any, name: str) -> Tensor:
        if isinstance(a, Tensor):
            return a
        try:
            return torch.as_tensor(a)
        except (TypeError, ValueError, RuntimeError) as err:
            raise InputError(
                f"{name}: expected a tensor of numbers, got {type(a).__name__} ({err})") from None

    @staticmethod
    def _check(a: Tensor, dim: int, name: str, what: str, ndims: tuple[int, ...]) -> Tensor:
        """Check the number of axes, the event size (last axis) and finiteness of an sbi input."""
        if a.ndim not in ndims or a.shape[-1] != dim:
            shapes = {2: f"(batch_dim, {dim})", 3: f"(sample_dim, batch_dim, {dim})"}
            want = " or ".join(shapes[n] for n in ndims)
            raise InputError(f"{name}: expected {what} of shape {want} (the model's "
                             f"{'data_dim' if what == 'x' else 'param_dim'} is {dim}), got {tuple(a.shape)}")
        bad = ~torch.isfinite(a).all(-1)
        if bool(bad.any()):
            raise InputError(f"{name}: {int(bad.sum())} of {bad.numel()} {what} row(s) contain NaN or inf; "
                             f"remove or fix them")
        return a

    def _log_prob(self, x: Tensor, theta: Tensor) -> Tensor:
        """log p(x|θ) for x (*batch, D) and θ (n, p) with n = prod(batch), -> (n,)."""
        model, flat = self.net, x.reshape(-1, x.shape[-1])
        cached = (self.mode == "manifold" and model.caches_projection and not model.training
                  and not x.requires_grad)
        if not cached:
            return model.log_prob(flat, theta, mode=self.mode)
        # The projection is θ-independent: once per distinct event, and once per event set.
        events, index = torch.unique(flat, dim=0, return_inverse=True)
        u, half_log_det = self._projection(events)
        index = index.to(u.device)
        return model.inner_log_prob(u[index], theta) - half_log_det[index]

    def _projection(self, events: Tensor) -> tuple[Tensor, Tensor]:
        """(u, ½ log det JᵀJ) of distinct events (k, D), kept for the last few event sets.

        sbi's MCMC evaluates the same observed events at every step; the Jacobian (forward-mode
        AD) costs far more than the inner flow, so it is computed once per events and weights.
        """
        tensors = itertools.chain(self.net.parameters(), self.net.buffers())
        state = tuple((id(t), t._version, t.dtype, str(t.device)) for t in tensors)
        key = (array_digest(events), state)
        hit = self._projections.get(key)
        if hit is None:
            u = self.net.encode(events)
            hit = (u, 0.5 * self.net.log_det_jtj(u))
            self._projections[key] = hit
            while len(self._projections) > PROJECTION_CACHE_SIZE:
                self._projections.popitem(last=False)
        self._projections.move_to_end(key)
        return hit


def to_sbi(model: Flow, mode: str = "manifold") -> SbiDensityEstimator:
    """Wrap a trained mfinfer model as an sbi likelihood estimator (see :class:`SbiDensityEstimator`).

    Arguments:
        model: A trained mfinfer model with ``param_dim ≥ 1``.
        mode: ``"manifold"`` (default) or ``"pie"`` (M-flows).

    Example:
        >>> from mfinfer.models import AmbientFlow
        >>> estimator = to_sbi(AmbientFlow(3, param_dim=1, num_layers=1, hidden_features=8))
        >>> estimator.log_prob(torch.zeros(5, 4, 3), torch.zeros(4, 1)).shape
        torch.Size([5, 4])
    """
    return SbiDensityEstimator(model, mode=mode)
