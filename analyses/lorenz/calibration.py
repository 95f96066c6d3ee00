"""Stages 5 and 6: every estimator's posterior on observations θ ~ prior (coverage of the HPD
regions and marginal central intervals), and the ablation, the θ-dependent M-flow's likelihood
plus a Gaussian off-manifold term, at the true points and on the same observations."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from analyses.lorenz.estimators import (
    OffManifoldLikelihood,
    Sampled,
    calibration_summary,
    sample_summary,
    true_ranks,
)
from analyses.lorenz.extras import posterior_item
from analyses.lorenz.settings import (
    CALIBRATION,
    cached,
    conditional_model,
    estimator_names,
    estimator_weights,
    extras_dir,
    load_nle,
    open_run,
    path_name,
    save_npz,
    stage_rng,
    timer,
)
from mfinfer.caching import array_digest, content_key, npz_key
from mfinfer.config import RunConfig
from mfinfer.files import atomic_write_json

ABLATION = "M-flow (conditional manifold) + off-manifold Gaussian"


# ------------------------------------------------------------------ stage 5: calibration
def _cal_events(variant: str) -> int:
    return CALIBRATION["n_events"]["points" if variant == "points" else "snippets"]


def stage_calibrate(cfg: RunConfig, variant: str, n_obs: int | None = None) -> dict:
    """Posteriors of every estimator for ``n_obs`` observations θ_k ~ prior; HPD ranks and
    marginal quantile positions of θ_k, one JSON file per observation and estimator."""
    run = open_run(cfg)
    sim, seed = run.simulator, cfg.seeds[0]
    n_obs = n_obs or CALIBRATION["n_obs"]
    n_events = _cal_events(variant)
    directory = extras_dir(cfg) / "calibration"
    okey = content_key("cal-observations", cfg.simulator, n_obs, n_events, seed)
    obs_path = directory / "observations.npz"
    if npz_key(obs_path) != okey:
        rng = stage_rng(seed, "calibrate", "observations")
        theta = sim.prior.sample(n_obs, rng)
        x = sim.sample(np.repeat(theta, n_events, axis=0), rng).reshape(n_obs, n_events, -1)
        save_npz(obs_path, key=np.array(okey), theta=theta, x=x)
    with np.load(obs_path) as f:
        theta_all, x_all = f["theta"], f["x"]
    nle = load_nle(cfg)
    results: dict[str, list[dict]] = {name: [] for name in estimator_names(cfg)}
    for j in range(n_obs):
        for name in estimator_names(cfg):
            path = directory / path_name(name) / f"obs_{j:03d}"
            info = posterior_item(cfg, run, name, x_all[j], theta_all[j],
                                  CALIBRATION["num_samples"], f"cal_{j}", path, nle)
            results[name].append(info)
    summary: dict[str, Any] = {"n_obs": n_obs, "n_events": n_events,
                               "num_samples": CALIBRATION["num_samples"], "estimators": {}}
    for name, infos in results.items():
        summary["estimators"][name] = {
            **calibration_summary(infos, sim.prior.bounds, CALIBRATION["levels"]),
            "cpu_s": float(np.mean([i["cpu_s"] for i in infos])),
            "unconverged": sum(bool(i["note"]) for i in infos),
        }
    atomic_write_json(summary, directory / "summary.json")
    return summary


# ------------------------------------------------------------------ stage 6: ablation
def stage_ablation(cfg: RunConfig, variant: str) -> dict:
    """The θ-dependent M-flow with :class:`OffManifoldLikelihood`: posteriors at the true points
    and on the calibration observations (same sampler and seeds' rule)."""
    from mfinfer.inference import sample_posterior
    from mfinfer.inference.potential import LogPosterior

    run = open_run(cfg)
    mcfg = conditional_model(cfg)
    if mcfg is None:
        return {}
    model, seed, prior = run.load(mcfg), cfg.seeds[0], run.simulator.prior
    theta, x = run.simulator.simulate(2000, stage_rng(seed, "extras", "ablation"))
    err = model.reconstruction_error(x, theta).numpy()
    s2 = float(np.mean(err**2) / (model.data_dim - model.manifold_dim))
    weights = estimator_weights(cfg, run, mcfg.name)
    directory = extras_dir(cfg) / "ablation"

    def item(xs: np.ndarray, theta_true: np.ndarray, n: int, label: str) -> dict:
        key = content_key("ablation", weights, s2, array_digest(xs), n, cfg.mcmc.method, label,
                          seed)
        path = directory / f"{label}.json"
        done = cached(path, key)
        if done is not None:
            return done
        like = OffManifoldLikelihood(model, xs, s2)
        with timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sample_posterior(like, prior, n, method=cfg.mcmc.method, progress=False,
                                   rng=stage_rng(seed, "extras", label, ABLATION))
        s = Sampled(res.samples, res.log_prob, LogPosterior(like, prior))
        info = {"key": key, "n_events": len(xs), **sample_summary(s.samples, theta_true),
                **true_ranks(s, theta_true), "wall_s": t["wall_s"], "cpu_s": t["cpu_s"]}
        atomic_write_json(info, path)
        return info

    out: dict[str, Any] = {"estimator": ABLATION, "s": float(np.sqrt(s2)), "points": [],
                           "calibration": []}
    for k in range(len(cfg.observed.theta)):
        theta_true, xk = run.observed(k)
        out["points"].append(item(xk, theta_true, cfg.mcmc.num_samples, f"point_{k}"))
    with np.load(extras_dir(cfg) / "calibration" / "observations.npz") as f:
        cal_theta, cal_x = f["theta"], f["x"]
    infos = [item(cal_x[j], cal_theta[j], CALIBRATION["num_samples"], f"cal_{j}")
             for j in range(len(cal_theta))]
    out["calibration"] = {**calibration_summary(infos, prior.bounds, CALIBRATION["levels"]),
                          "n_obs": len(infos)}
    atomic_write_json(out, directory / "summary.json")
    return out
