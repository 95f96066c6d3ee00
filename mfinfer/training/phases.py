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

Score augmentation (SCANDAL; Brehmer et al., arXiv:1805.12244, used for M-flows in the paper's LHC
experiment): given the simulator's joint scores t_i = ∇θ log p(x_i, z_i|θ_i) and ``score_weight``
w_s > 0, a phase with a density adds w_s ‖∇θ log p̂(x_i|θ_i) − t_i‖² to each event's −log p̂. The
score of the model is taken by autograd w.r.t. the raw θ (``create_graph`` while training, so the
term trains the weights). Which density: the model's own for ``nll``, ``pie`` and ``S``; the inner
flow's log p̂(u|θ) at the projected u = encode(x) for the D phase (M-flow, Mₑ-flow, FOM). For a
θ-independent manifold that *is* the model's score, since the ½ log det JᵀJ term does not depend
on θ; with ``conditional_manifold`` the D phase matches ∂/∂θ at fixed u only. The M phase has no
density and no score term. Since E[t | x] = ∇θ log p(x|θ), the minimiser of the score term is the
true score, so it adds information without biasing the NLL's optimum.

Event weights: every loss is a mean of per-event terms ℓ_i (−log p plus the score term, the
reconstruction MSE, or their sum). Given ``weights`` (B,) it is ``mean(w_i ℓ_i)`` instead, the
trainer having divided the weights by their mean over the data set (see
``mfinfer.training.train``), so that a pass over the data gives the weighted mean loss
Σ w_i ℓ_i / Σ w_i; without weights the plain mean, unchanged.
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

Density = Callable[[Flow, Tensor, Tensor | None], Tensor]


@dataclass(frozen=True)
class Phase:
    """One training phase: which parameters it updates and the loss it minimises.

    Attributes:
        name: ``nll``, ``pie``, ``M``, ``D`` or ``S``.
        group: ``"all"``, ``"manifold"`` or ``"density"``: the model's parameter group it trains.
        density: ``density(model, x (B, D), theta (B, p) | None) -> (B,)``, the log density whose
            negative (plus the score term) the phase minimises; None for the M phase.
        mse: the loss includes ``mse_weight`` times the reconstruction MSE.
        needs_manifold: the phase needs an injective flow (encode/decode).
    """

    name: str
    group: Literal["all", "manifold", "density"]
    density: Density | None
    mse: bool = False
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

    def loss(self, model: Flow, x: Tensor, theta: Tensor | None, mse_weight: float,
             weights: Tensor | None = None, score: Tensor | None = None,
             score_weight: float = 0.0) -> Tensor:
        """The phase's loss on a batch: a scalar.

        Args:
            model: the model being trained.
            x: events, (B, D).
            theta: parameters, (B, p), or None (unconditional).
            mse_weight: weight of the reconstruction MSE (M and S phases).
            weights: normalised event weights, (B,); the loss is then the weighted mean.
            score: joint scores t, (B, p); used when ``score_weight > 0`` and the phase has a density.
            score_weight: w_s of the score term (module docstring).
        """
        total = x.new_zeros(())
        if self.density is not None:
            total = total + _mean(self.density_terms(model, x, theta, score, score_weight), weights)
        if self.mse:
            total = total + mse_weight * _mse(model, x, theta, weights)
        return total

    def density_terms(self, model: Flow, x: Tensor, theta: Tensor | None, score: Tensor | None = None,
                      score_weight: float = 0.0) -> Tensor:
        """Per-event −log p̂(x|θ) + w_s ‖∇θ log p̂(x|θ) − t‖², (B,). Under ``torch.no_grad`` (the
        validation loss) the score is still computed, without a graph through it."""
        if self.density is None:
            raise ConfigError(f"phase {self.name}: has no density")
        if theta is None or score is None or score_weight == 0:
            return -self.density(model, x, theta)
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            th = theta.detach().requires_grad_(True)
            log_p = self.density(model, x, th)
            (grad,) = torch.autograd.grad(log_p.sum(), th, create_graph=create_graph)
        return -log_p + score_weight * ((grad - score) ** 2).sum(-1)


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


def _log_p(m: Flow, x: Tensor, t: Tensor | None) -> Tensor:
    return m.log_prob(x, t)


def _log_p_pie(m: Flow, x: Tensor, t: Tensor | None) -> Tensor:
    return m.log_prob(x, t, mode="pie")


def _log_p_inner(m: Flow, x: Tensor, t: Tensor | None) -> Tensor:
    """The inner flow's log p(u|θ) at u = encode(x), the chart held fixed (the D phase)."""
    with torch.no_grad():
        u = m.encode(x, t)
    return m.inner_log_prob(u, t)


PHASES: dict[str, Phase] = {
    "nll": Phase("nll", "all", _log_p),
    "pie": Phase("pie", "all", _log_p_pie, needs_manifold=True),
    "M": Phase("M", "manifold", None, mse=True, needs_manifold=True),
    "D": Phase("D", "density", _log_p_inner, needs_manifold=True),
    "S": Phase("S", "all", _log_p, mse=True, needs_manifold=True),
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
