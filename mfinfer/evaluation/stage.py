"""The evaluate stage of a run: every registered metric (:mod:`mfinfer.evaluation.registry`) of
every model and posterior, ``metrics.json`` keyed by its inputs, and a corner plot per true point."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mfinfer.caching import array_digest, content_key, json_key
from mfinfer.errors import ConfigError
from mfinfer.evaluation.registry import ModelInputs, ObservedInputs, PosteriorInputs, compute, resolve_options
from mfinfer.evaluation.report import METRICS_FILE, TRUTH, record_time
from mfinfer.files import atomic_write_json, read_json
from mfinfer.inference import Posterior
from mfinfer.jobs import posterior_jobs
from mfinfer.plotting import corner_plot

if TYPE_CHECKING:
    from mfinfer.pipeline import Run

__all__ = ["evaluate_run"]


def evaluate_run(run: Run, force: bool = False) -> dict:
    """The metrics of ``run`` (one seed), written to ``metrics.json`` with the corner plots; the
    stored ``metrics.json`` when its ``inputs_key`` is current (and not ``force``).

    Raises:
        ConfigError: no simulator (a run from ``simulations:`` files), or a posterior missing or
            sampled with other inputs than the config now gives (run the ``infer`` stage first).
    """
    if run.simulator is None:
        raise ConfigError("evaluate: needs a simulator (held-out simulations, true points); a run "
                          "from simulations: files alone trains and infers with --events")
    opts = resolve_options(run.config.metrics)
    jobs = posterior_jobs(run)
    for job in jobs:
        if job.stored_key() != job.key:
            raise ConfigError(f"{job.path}: missing, or sampled with other inputs (events, model "
                              "weights, posterior settings or seed) than the config now gives; run the "
                              "'infer' stage first")
    key = content_key("evaluate", {
        "metrics": opts, "seed": run.seed, "simulator": run.config.simulator,
        "posteriors": [[job.label, job.name, job.key] for job in jobs],
        "theta_true": [array_digest(run.observed(k)[0])
                       for k in range(len(run.config.observed.theta))]})
    path = run.dir / METRICS_FILE
    if not force and json_key(path, "inputs_key") == key:
        return read_json(path)
    t0 = time.perf_counter()
    test_theta, test_x = run.simulator.simulate(opts["n_model_samples"], run.rng("evaluate"))
    held_out = {m.name: ModelInputs(run.load(m), test_theta, test_x, run.simulator, run.seed,
                                    opts) for m in run.config.models}
    per_model: dict[str, Any] = {name: compute(inputs) for name, inputs in held_out.items()}
    truth = compute(ModelInputs(None, test_theta, test_x, run.simulator, run.seed, opts))
    if truth:
        per_model[TRUTH] = truth
    out: dict[str, Any] = {"seed": run.seed, "inputs_key": key, "models": per_model, "points": []}
    names = ([TRUTH] if run.config.truth else []) + list(held_out)
    for k in range(len(run.config.observed.theta)):
        theta_true, x = run.observed(k)
        samples = {name: Posterior.load(run.posterior_path(k, name)).samples for name in names}
        row: dict[str, Any] = {"theta_true": theta_true.tolist(), "models": {}}
        for name, s in samples.items():
            is_truth = name == TRUTH
            reference = samples[TRUTH] if run.config.truth and not is_truth else None
            r = compute(PosteriorInputs(s, theta_true, reference, run.seed, opts, is_truth))
            if name in held_out:
                r |= compute(ObservedInputs(held_out[name], x))
            row["models"][name] = r
        out["points"].append(row)
        corner_plot(samples, run.dir / "plots" / f"corner_point_{k}.png", truth=theta_true,
                    labels=getattr(run.simulator, "param_names", None), n_events=len(x))
    atomic_write_json(out, path)
    record_time(run.dir, time.perf_counter() - t0, "evaluate")
    run.log.info("wrote metrics.json")
    return out
