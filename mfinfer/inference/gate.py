"""The off-manifold gate: flag observed events that the trained model has not learned to describe.

Before a posterior is sampled from user events, every event gets a score, large where the event is
unlike the simulations the model was trained on:

- a model with a manifold (``model.has_manifold``: M-flow, Mₑ-flow, FOM): the reconstruction error
  ``model.reconstruction_error(x)`` = |project(x) − x| (in the units of x, GeV for H→4ℓ); for a
  θ-dependent manifold (``not model.caches_projection``) the smallest error over K prior draws θ_k;
- a model without one (the AF): the θ-marginal density score −log p̂(x) with
  p̂(x) = (1/K) Σ_k p̂(x|θ_k), θ_k ~ prior (K = ``n_theta`` draws, fixed by the seed). This is the
  density of exactly the distribution the reference events come from (θ ~ prior, x ~ p(x|θ)), so
  its threshold is calibrated without a point estimate θ̂ that would depend on the events judged.

The threshold is an order statistic of the scores of ``n_reference`` held-out simulations: the
``k = ceil(quantile (n + 1))``-th smallest. An event is flagged when its score exceeds it. For an
event drawn like the references the flag probability is then exactly ``(n + 1 − k) / (n + 1)``
(≤ 1 − quantile; 1 % at the 99th percentile and n = 2000 gives 0.95 %), reported as
``expected_rate``. The number flagged among the n observed events is compared with a binomial
(n, expected_rate): the one-sided p-value P(K ≥ k_flagged); below ``alpha`` the gate reports an
excess (:class:`OffManifoldWarning`; ``action="strict"`` raises :class:`OffManifoldError`
instead, ``action="drop"`` removes the flagged events from the posterior).

Example:
    >>> import numpy as np
    >>> from mfinfer import AmbientFlow, get_simulator
    >>> sim = get_simulator("power")
    >>> model = AmbientFlow(3, param_dim=1, num_layers=1, hidden_features=8).eval()
    >>> gate = OffManifoldGate(model, sim.prior, GateSettings(n_reference=200, n_theta=4), rng=0)
    >>> gate = gate.calibrate(sim.simulate(200, rng=1)[1])
    >>> report = gate(sim.simulate(50, rng=2)[1])
    >>> report.flagged.shape, report.expected_rate < 0.01
    ((50,), True)
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from mfinfer.errors import InputError
from mfinfer.models import Flow
from mfinfer.priors import Prior

__all__ = ["GateAction", "GateReport", "GateSettings", "OffManifoldError", "OffManifoldGate",
           "OffManifoldWarning"]

GateAction = Literal["report", "drop", "strict"]
_CHUNK = 4096  # events x θ draws per model call


class OffManifoldWarning(UserWarning):
    """More observed events are flagged than the expected rate allows (binomial p < alpha)."""


class OffManifoldError(InputError):
    """``strict``: the flagged fraction is significantly above the expected rate; nothing sampled."""


@dataclass(frozen=True)
class GateSettings:
    """Gate settings (the config's ``events.gate``).

    Attributes:
        quantile: the threshold is this quantile of the reference scores (expected flag rate about
            1 − quantile).
        n_reference: held-out simulations (θ ~ prior) that set the threshold.
        n_theta: prior draws θ_k of the θ-marginal density score (models without a manifold) and
            of the smallest reconstruction error over θ (θ-dependent manifolds).
        alpha: one-sided binomial significance below which an excess is reported.
    """

    quantile: float = 0.99
    n_reference: int = 2000
    n_theta: int = 32
    alpha: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.quantile < 1:
            raise InputError(f"quantile: expected a number in (0, 1), e.g. 0.99, got {self.quantile}")
        if not 0 < self.alpha < 1:
            raise InputError(f"alpha: expected a number in (0, 1), e.g. 0.01, got {self.alpha}")
        for name in ("n_reference", "n_theta"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        need = math.ceil(self.quantile / (1 - self.quantile))
        if self.n_reference < need:
            raise InputError(f"n_reference: the {self.quantile} quantile needs at least {need} "
                             f"reference events, got {self.n_reference}")


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P(K >= k) for K ~ Binomial(n, p)."""
    from scipy.stats import binom

    return 1.0 if k <= 0 else float(binom.sf(k - 1, n, p))


@dataclass(frozen=True)
class GateReport:
    """The gate's verdict on n observed events.

    Attributes:
        score: ``"reconstruction_error"`` or ``"neg_log_marginal_density"``.
        scores: the events' scores, (n,).
        flagged: whether each event's score exceeds the threshold, (n,) bool.
        threshold, quantile, expected_rate, n_reference, alpha: the calibration (module docstring).
    """

    score: str
    scores: np.ndarray
    flagged: np.ndarray
    threshold: float
    quantile: float
    expected_rate: float
    n_reference: int
    alpha: float

    @property
    def n_flagged(self) -> int:
        return int(self.flagged.sum())

    @property
    def flagged_fraction(self) -> float:
        return self.n_flagged / len(self.flagged)

    @property
    def p_value(self) -> float:
        """One-sided binomial P(K >= n_flagged | n, expected_rate)."""
        return _binomial_tail(self.n_flagged, len(self.flagged), self.expected_rate)

    @property
    def excess(self) -> bool:
        """Significantly more flagged events than expected (p-value below alpha)."""
        return self.flagged_fraction > self.expected_rate and self.p_value < self.alpha

    @property
    def indices(self) -> np.ndarray:
        """Row indices of the flagged events, (n_flagged,) int."""
        return np.flatnonzero(self.flagged)

    def summary(self, action: GateAction = "report") -> dict[str, Any]:
        """JSON-ready record (stored with the posterior): score, threshold, quantile, expected
        rate, counts, flagged fraction, p-value, the flagged rows and those dropped."""
        indices = self.indices.tolist()
        return {"score": self.score, "threshold": self.threshold, "quantile": self.quantile,
                "expected_rate": self.expected_rate, "n_reference": self.n_reference,
                "alpha": self.alpha, "n_events": len(self.flagged), "n_flagged": self.n_flagged,
                "flagged_fraction": self.flagged_fraction, "p_value": self.p_value,
                "excess": self.excess, "action": action, "flagged_indices": indices,
                "dropped_indices": indices if action == "drop" else []}

    def message(self, name: str = "model") -> str:
        """One line: ``AF: 3 of 20 events off-manifold (15.0 %), expected 1.0 % (...)``."""
        return (f"{name}: {self.n_flagged} of {len(self.flagged)} events flagged off-manifold "
                f"({100 * self.flagged_fraction:.1f} %), expected {100 * self.expected_rate:.2f} % "
                f"(score {self.score} > {self.threshold:.4g}, the {self.quantile} quantile of "
                f"{self.n_reference} held-out simulations; binomial p = {self.p_value:.2g})")


class OffManifoldGate:
    """Scores events with a trained model and flags those beyond a calibrated threshold.

    Arguments:
        model: a trained mfinfer model (its capabilities choose the score, see the module
            docstring).
        prior: the prior of θ (draws θ_k for the θ-marginal score).
        settings: :class:`GateSettings`.
        rng: seed or generator of the θ_k draws.
    """

    def __init__(self, model: Flow, prior: Prior, settings: GateSettings | None = None,
                 rng: np.random.Generator | int | None = None) -> None:
        self.model, self.prior = model, prior
        self.settings = settings or GateSettings()
        self.theta = np.asarray(prior.sample(self.settings.n_theta, np.random.default_rng(rng)), float)
        self.threshold: float | None = None
        self.expected_rate: float | None = None

    @property
    def score_name(self) -> str:
        return "reconstruction_error" if self.model.has_manifold else "neg_log_marginal_density"

    def scores(self, x: Any) -> np.ndarray:
        """The score of each event, (n, D) -> (n,) float64; larger: further from what was learned."""
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        if x.ndim != 2 or x.shape[1] != self.model.data_dim or len(x) == 0:
            raise InputError(f"x: expected events of shape (n >= 1, {self.model.data_dim}), got "
                             f"{tuple(x.shape)}")
        model, k = self.model, len(self.theta)
        with torch.no_grad():
            if model.has_manifold and model.caches_projection:
                out = [model.reconstruction_error(c) for c in x.split(_CHUNK)]
                return torch.cat(out).double().numpy()
            theta = torch.as_tensor(self.theta)
            rows = []
            for c in x.split(max(1, _CHUNK // k)):
                xr, tr = c.repeat_interleave(k, 0), theta.repeat(len(c), 1)
                if model.has_manifold:
                    rows.append(model.reconstruction_error(xr, tr).double().reshape(len(c), k).min(1).values)
                else:
                    lp = model.log_prob(xr, tr).double().reshape(len(c), k)
                    rows.append(math.log(k) - torch.logsumexp(lp, 1))
            return torch.cat(rows).numpy()

    def calibrate(self, x_reference: Any) -> OffManifoldGate:
        """Set the threshold from held-out simulations (n, D) (θ ~ prior); returns self."""
        s = np.sort(self.scores(x_reference))
        q, n = self.settings.quantile, len(s)
        k = math.ceil(q * (n + 1))
        if k > n:
            raise InputError(f"x_reference: the {q} quantile needs at least {math.ceil(q / (1 - q))} "
                             f"reference events, got {n}")
        return self.set_threshold(float(s[k - 1]), (n + 1 - k) / (n + 1), n)

    def set_threshold(self, threshold: float, expected_rate: float, n_reference: int) -> OffManifoldGate:
        """Use a stored calibration (from :meth:`calibrate`); returns self."""
        self.threshold, self.expected_rate, self.n_reference = threshold, expected_rate, n_reference
        return self

    def cached(self, path: str | os.PathLike, key: str, reference: Callable[[], Any]) -> OffManifoldGate:
        """Use the calibration stored in the JSON file ``path`` if its ``key`` matches, else
        calibrate on ``reference()`` (held-out simulations, made only then) and store it
        atomically; returns self."""
        from mfinfer.caching import json_key
        from mfinfer.files import atomic_write_json, read_json

        if json_key(Path(path), "key") == key:
            stored = read_json(Path(path))
            return self.set_threshold(stored["threshold"], stored["expected_rate"], stored["n_reference"])
        self.calibrate(reference())
        atomic_write_json({"key": key, "score": self.score_name, "threshold": self.threshold,
                           "expected_rate": self.expected_rate, "n_reference": self.n_reference,
                           "settings": dataclasses.asdict(self.settings)}, Path(path))
        return self

    def __call__(self, x: Any) -> GateReport:
        """Score and flag observed events (n, D)."""
        if self.threshold is None or self.expected_rate is None:
            raise InputError("gate: not calibrated; call calibrate(x_reference) with held-out "
                             "simulations first")
        s = self.scores(x)
        st = self.settings
        return GateReport(self.score_name, s, ~(s <= self.threshold), self.threshold, st.quantile,
                          self.expected_rate, self.n_reference, st.alpha)
