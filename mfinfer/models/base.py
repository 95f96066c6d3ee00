"""The ``Flow`` protocol every mfinfer model follows: densities, sampling and declared capabilities.

Code outside ``mfinfer.models`` never asks which class a model is. It asks the model:

- ``manifold_parameters()`` / ``density_parameters()``: the parameter groups that the M and D
  training phases update (the AF has no manifold group);
- ``default_schedule``: the training schedule used when the config names none;
- ``has_manifold``: whether ``encode``/``decode``/``project`` exist;
- ``caches_projection``: whether u = encode(x) and log det JᵀJ are θ-independent, so that the
  likelihood may compute them once per observed event;
- ``reconstruction_error(x)``: |project(x) − x| (zero for a model without a manifold);
- ``for_simulator(simulator, **options)``: build the model with the dimensions a simulator declares.

Outside training (``model.eval()``, the state after construction and after ``train``), ``log_prob``,
``sample`` and the manifold maps return tensors without autograd history, so ``.numpy()`` works,
unless an input tensor requires grad (derivatives with respect to inputs stay available).
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

from mfinfer._validation import as_model_input, broadcast_rows, check_count
from mfinfer.errors import InputError

__all__ = ["SCHEDULES", "Flow", "Schedule", "standard_normal_log_prob"]

#: The training schedules (what each one trains: :mod:`mfinfer.training.phases`). A model names its
#: default here, so the type lives with the models and the trainer imports it from them.
Schedule = Literal["nll", "pie", "sequential", "alternating", "simultaneous", "fom"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I), (n, k) -> (n,)."""
    return -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


class Flow(nn.Module):
    """Base of every mfinfer model: dimensions, a JSON-able ``config``, input validation and the
    capability defaults of a model without a manifold.

    Subclasses store their constructor arguments in ``self.config`` so that ``save_model`` /
    ``load_model`` can rebuild them with ``from_config``.
    """

    data_dim: int
    param_dim: int
    config: dict
    #: the training schedule used when none is given (one of ``SCHEDULES``).
    default_schedule: ClassVar[Schedule] = "nll"
    #: whether the model has encode/decode/project (an injective flow).
    has_manifold: ClassVar[bool] = False

    if TYPE_CHECKING:
        # The protocol methods, declared for the type checker only (no runtime attributes, so a
        # model without a manifold still has no ``encode``). Every model defines ``log_prob`` and
        # ``sample``; the rest exist where ``has_manifold`` is True (see ``InjectiveFlow``).
        def log_prob(
            self, x: Any, theta: Any = None, mode: Literal["manifold", "pie"] = "manifold"
        ) -> Tensor: ...
        def sample(self, n: int, theta: Any = None, generator: torch.Generator | None = None) -> Tensor: ...
        def encode(self, x: Any, theta: Any = None) -> Tensor: ...
        def decode(self, u: Any, theta: Any = None) -> Tensor: ...
        def project(self, x: Any, theta: Any = None) -> Tensor: ...
        def inner_log_prob(self, u: Any, theta: Any = None) -> Tensor: ...
        def log_det_jtj(self, u: Any, theta: Any = None) -> Tensor: ...
        def reconstruction_loss(self, x: Tensor, theta: Tensor | None) -> Tensor: ...

    # ------------------------------------------------------------------ capabilities
    @property
    def density_modes(self) -> tuple[str, ...]:
        """The densities ``log_prob(..., mode=...)`` offers, the model's own (default) first."""
        return ("manifold",)

    @property
    def caches_projection(self) -> bool:
        """Whether encode(x) and log det JᵀJ are θ-independent (a cached projection is valid)."""
        return False

    def manifold_parameters(self) -> list[nn.Parameter]:
        """The parameters that define the learned manifold (trained by the M phase)."""
        return []

    def density_parameters(self) -> list[nn.Parameter]:
        """The parameters of the density (trained by the D phase; all of them for the AF)."""
        return list(self.parameters())

    def reconstruction_error(self, x: Any, theta: Any = None) -> Tensor:
        """|project(x) − x| per event, (n, D) -> (n,); zeros for a model without a manifold."""
        x = self._check_x(x)
        return x.new_zeros(len(x))

    def fit_standardization(self, x: Any) -> None:
        """Fit the fixed input standardisation to training data x (n, D); a no-op without one."""
        standardize = getattr(self, "standardize", None)
        if standardize is not None:
            standardize.fit(self._check_x(x))

    @classmethod
    def for_simulator(cls, simulator: Any, **options: Any) -> Flow:
        """Build the model for a simulator's ``data_dim`` and ``param_dim``, plus ``options``."""
        return cls(simulator.data_dim, param_dim=simulator.param_dim, **options)

    @classmethod
    def from_config(cls, config: dict) -> Flow:
        """Rebuild a model from its stored ``config``."""
        return cls(**config)

    # ------------------------------------------------------------------ checks
    def _ref(self) -> Tensor:
        """A tensor whose dtype and device the model's inputs must follow (a parameter, or a
        buffer for a model without parameters, e.g. a FOM flow with a fixed inner map)."""
        ref: Tensor | None = next(self.parameters(), None)
        if ref is None:
            ref = next(self.buffers(), torch.empty(0))
        return ref

    def _grad_context(self, *inputs: Any) -> contextlib.AbstractContextManager:
        """No autograd graph outside training, so results can go straight to ``.numpy()``; unless
        an input requires grad (then the caller asked for derivatives with respect to it)."""
        wants_grad = any(isinstance(a, Tensor) and a.requires_grad for a in inputs)
        return contextlib.nullcontext() if self.training or wants_grad else torch.no_grad()

    def _check_input(self, a: Any, dim: int, name: str) -> Tensor:
        """A model input (n, dim). Outside training it must be non-empty and finite; inside, the
        trainer has checked the whole data set once, so per-batch checks are skipped."""
        public = not self.training
        return as_model_input(a, dim, name, self._ref(), finite=public, min_rows=int(public))

    def _check_x(self, x: Any, name: str = "x") -> Tensor:
        return self._check_input(x, self.data_dim, name)

    def _check_n(self, n: Any) -> int:
        return check_count(n, "n", minimum=1)

    def _check_theta(self, theta: Any, n: int) -> Tensor | None:
        """Validate θ and broadcast it to n rows: None, (p,) or (n, p) -> None or (n, p)."""
        if self.param_dim == 0:
            if theta is not None and torch.as_tensor(theta).numel() > 0:
                raise InputError("theta: this model is unconditional (param_dim=0), got a theta")
            return None
        if theta is None:
            raise InputError(f"theta: this model is conditional, expected shape (n, {self.param_dim})")
        if not isinstance(theta, Tensor) and torch.as_tensor(theta).ndim == 1:
            theta = [theta]
        elif isinstance(theta, Tensor) and theta.ndim == 1:
            theta = theta[None]
        theta = broadcast_rows(self._check_input(theta, self.param_dim, "theta"), n, "theta")
        loc: Tensor | None = getattr(self, "theta_loc", None)
        return theta if loc is None else (theta - loc) / self.theta_scale

    @property
    def has_theta_map(self) -> bool:
        """Whether the networks see (θ − theta_loc) / theta_scale (else θ as given)."""
        return "theta_loc" in self.config

    def set_theta_map(self, loc: Any, scale: Any) -> None:
        """Set the fixed map θ -> (θ − loc) / scale, (p,) each, that every network sees instead of θ,
        and record it in ``config`` (so ``save_model`` / ``load_model`` keep it). Set it before
        training: the networks learn in the scaled θ. Where a model meets its prior
        (``build_model``, ``LikelihoodEstimator.train``) it gets ``prior.scaling()`` by default."""
        self.config.update(self._set_theta_map(loc, scale))

    def _set_theta_map(self, loc: Any, scale: Any) -> dict[str, list[float]]:
        """Register the fixed map θ -> (θ − loc) / scale that every network sees instead of θ
        (e.g. the prior's centre and half-width, so that θ of order 10 or 100 reaches the networks
        as numbers of order one); both None: θ as given. Returns the config entries."""
        if loc is None and scale is None:
            return {}
        if loc is None or scale is None:
            raise InputError("theta_loc, theta_scale: give both or neither")
        pair = [torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in (loc, scale)]
        for name, v in zip(("theta_loc", "theta_scale"), pair, strict=True):
            if v.shape != (self.param_dim,) or not torch.isfinite(v).all():
                raise InputError(f"{name}: expected {self.param_dim} finite numbers (one per "
                                 f"parameter), got {v.tolist()}")
        if (pair[1] <= 0).any():
            raise InputError(f"theta_scale: expected positive numbers, got {pair[1].tolist()}")
        ref = self._ref()  # the default dtype on CPU while the model is being built
        self.register_buffer("theta_loc", pair[0].to(dtype=ref.dtype, device=ref.device))
        self.register_buffer("theta_scale", pair[1].to(dtype=ref.dtype, device=ref.device))
        return {"theta_loc": pair[0].tolist(), "theta_scale": pair[1].tolist()}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items() if not isinstance(v, dict))

    def _parameters_of(self, *modules: nn.Module | None) -> list[nn.Parameter]:
        return [p for m in modules if m is not None for p in m.parameters()]
