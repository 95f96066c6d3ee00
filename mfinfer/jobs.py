"""The posteriors a run samples, one job per (true point or events, model) with its content key,
and the off-manifold gate that user events pass first.

A posterior's content key (its JSON ``metadata.key``) holds the events (float64 bytes), the weights
(``model.json``'s SHA-256 of ``weights.pt``; the simulator config for the truth), ``mode``,
``posterior`` (the spec), the seed and the (point, model) labels of its sampler seed, plus the
gate's record for user events. Gate thresholds are stored per model in
``models/<model>/gate.json``, keyed by the model's weights, the settings and the seed
(:mod:`mfinfer.inference.gate`).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from mfinfer.caching import array_digest, content_key, pair_key
from mfinfer.config import ModelConfig
from mfinfer.evaluation.report import TRUTH
from mfinfer.inference.gate import (
    GateAction,
    GateSettings,
    OffManifoldError,
    OffManifoldGate,
    OffManifoldWarning,
)
from mfinfer.sources import sample_digest

if TYPE_CHECKING:
    from mfinfer.pipeline import Run

__all__ = ["PosteriorJob", "gate_events", "posterior_jobs"]


class PosteriorJob(NamedTuple):
    """One posterior: true point ``k`` (or an events tag), model ``name``, and its content key."""

    k: int | str
    label: str
    theta_true: np.ndarray | None
    x: np.ndarray
    name: str
    model: ModelConfig | None
    path: Path
    key: str
    gate: dict | None = None  # the off-manifold gate's record (user events only)

    def stored_key(self) -> str | None:
        """The content key of the posterior stored at ``path`` (None: none or damaged)."""
        return pair_key(self.path.with_suffix(".json"), self.path.name, "metadata", "key")


def posterior_jobs(run: Run, x_obs: np.ndarray | None = None, tag: str | None = None,
                   gates: dict[str, tuple[np.ndarray, dict]] | None = None) -> list[PosteriorJob]:
    """Every posterior ``run`` samples, at every true point (or for ``x_obs``, under ``tag``), with
    its content key; ``gates`` gives each model's events and gate record (:func:`gate_events`)."""
    config = run.config
    sha = sample_digest(run._data())
    posterior = config.posterior.to_dict()
    sources: list[tuple[str, ModelConfig | None, dict]] = []
    if config.truth and x_obs is None:
        sources.append((TRUTH, None, {"simulator": config.simulator}))
    sources += [(m.name, m, {"weights_sha256": run.weights_sha256(m, sha), "mode": m.mode})
                for m in config.models]
    points: list[tuple[int | str, str, np.ndarray | None, np.ndarray]] = (
        [(tag or "events", "events", None, np.asarray(x_obs))] if x_obs is not None else
        [(k, f"point_{k}", *run.observed(k)) for k in range(len(config.observed.theta))])
    jobs = []
    for k, label, theta_true, x in points:
        for name, mcfg, source in sources:
            xs, record = gates[name] if gates and name in gates else (x, None)
            gate = {} if record is None else {"gate": record}
            key = content_key("infer", {"events": array_digest(xs), "model": source, "posterior": posterior,
                                        "seed": run.seed, "labels": [label, name], **gate})
            jobs.append(PosteriorJob(k, label, theta_true, xs, name, mcfg, run.posterior_path(k, name),
                                     key, record))
    return jobs


def gate_events(run: Run, x_obs: np.ndarray,
                action: GateAction = "report") -> dict[str, tuple[np.ndarray, dict]]:
    """The off-manifold gate of every model of ``run`` on user events x_obs (n, D).

    Returns ``{model name: (events to sample from, gate record)}``: all events, or with
    ``action="drop"`` those not flagged. A flagged fraction significantly above the expected
    rate is logged and warned about (:class:`OffManifoldWarning`); with ``action="strict"`` it
    raises :class:`OffManifoldError` before anything is sampled.
    """
    if action not in ("report", "drop", "strict"):
        raise ValueError(f"action: must be one of ('report', 'drop', 'strict'), got {action!r}")
    config = run.config
    settings = GateSettings(**(config.events.gate if config.events else {}))
    sha = sample_digest(run._data())
    reference: dict[str, np.ndarray] = {}  # simulated (or drawn from the files) once, when needed

    def held_out() -> np.ndarray:
        if not reference:
            reference["x"] = run.source.reference(settings.n_reference, run.rng("gate", "reference"),
                                                  run._data())
        return reference["x"]

    out, excess = {}, []
    for mcfg in config.models:
        key = content_key("gate", {"weights_sha256": run.weights_sha256(mcfg, sha), "seed": run.seed,
                                   "settings": dataclasses.asdict(settings),
                                   "simulator": config.simulator})
        gate = OffManifoldGate(run.load(mcfg), run.source.prior, settings, rng=run.rng("gate", "theta"))
        report = gate.cached(run.model_dir(mcfg) / "gate.json", key, held_out)(x_obs)
        run.log.info("gate: %s", report.message(mcfg.name))
        if report.excess:
            excess.append(report.message(mcfg.name))
        x = x_obs[~report.flagged] if action == "drop" else x_obs
        if len(x) == 0:
            raise OffManifoldError(f"{report.message(mcfg.name)}; every event is flagged, so none is "
                                   "left to sample from: check the events, the events: settings "
                                   "(cuts, momentum convention) and the model")
        out[mcfg.name] = (x, report.summary(action))
    if excess and action == "strict":
        raise OffManifoldError(f"--strict: refusing to sample: {'; '.join(excess)}; check the events "
                               "and the events: settings, or drop the flagged events with "
                               "--on-manifold-only")
    for line in excess:
        run.log.warning("gate: %s: significantly above the expected rate", line)
        warnings.warn(f"{line}: significantly above the expected rate; the posterior may be "
                      "biased (drop them with --on-manifold-only / action='drop')",
                      OffManifoldWarning, stacklevel=3)
    return out
