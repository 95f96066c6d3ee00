"""Coverage of the flagship's intervals (``ladder.py --coverage N``): HPD regions at 68 % and 95 %.

For N observations j (θ_j ~ prior, the config's number of events at θ_j, each from its own seeded
generator, so a larger N keeps the first ones), the posterior of each estimator in :data:`COVERED`
(trained on seed 0's simulations under the budget) and of the exact likelihood (the control) is
sampled by the grid sampler; the HPD rank of θ_j is the number of samples with a lower log
posterior (:mod:`mfinfer.calibration.ranks`), and the coverage at level c is the fraction of
observations whose θ_j lies in the HPD region of credibility c. The ranks are kept in
``--out/<budget folder>/coverage.json`` after every observation, each estimator's keyed by its
trained weights, so an interrupted run resumes and a newly trained estimator adds its ranks to the
others' (``{"num_samples", "n_events", "estimators": {name: {"key", "ranks": {j: rank}}}}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from analyses.higgs4l.budgets import Budget
from analyses.higgs4l.estimators import likelihood, load
from mfinfer.caching import content_key, seed_sequence
from mfinfer.calibration.ranks import binomial_band, coverage
from mfinfer.config import RunConfig
from mfinfer.files import atomic_write_json, read_json
from mfinfer.inference import SimulatorLikelihood
from mfinfer.inference.mcmc import sample_posterior
from mfinfer.pipeline import Run
from simulators.higgs4l import Higgs4l

COVERED = ("M-flow", "M-flow + score", "M-flow + score, 3 members", "NLE")
LEVELS = (0.68, 0.95)


def hpd_rank(like: Any, prior: Any, samples: np.ndarray, theta: np.ndarray) -> int:
    """#{s : log p(θ_s|x) < log p(θ|x)} for posterior samples (N, p) and the true θ (p,)."""
    def log_post(t: np.ndarray) -> np.ndarray:
        return np.asarray(like(t), dtype=float) + np.asarray(prior.log_prob(t), dtype=float)

    return int(np.sum(log_post(samples) < log_post(theta[None, :])[0]))


def run_coverage(cfg: RunConfig, budget: Budget, fits: dict[str, dict], out: Path, n_obs: int,
                 num_samples: int) -> dict:
    """The HPD ranks of N observations for each covered estimator and the truth, and their
    coverage at ``LEVELS`` with the binomial 95 % band of a calibrated posterior."""
    torch.set_num_threads(cfg.threads)
    seed, sim = cfg.seeds[0], Higgs4l()
    run = Run(cfg, seed, progress=False)
    path = out / budget.folder / "coverage.json"
    # the truth's ranks depend on the observations only: their seed
    keys = {"truth": content_key("ladder-coverage-exact", seed), **{n: f["key"] for n, f in fits.items()}}
    stored = stored_ranks(path, keys, num_samples, cfg.observed.n_events)
    ranks = {n: dict(stored[n]["ranks"]) if stored.get(n, {}).get("key") == k else {}
             for n, k in keys.items()}
    with np.load(run.dir / "data" / "train.npz") as f:
        theta_train, x_train = f["theta"], f["x"]
    models = {n: load(run, n, budget, theta_train, x_train, sim) for n in fits}
    for j in range(n_obs):
        todo = [n for n in keys if str(j) not in ranks[n]]
        if not todo:
            continue
        rng = np.random.default_rng(seed_sequence(seed, 7, "coverage", j))
        theta = sim.prior.sample(1, rng)[0]
        x = sim.sample(np.repeat(theta[None, :], cfg.observed.n_events, axis=0), rng)
        for n in todo:
            like = SimulatorLikelihood(sim, x) if n == "truth" else likelihood(n, models[n], sim, x)
            samples = np.asarray(sample_posterior(like, sim.prior, num_samples, method="grid",
                                                  rng=j, progress=False).samples)
            ranks[n][str(j)] = hpd_rank(like, sim.prior, samples, theta)
        stored.update({n: {"key": keys[n], "ranks": ranks[n]} for n in keys})
        atomic_write_json({"num_samples": num_samples, "n_events": cfg.observed.n_events,
                           "estimators": stored}, path)
    low, high = binomial_band(n_obs, LEVELS)
    return {"n_observations": n_obs, "n_events": cfg.observed.n_events, "levels": list(LEVELS),
            "band_95": [low.tolist(), high.tolist()], "seed": seed,
            "coverage": {n: coverage(np.array([ranks[n][str(j)] for j in range(n_obs)]), num_samples,
                                     LEVELS).tolist() for n in keys}}


def stored_ranks(path: Path, keys: dict[str, str], num_samples: int, n_events: int) -> dict[str, dict]:
    """The ``{name: {"key", "ranks": {j: rank}}}`` kept in ``path`` when drawn with the same numbers of
    samples and events (else empty), whatever the estimators; the earlier format (one key for the
    estimators together, ranks by observation) is read as each estimator's ranks under ``keys`` when
    its key was theirs."""
    if not path.is_file():
        return {}
    kept = read_json(path)
    if "estimators" not in kept:  # {"key", "num_samples", "ranks": {j: {name: rank}}}
        names = [n for n in next(iter(kept["ranks"].values()), {}) if n != "truth"]
        if kept["key"] != content_key("ladder-coverage", {n: keys.get(n) for n in names}, num_samples,
                                      n_events):
            return {}
        kept = {"num_samples": kept["num_samples"], "n_events": n_events,
                "estimators": {n: {"key": keys[n], "ranks": {j: r[n] for j, r in kept["ranks"].items()}}
                               for n in ["truth", *names]}}
    if (kept["num_samples"], kept["n_events"]) != (num_samples, n_events):
        return {}
    return dict(kept["estimators"])


def coverage_table(cov: dict) -> str:
    """The coverage as a markdown table under a line naming the observations and the band."""
    levels = cov["levels"]
    band = "; ".join(f"{lv:.0%}: {lo:.3f}–{hi:.3f}"
                     for lv, lo, hi in zip(levels, *cov["band_95"], strict=True))
    lines = [f"HPD coverage over {cov['n_observations']} observations of {cov['n_events']} events "
             f"(θ ~ prior; models of seed {cov['seed']}); 95 % band of a calibrated posterior: {band}.",
             "", "| posterior | " + " | ".join(f"{lv:.0%}" for lv in levels) + " |",
             "|---|" + "---|" * len(levels)]
    for n, values in sorted(cov["coverage"].items(), key=lambda item: item[0] != "truth"):
        label = "truth (exact likelihood)" if n == "truth" else n
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return "\n".join(lines) + "\n"
