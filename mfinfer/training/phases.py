"""Training phases and schedules of the paper (arXiv:2003.13913, Sec. 3).

A :class:`Phase` is the parameters it trains plus its loss. A schedule is a list of segments
``(phases, epochs)``; in each epoch of a segment every phase makes one pass over the data with its
own optimizer:

- ``nll``: plain negative log-likelihood (AF; any model's own density).
- ``pie``: NLL of the D-dimensional PIE density (``log_prob(mode="pie")``).
- ``sequential``: M phase (the manifold parameters, loss = w_mse · MSE(x, project(x))) for the first
  half of the epochs, then D phase (the density parameters, NLL of u = encode(x)).
- ``alternating``: each epoch one M pass and one D pass.
- ``simultaneous`` (S): all parameters, manifold NLL including the JᵀJ term, plus w_mse · MSE.
- ``fom``: D phase only (the chart is fixed).

The phases ask the model for its parameter groups (``manifold_parameters``,
``density_parameters``); they never look at its class.

Event weights: every loss is a mean of per-event terms ℓ_i (−log p, the reconstruction MSE, or
their sum). Given ``weights`` (B,) it is ``mean(w_i ℓ_i)`` instead, the trainer having divided the
weights by their mean over the data set (see ``mfinfer.training.train``), so that a pass over the
data gives the weighted mean loss Σ w_i ℓ_i / Σ w_i; without weights the plain mean, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from mfinfer.errors import ConfigError
from mfinfer.models import Flow
from mfinfer.models.base import SCHEDULES, Schedule

__all__ = ["PHASES", "SCHEDULES", "Phase", "Schedule", "segments"]

Loss = Callable[..., Tensor]


@dataclass(frozen=True)
class Phase:
    """One training phase: which parameters it updates and the loss it minimises.

    Attributes:
        name: ``nll``, ``pie``, ``M``, ``D`` or ``S``.
        group: ``"all"``, ``"manifold"`` or ``"density"``: the model's parameter group it trains.
        loss: ``loss(model, x (B, D), theta (B, p) | None, mse_weight, weights=None) -> scalar``;
            ``weights`` (B,), already normalised, make it the weighted mean of the per-event terms.
        needs_manifold: the phase needs an injective flow (encode/decode).
    """

    name: str
    group: Literal["all", "manifold", "density"]
    loss: Loss
    needs_manifold: bool = False

    def parameters(self, model: Flow) -> list[nn.Parameter]:
        """The parameters this phase trains; a clear error when the model has none for it."""
        if self.needs_manifold and not model.has_manifold:
            raise ConfigError(f"phase {self.name}: needs a model with a manifold (ManifoldFlow or "
                              f"FOMFlow), got {type(model).__name__}; use schedule='nll'")
        params = {"all": lambda: list(model.parameters()), "manifold": model.manifold_parameters,
                  "density": model.density_parameters}[self.group]()
        if not params:
            raise ConfigError(f"phase {self.name}: {type(model).__name__} has no {self.group} "
                              "parameters to train (a FOM flow's chart is fixed: use schedule='fom')")
        return params


def _mean(terms: Tensor, weights: Tensor | None) -> Tensor:
    """The mean of per-event terms (B,), weighted by normalised ``weights`` (B,) if given."""
    return terms.mean() if weights is None else (weights * terms).mean()


def _mse(m: Flow, x: Tensor, t: Tensor | None, weights: Tensor | None) -> Tensor:
    """The reconstruction loss: the model's own mean; with weights, the weighted mean of its
    per-event terms (the squared distance to project(x) per column in units of the input
    standardisation, as ``reconstruction_loss`` computes it)."""
    if weights is None:
        return m.reconstruction_loss(x, t)
    standardize = getattr(m, "standardize", None)
    scale = standardize.scale if standardize is not None else 1.0
    return _mean((((m.project(x, t) - x) / scale) ** 2).sum(-1), weights)


def _nll(m: Flow, x: Tensor, t: Tensor | None, w: float, weights: Tensor | None = None) -> Tensor:
    return _mean(-m.log_prob(x, t), weights)


def _pie(m: Flow, x: Tensor, t: Tensor | None, w: float, weights: Tensor | None = None) -> Tensor:
    return _mean(-m.log_prob(x, t, mode="pie"), weights)


def _m_loss(m: Flow, x: Tensor, t: Tensor | None, w: float, weights: Tensor | None = None) -> Tensor:
    return w * _mse(m, x, t, weights)


def _d_loss(m: Flow, x: Tensor, t: Tensor | None, w: float, weights: Tensor | None = None) -> Tensor:
    with torch.no_grad():
        u = m.encode(x, t)
    return _mean(-m.inner_log_prob(u, t), weights)


def _s_loss(m: Flow, x: Tensor, t: Tensor | None, w: float, weights: Tensor | None = None) -> Tensor:
    return _mean(-m.log_prob(x, t), weights) + w * _mse(m, x, t, weights)


PHASES: dict[str, Phase] = {
    "nll": Phase("nll", "all", _nll),
    "pie": Phase("pie", "all", _pie, True),
    "M": Phase("M", "manifold", _m_loss, True),
    "D": Phase("D", "density", _d_loss, True),
    "S": Phase("S", "all", _s_loss, True),
}


#: The phases of each schedule but ``sequential`` (which splits its epochs between M and D).
_PHASES_OF: dict[str, tuple[str, ...]] = {"nll": ("nll",), "pie": ("pie",), "alternating": ("M", "D"),
                                          "simultaneous": ("S",), "fom": ("D",)}


def segments(schedule: Schedule, epochs: int) -> list[tuple[tuple[str, ...], int]]:
    """The (phases, epochs) segments of a schedule (one of ``SCHEDULES``, as ``TrainConfig``
    checks it).

    Example:
        >>> segments("sequential", 5)
        [(('M',), 2), (('D',), 3)]
    """
    if schedule == "sequential":
        m = max(1, epochs // 2)
        return [(("M",), m), (("D",), max(1, epochs - m))]
    return [(_PHASES_OF[schedule], epochs)]
