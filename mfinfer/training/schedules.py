"""Training schedules of the paper (arXiv:2003.13913, Sec. 3) as phases and their losses.

A schedule is a list of segments ``(phases, epochs)``; in each epoch of a segment every phase makes
one pass over the data with its own optimizer:

- ``nll``: plain negative log-likelihood (AF; PIE with ``mode="pie"``).
- ``sequential``: M phase (outer f and encoder, loss = w_mse · MSE(x, project(x))) for the first half
  of the epochs, then D phase (inner flow only, NLL of u = encode(x)).
- ``alternating``: each epoch one M pass and one D pass.
- ``simultaneous`` (S): all parameters, manifold NLL including the JᵀJ term, plus w_mse · MSE.
- ``fom``: D phase only (the chart is fixed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from mfinfer.models import AmbientFlow, FOMFlow, InjectiveFlow, ManifoldFlow

__all__ = ["Schedule", "SCHEDULES", "segments", "phase_parameters", "phase_loss", "default_schedule"]

Schedule = Literal["nll", "pie", "sequential", "alternating", "simultaneous", "fom"]
SCHEDULES: tuple[str, ...] = ("nll", "pie", "sequential", "alternating", "simultaneous", "fom")


def default_schedule(model: nn.Module) -> Schedule:
    """``nll`` for the AF, ``fom`` for FOM, ``sequential`` for M-flows."""
    if isinstance(model, AmbientFlow):
        return "nll"
    if isinstance(model, FOMFlow):
        return "fom"
    return "sequential"


def segments(schedule: Schedule, epochs: int) -> list[tuple[tuple[str, ...], int]]:
    """The (phases, epochs) segments of a schedule."""
    if schedule == "sequential":
        m = max(1, epochs // 2)
        return [(("M",), m), (("D",), max(1, epochs - m))]
    table = {"nll": ("nll",), "pie": ("pie",), "alternating": ("M", "D"), "simultaneous": ("S",), "fom": ("D",)}
    if schedule not in table:
        raise ValueError(f"schedule: must be one of {SCHEDULES}, got {schedule!r}")
    return [(table[schedule], epochs)]


def phase_parameters(model: nn.Module, phase: str) -> list[nn.Parameter]:
    """Parameters a phase trains: M -> outer f and encoder; D -> inner flow; others -> all."""
    if phase in ("M", "D") and not isinstance(model, InjectiveFlow):
        raise ValueError(f"phase {phase}: needs an M-flow or FOM model, got {type(model).__name__}")
    if phase == "M":
        if not isinstance(model, ManifoldFlow):
            raise ValueError("phase M: FOM has a fixed chart; use schedule='fom'")
        modules = [model.outer] + ([model.encoder] if model.encoder is not None else [])
        return [p for m in modules for p in m.parameters()]
    if phase == "D":
        return list(model.inner.parameters())
    return list(model.parameters())


def _mse(model: InjectiveFlow, x: Tensor, theta: Tensor | None) -> Tensor:
    """Mean squared reconstruction error, per column in units of the input standardisation."""
    scale = model.standardize.scale if hasattr(model, "standardize") else 1.0
    return (((model.project(x, theta) - x) / scale) ** 2).sum(-1).mean()


def phase_loss(phase: str, mse_weight: float) -> Callable[[nn.Module, Tensor, Tensor | None], Tensor]:
    """The loss of a phase: ``loss(model, x (B, D), theta (B, p) | None) -> scalar``."""
    if phase == "nll":
        return lambda m, x, t: -m.log_prob(x, t).mean()
    if phase == "pie":
        return lambda m, x, t: -m.log_prob(x, t, mode="pie").mean()
    if phase == "M":
        return lambda m, x, t: mse_weight * _mse(m, x, t)
    if phase == "D":
        def d_loss(m: InjectiveFlow, x: Tensor, t: Tensor | None) -> Tensor:
            with torch.no_grad():
                u = m.encode(x, t)
            return -m.inner_log_prob(u, t).mean()
        return d_loss
    if phase == "S":
        return lambda m, x, t: -m.log_prob(x, t).mean() + mse_weight * _mse(m, x, t)
    raise ValueError(f"phase: unknown {phase!r}")
