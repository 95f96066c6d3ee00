"""The metrics the pipeline evaluates, by name: what each needs, how it aggregates, its title.

A metric is one :class:`Metric` in :data:`METRICS`. Its ``function`` takes one *inputs* object,
the one that provides what the metric ``needs``:

- ``"posterior_vs_truth"``: :class:`PosteriorInputs` with true-posterior samples (``reference``);
- ``"posterior_vs_theta"``: :class:`PosteriorInputs`: posterior samples and the true θ*;
- ``"model"``: :class:`ModelInputs`: a trained model (or the simulator's exact likelihood, the
  "truth") and held-out simulations (θ_i, x_i), θ_i ~ prior;
- ``"model_on_observed"``: :class:`ObservedInputs`: a trained model and the observed events.

``metrics.json`` holds a ``"model"`` metric once per model and seed (its ``models`` section) and
every other metric once per posterior and true point (its ``points``). A report takes the
``within_seed`` aggregate over the true points, then the ``over_seeds`` aggregate over seeds.

Adding a metric: one function (in :mod:`mfinfer.evaluation.metrics`) and one line in ``METRICS``;
the pipeline, the config's options, summaries and tables follow.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

from mfinfer.errors import ConfigError, MissingKeyError
from mfinfer.evaluation import metrics as m

__all__ = ["INPUT_OPTIONS", "MEASURES", "METRICS", "NEEDS", "Metric", "ModelInputs",
           "ObservedInputs", "PosteriorInputs", "compute", "metric", "option_defaults",
           "resolve_options", "select"]

Needs = Literal["posterior_vs_truth", "posterior_vs_theta", "model", "model_on_observed"]
Aggregate = Literal["mean", "median"]

#: what each kind of metric is computed from.
NEEDS: dict[str, str] = {
    "posterior_vs_truth": "posterior samples and true-posterior samples at θ*",
    "posterior_vs_theta": "posterior samples and the true θ*",
    "model": "a trained model (or the simulator's exact likelihood) and held-out simulations",
    "model_on_observed": "a trained model and the observed events at θ*",
}

#: base measures of densities, as column suffixes. "model": the measure of the model that gives
#: the density: its learned manifold ("manifold", also the simulator's exact likelihood, which every
#: simulator declares on its ``manifold_dim``-dimensional manifold) or R^D ("ambient": the AF).
MEASURES: dict[str, str] = {
    "manifold": "on the manifold",
    "ambient": "in R^D (AF)",
    "parameters": "in θ space",
    "unknown": "(base measure unknown)",
}

_AGGREGATES: dict[str, Callable[[Any], Any]] = {"mean": np.mean, "median": np.median}

#: options of the inputs themselves (config ``metrics:``), with defaults.
INPUT_OPTIONS: dict[str, Any] = {"n_model_samples": 2000}  # held-out simulations per seed

#: the allowed values of the string options.
OPTION_CHOICES: dict[str, tuple[str, ...]] = {"c2st_classifier": m.C2ST_CLASSIFIERS}


@dataclass(frozen=True)
class Metric:
    """One metric of ``metrics.json``.

    Attributes:
        name: its key in ``metrics.json``.
        function: inputs -> value (a float, or a list per parameter); None: does not apply.
        needs: which inputs (see :data:`NEEDS`).
        title: the column title in tables.
        better: which way is better, appended to the title (``"↓"``, ``"↑"``, ...).
        within_seed: aggregate over the true points of one seed (None: one value per seed, or
            not aggregated).
        over_seeds: aggregate over seeds (None: not aggregated, e.g. per-parameter vectors).
        base_measure: for densities, what they are densities with respect to: ``"parameters"``
            (θ space: comparable across posteriors) or ``"model"`` (x space, the model's own
            measure: comparable only between models with the same measure, see :data:`MEASURES`).
        truth: also evaluated for the truth (exact likelihood / exact posterior).
        summary: in ``summary.json`` and the run's table.
        x_units: a distance in the units of the observables x (tables may append a unit).
        digits: decimals in tables.
        options: its config options (``metrics:``) with defaults; an option named like the
            metric switches it on or off.
    """

    name: str
    function: Callable[[Any], Any]
    needs: Needs
    title: str
    better: str = ""
    within_seed: Aggregate | None = "mean"
    over_seeds: Aggregate | None = "median"
    base_measure: Literal["parameters", "model"] | None = None
    truth: bool = False
    summary: bool = True
    x_units: bool = False
    digits: int = 4
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.needs not in NEEDS:
            raise ValueError(f"{self.name}: needs must be one of {tuple(NEEDS)}, "
                             f"got {self.needs!r}")
        if "|" in self.title + self.better:
            raise ValueError(f"{self.name}: a title is a Markdown table cell; it cannot hold '|'")
        if self.per_point and self.over_seeds and not self.within_seed:
            raise ValueError(f"{self.name}: a per-point metric aggregated over seeds needs "
                             "within_seed")

    @property
    def per_point(self) -> bool:
        """Computed per posterior and true point (not once per model and seed)."""
        return self.needs != "model"

    def enabled(self, options: Mapping[str, Any]) -> bool:
        """False when the config switches it off (``metrics: {<name>: false}``)."""
        if self.name not in self.options:
            return True
        return bool(options.get(self.name, self.options[self.name]))

    def aggregate_points(self, values: Any) -> float:
        """The ``within_seed`` aggregate of one seed's values over its true points."""
        return float(_AGGREGATES[self.within_seed or "mean"](np.asarray(values, dtype=float)))

    def aggregate_seeds(self, values: Any) -> float:
        """The ``over_seeds`` aggregate of per-seed values."""
        if self.over_seeds is None:
            raise ValueError(f"{self.name}: not aggregated over seeds")
        return float(_AGGREGATES[self.over_seeds](np.asarray(values, dtype=float)))

    def label(self, *, measure: str | None = None, unit: str | None = None) -> str:
        """Column title, e.g. ``"test log p̂ on the manifold ↑"`` or ``"... [GeV] ↓"``."""
        text = self.title
        if measure is not None:
            text += " " + MEASURES.get(measure, MEASURES["unknown"])
        if unit and self.x_units:
            text += f" [{unit}]"
        return f"{text} {self.better}".rstrip()


# ------------------------------------------------------------------ inputs
@dataclass
class PosteriorInputs:
    """Posterior samples (n, p) at one true point θ* (p,); ``reference``: true-posterior samples
    (m, p), or None (no truth in the run, or this is the truth)."""

    samples: np.ndarray
    theta_true: np.ndarray
    reference: np.ndarray | None
    seed: int
    options: Mapping[str, Any]
    is_truth: bool = False

    @property
    def provides(self) -> set[str]:
        vs_truth = {"posterior_vs_truth"} if self.reference is not None else set()
        return {"posterior_vs_theta"} | vs_truth

    @cached_property
    def bias_and_width(self) -> dict[str, np.ndarray]:
        return m.bias_and_width(self.samples, self.theta_true)


@dataclass
class ModelInputs:
    """A trained model (None: the simulator's exact likelihood) and held-out simulations θ (n, p),
    x (n, D). The model's samples at θ, projection errors and log-likelihoods are computed once."""

    model: Any
    theta: np.ndarray
    x: np.ndarray
    simulator: Any
    seed: int
    options: Mapping[str, Any]

    provides = frozenset({"model"})

    @property
    def is_truth(self) -> bool:
        return self.model is None

    @cached_property
    def samples(self) -> np.ndarray:
        """One model sample x ~ p̂(x|θ_i) per held-out θ_i, (n, D)."""
        import torch

        ref = next(self.model.parameters())
        t = torch.as_tensor(self.theta, dtype=ref.dtype, device=ref.device)
        with torch.no_grad():
            gen = torch.Generator(device=ref.device).manual_seed(self.seed)
            return self.model.sample(len(self.theta), t, generator=gen).cpu().numpy()

    @cached_property
    def projection_errors(self) -> np.ndarray:
        """|project(x_i) − x_i|, (n,) (zeros for a model without a manifold); a θ-dependent
        manifold projects each x_i at its own θ_i."""
        from mfinfer.inference import projection_errors

        return projection_errors(self.model, self.x, self.theta)

    @cached_property
    def log_likelihood(self) -> np.ndarray:
        """log p̂(x_i|θ_i) per held-out event, (n,): the model's, or the simulator's exact one."""
        if self.model is None:
            return np.asarray(self.simulator.log_likelihood(self.x, self.theta), dtype=float)
        from mfinfer.inference import ModelLikelihood

        return ModelLikelihood(self.model, self.x, cache=False).per_event(self.theta)

    @cached_property
    def ood_threshold(self) -> float:
        """The 99th percentile of the held-out projection errors: beyond it an event is off the
        learned manifold."""
        return float(np.quantile(self.projection_errors, 0.99))


@dataclass
class ObservedInputs:
    """The observed events x (n, D) at one true point θ* (p,), with the model's held-out inputs.
    θ* is needed only by a θ-dependent manifold (else its metrics here do not apply)."""

    held_out: ModelInputs
    x: np.ndarray
    theta: np.ndarray | None = None

    provides = frozenset({"model_on_observed"})
    is_truth = False

    @property
    def options(self) -> Mapping[str, Any]:
        return self.held_out.options

    @cached_property
    def projection_errors(self) -> np.ndarray:
        from mfinfer.inference import projection_errors

        model = self.held_out.model
        if self.theta is None and getattr(model, "conditional_manifold", False):
            raise NotImplementedError("the projection onto a θ-dependent manifold needs θ*")
        return projection_errors(model, self.x, self.theta)


# ------------------------------------------------------------------ the registry
def _c2st(p: PosteriorInputs) -> float:
    assert p.reference is not None  # posterior_vs_truth metrics run only when a truth exists
    return m.c2st(p.samples, p.reference, seed=p.seed, classifier=p.options["c2st_classifier"])


def _bias_and_width_part(key: str) -> Callable[[PosteriorInputs], list[float]]:
    return lambda p: p.bias_and_width[key].tolist()


def _log_p_true(p: PosteriorInputs) -> float:
    return m.log_prob_at_truth(p.samples, p.theta_true, p.options["kde_bandwidth"])


_METRICS = [
    Metric("manifold_distance", lambda i: m.manifold_distance(i.simulator, i.samples), "model",
           "manifold distance of samples", "↓", within_seed=None, x_units=True),
    Metric("reconstruction_error", lambda i: float(i.projection_errors.mean()), "model",
           "reconstruction error, test events", "↓", within_seed=None, x_units=True),
    Metric("test_log_likelihood", lambda i: float(np.mean(i.log_likelihood)), "model",
           "test log p̂", "↑", within_seed=None, base_measure="model", truth=True),
    Metric("ood_threshold", lambda i: i.ood_threshold, "model",
           "off-manifold threshold (99th percentile of test reconstruction errors)",
           within_seed=None, over_seeds=None, summary=False, x_units=True),
    Metric("mmd2", lambda p: m.mmd2(p.samples, p.reference), "posterior_vs_truth", "MMD²", "↓"),
    Metric("c2st", _c2st, "posterior_vs_truth", "C2ST", "↓ (0.5 ideal)",
           options={"c2st": True, "c2st_classifier": "mlp"}),
    Metric("log_p_true", _log_p_true, "posterior_vs_theta", "log p̂(θ*)", "↑",
           base_measure="parameters", truth=True, options={"kde_bandwidth": 0.15}),
    *(Metric(key, _bias_and_width_part(key), "posterior_vs_theta", title,
             within_seed=None, over_seeds=None, truth=True, summary=False)
      for key, title in (("bias", "bias (mean − θ*)"), ("std", "std"),
                         ("pull", "pull: abs(bias) / std"))),
    Metric("observed_reconstruction_error", lambda o: float(o.projection_errors.mean()),
           "model_on_observed", "reconstruction error, observed events", summary=False,
           x_units=True),
    Metric("observed_off_manifold",
           lambda o: int((o.projection_errors > o.held_out.ood_threshold).sum()),
           "model_on_observed", "observed events off the learned manifold", summary=False,
           digits=1),
]

#: every metric by name, in table order.
METRICS: dict[str, Metric] = {mt.name: mt for mt in _METRICS}


def metric(name: str) -> Metric:
    """The registered metric ``name``.

    Raises:
        MissingKeyError: naming the registered metrics, nearest first.
    """
    if name not in METRICS:
        near = difflib.get_close_matches(str(name), list(METRICS), n=len(METRICS), cutoff=0.0)
        raise MissingKeyError(f"metric: no metric named {name!r}; registered (nearest first): "
                              f"{near}")
    return METRICS[name]


def select(*needs: str, density: bool | None = None, summary: bool | None = None) -> list[Metric]:
    """The metrics aggregated over seeds, in table order, filtered by what they need, whether they
    are densities and whether they are in the summary."""
    return [mt for mt in METRICS.values() if mt.over_seeds is not None
            and (not needs or mt.needs in needs)
            and (density is None or (mt.base_measure is not None) == density)
            and (summary is None or mt.summary == summary)]


def option_defaults() -> dict[str, Any]:
    """Every option of the config's ``metrics:`` with its default."""
    out: dict[str, Any] = {}
    for mt in METRICS.values():
        out.update(mt.options)
    return out | INPUT_OPTIONS


def resolve_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """The config's ``metrics:`` over the defaults.

    Raises:
        ConfigError: for an unknown option, listing the allowed ones.
    """
    defaults = option_defaults()
    unknown = set(given) - set(defaults)
    if unknown:
        raise ConfigError(f"metrics: unknown fields {sorted(unknown)}; allowed: "
                          f"{', '.join(defaults)}")
    for key, choices in OPTION_CHOICES.items():
        if key in given and given[key] not in choices:
            raise ConfigError(f"metrics.{key}: must be one of {choices}, got {given[key]!r}")
    return defaults | dict(given)


def compute(inputs: PosteriorInputs | ModelInputs | ObservedInputs) -> dict[str, Any]:
    """Every enabled metric the inputs provide for, by name. A metric is left out when it does not
    apply (returns None, or the simulator raises ``NotImplementedError`` for what it needs)."""
    out: dict[str, Any] = {}
    for mt in METRICS.values():
        if mt.needs not in inputs.provides or (inputs.is_truth and not mt.truth) \
                or not mt.enabled(inputs.options):
            continue
        try:
            value = mt.function(inputs)
        except NotImplementedError:
            continue
        if value is not None:
            out[mt.name] = value
    return out
