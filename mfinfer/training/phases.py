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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from mfinfer.errors import ConfigError
from mfinfer.models import Flow

__all__ = ["PHASES", "SCHEDULES", "Phase", "Schedule", "segments"]

Schedule = Literal["nll", "pie", "sequential", "alternating", "simultaneous", "fom"]
SCHEDULES: tuple[str, ...] = ("nll", "pie", "sequential", "alternating", "simultaneous", "fom")

Loss = Callable[[Flow, Tensor, "Tensor | None", float], Tensor]


@dataclass(frozen=True)
class Phase:
    """One training phase: which parameters it updates and the loss it minimises.

    Attributes:
        name: ``nll``, ``pie``, ``M``, ``D`` or ``S``.
        group: ``"all"``, ``"manifold"`` or ``"density"``: the model's parameter group it trains.
        loss: ``loss(model, x (B, D), theta (B, p) | None, mse_weight) -> scalar``.
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


def _d_loss(m: Flow, x: Tensor, t: Tensor | None, w: float) -> Tensor:
    with torch.no_grad():
        u = m.encode(x, t)
    return -m.inner_log_prob(u, t).mean()


PHASES: dict[str, Phase] = {
    "nll": Phase("nll", "all", lambda m, x, t, w: -m.log_prob(x, t).mean()),
    "pie": Phase("pie", "all", lambda m, x, t, w: -m.log_prob(x, t, mode="pie").mean(), True),
    "M": Phase("M", "manifold", lambda m, x, t, w: w * m.reconstruction_loss(x, t), True),
    "D": Phase("D", "density", _d_loss, True),
    "S": Phase("S", "all", lambda m, x, t, w: -m.log_prob(x, t).mean() + w * m.reconstruction_loss(x, t),
               True),
}


def segments(schedule: Schedule, epochs: int) -> list[tuple[tuple[str, ...], int]]:
    """The (phases, epochs) segments of a schedule."""
    if schedule == "sequential":
        m = max(1, epochs // 2)
        return [(("M",), m), (("D",), max(1, epochs - m))]
    table = {"nll": ("nll",), "pie": ("pie",), "alternating": ("M", "D"), "simultaneous": ("S",),
             "fom": ("D",)}
    if schedule not in table:
        raise ConfigError(f"schedule: must be one of {SCHEDULES}, got {schedule!r}")
    return [(table[schedule], epochs)]
