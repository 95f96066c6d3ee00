"""Deep ensembles of likelihood models: K members trained alike with different seeds, one mixture.

The combination is the **mixture of the members' likelihoods, per event**:

    p̂(x|θ) = (1/K) Σ_k p̂_k(x|θ),   log p̂ = logsumexp_k log p̂_k(x|θ) − log K,

and the posterior of i.i.d. events multiplies these mixtures, p(θ|x₁..x_n) ∝ p(θ) Π_i p̂(x_i|θ).
Why this one:

- it is a normalised density in x for every θ, whatever K, so the posterior it gives is a genuine
  likelihood-based posterior and its held-out log p̂ is comparable with a single model's (and, by
  Jensen, never worse than the members' average log p̂: mixtures hedge the log score);
- the mean of the members' log-likelihoods (a geometric mean of densities) is not normalised, and
  its normaliser depends on θ, which biases the posterior by an unknown θ-dependent factor;
- a mixture of the members' *posteriors* would widen the intervals more where the members disagree,
  but it is not a likelihood: it cannot be written per event, so it would not fit the likelihood
  and posterior machinery (one likelihood object, any sampler) or the per-event metrics.

Members are any mfinfer models with the same ``data_dim`` and ``param_dim`` (their densities must be
w.r.t. the same measure: mix M-flows with M-flows, AFs with AFs). Each member keeps its own θ map.
``mfinfer.training.train_ensemble`` trains the K members (member k: its own initialisation seed,
its own validation split and batch order); configs ask for one with ``ensemble: K`` on a model.
Saved and loaded like any model (``save_model`` / ``load_model``: one ``weights.pt`` with every
member's tensors, ``model.json`` with every member's class and config).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from mfinfer.errors import ConfigError, InputError
from mfinfer.models.base import Flow

__all__ = ["Ensemble"]

Mode = Literal["manifold", "pie"]


class Ensemble(Flow):
    """An equal-weight mixture of K trained models (module docstring: why a per-event mixture).

    Capabilities: the members' parameters are its parameter groups; it has no single chart
    (``has_manifold`` False, no cached projection); ``reconstruction_error`` is the members' mean.

    Args:
        members: K ≥ 1 models with equal ``data_dim`` and ``param_dim``.

    Example:
        >>> from mfinfer.models import AmbientFlow
        >>> members = [AmbientFlow(2, param_dim=1, num_layers=1, hidden_features=8) for _ in range(3)]
        >>> ens = Ensemble(members)
        >>> x, theta = torch.zeros(4, 2), torch.zeros(4, 1)
        >>> lp = torch.stack([m.log_prob(x, theta) for m in members])
        >>> torch.allclose(ens.log_prob(x, theta), torch.logsumexp(lp, 0) - math.log(3))
        True
    """

    def __init__(self, members: Sequence[Flow]) -> None:
        super().__init__()
        members = list(members)
        if not members or not all(isinstance(m, Flow) for m in members):
            raise InputError(f"members: expected a non-empty list of mfinfer models, got "
                             f"{[type(m).__name__ for m in members]}")
        dims = {(m.data_dim, m.param_dim) for m in members}
        if len(dims) > 1:
            raise InputError(f"members: expected equal (data_dim, param_dim), got {sorted(dims)}")
        if any(isinstance(m, Ensemble) for m in members):
            raise InputError("members: an ensemble of ensembles; pass the members themselves")
        self.members = nn.ModuleList(members)
        self.data_dim, self.param_dim = members[0].data_dim, members[0].param_dim
        self.config = {"members": [{"kind": type(m).__name__, "config": m.config} for m in members]}
        self.eval()

    @property
    def size(self) -> int:
        """K, the number of members."""
        return len(self.members)

    @property
    def flows(self) -> list[Flow]:
        """The members, typed as models."""
        return [cast(Flow, m) for m in self.members]

    def manifold_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.flows for p in m.manifold_parameters()]

    def density_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.flows for p in m.density_parameters()]

    def fit_standardization(self, x: Any) -> None:
        for m in self.flows:
            m.fit_standardization(x)

    def member_log_probs(self, x: Any, theta: Any = None, mode: Mode = "manifold") -> Tensor:
        """Every member's log p̂_k(x|θ), (n, D) -> (K, n)."""
        x = self._check_x(x)
        return torch.stack([m.log_prob(x, theta, mode=mode) for m in self.flows])

    def log_prob(self, x: Any, theta: Any = None, mode: Mode = "manifold") -> Tensor:
        """log of the mixture (1/K) Σ_k p̂_k(x|θ), (n, D) and (n, p) or (p,) -> (n,).

        ``mode`` is passed to every member (``"pie"``: M-flow members only)."""
        return torch.logsumexp(self.member_log_probs(x, theta, mode), 0) - math.log(self.size)

    def sample(self, n: int, theta: Any = None, generator: torch.Generator | None = None) -> Tensor:
        """n events from the mixture: each row's member drawn uniformly, (n, D); θ (p,) or (n, p)."""
        n = self._check_n(n)
        if self.param_dim > 0:
            theta = self._check_theta(theta, n)  # validated and broadcast; members map θ themselves
        ref = self._ref()
        which = torch.randint(self.size, (n,), generator=generator)
        out = torch.empty(n, self.data_dim, dtype=ref.dtype, device=ref.device)
        for k, member in enumerate(self.flows):
            rows = torch.nonzero(which == k).flatten()
            if len(rows):
                t = None if theta is None else theta[rows]
                out[rows.to(ref.device)] = member.sample(len(rows), t, generator=generator)
        return out

    def reconstruction_error(self, x: Any, theta: Any = None) -> Tensor:
        """The members' mean |project(x) − x| per event, (n, D) -> (n,) (zeros for AF members)."""
        x = self._check_x(x)
        return torch.stack([m.reconstruction_error(x, theta) for m in self.flows]).mean(0)

    @classmethod
    def for_simulator(cls, simulator: Any, **options: Any) -> Ensemble:
        raise ConfigError("an Ensemble is not built from options: give a model `ensemble: K` in the "
                          "config, or call mfinfer.training.train_ensemble(build, K, x, theta)")

    @classmethod
    def from_config(cls, config: dict, **extra: Any) -> Ensemble:
        """Rebuild from a stored config; ``extra`` (e.g. ``chart=``) goes to every member."""
        from mfinfer.models.storage import MODELS

        members = []
        for k, spec in enumerate(config.get("members", [])):
            kind = spec.get("kind") if isinstance(spec, dict) else None
            if kind not in MODELS or kind == "Ensemble":
                raise InputError(f"members[{k}].kind: expected one of "
                                 f"{[m for m in MODELS if m != 'Ensemble']}, got {kind!r}")
            members.append(MODELS[kind].from_config(spec["config"], **extra))
        return cls(members)
