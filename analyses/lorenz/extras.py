"""Stages 3 and 4: sbi's NLE trained on each variant's training simulations, then the extras at
the true points (NLE posteriors, consistency posteriors from a tenth of the events, manifold
distance of model samples, Lyapunov exponents of posterior samples, the off-manifold scan), and
the cached posterior item that the calibration reuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from analyses.lorenz.estimators import (
    NLELikelihood,
    model_posterior,
    nle_posterior,
    nn_distance,
    sample_summary,
    true_ranks,
)
from analyses.lorenz.settings import (
    LYAPUNOV,
    NLE,
    SBI_MCMC_POINTS,
    UNCONDITIONAL,
    cached,
    conditional_model,
    estimator_names,
    estimator_weights,
    extras_dir,
    load_nle,
    model_config,
    open_run,
    path_name,
    posterior_samples,
    save_npz,
    stage_rng,
    stage_torch_seed,
    timer,
)
from mfinfer.caching import array_digest, content_key, npz_key
from mfinfer.config import ModelConfig, RunConfig
from mfinfer.files import atomic_write_json
from mfinfer.interop.nle import save_nle, train_nle


# ------------------------------------------------------------------ stage 3: sbi NLE
def stage_sbi(cfg: RunConfig) -> dict:
    """Train sbi's NLE (its defaults) on the pipeline's training simulations of this variant."""
    run = open_run(cfg)
    data = run._data()  # refuses data simulated with other settings
    key = content_key("nle", array_digest(data["x"], data["theta"]), cfg.seeds[0])
    directory = extras_dir(cfg) / "nle"
    done = cached(directory / "train.json", key)
    if done is not None and (directory / "weights.pt").is_file():
        return done
    with timer() as t:
        estimator, nle_info = train_nle(data["theta"], data["x"], run.simulator.prior,
                                        seed=stage_torch_seed(cfg.seeds[0], "sbi", "train"))
    save_nle(estimator, nle_info, directory)
    info = {"key": key, "train_wall_s": t["wall_s"], "train_cpu_s": t["cpu_s"],
            "epochs": nle_info["epochs"], "best_validation_loss": nle_info["best_validation_loss"]}
    atomic_write_json(info, directory / "train.json")
    return info


# ------------------------------------------------------------------ stage 4: extras
def posterior_item(cfg: RunConfig, run: Any, name: str, x: np.ndarray, theta_true: np.ndarray,
                   n: int, label: str, path: Path, nle: Any = None, sbi_mcmc: bool = False) -> dict:
    """One estimator's posterior for events x, cached at ``path`` (.json + .npz): the config's
    sampler on the estimator's likelihood, or for the NLE with ``sbi_mcmc`` sbi's own default
    MCMC."""
    mcfg = model_config(cfg, name)
    weights = estimator_weights(cfg, run, name)
    sampler = "sbi-default-mcmc" if sbi_mcmc else cfg.mcmc.method
    key = content_key("posterior", name, weights, array_digest(x), n, sampler, label,
                      cfg.seeds[0])
    done = cached(path.with_suffix(".json"), key)
    if done is not None and path.with_suffix(".npz").is_file():
        return done
    prior = run.simulator.prior
    with timer() as t:
        if sbi_mcmc:
            s = nle_posterior(nle, prior, x, n,
                              stage_torch_seed(cfg.seeds[0], "extras", label, name))
        else:
            model = run.load(mcfg) if mcfg is not None else NLELikelihood(nle, x)
            s = model_posterior(model, x, prior, n, cfg.mcmc.method,
                                stage_rng(cfg.seeds[0], "extras", label, name))
    info = {"key": key, "n_events": len(x), "sampler": sampler,
            **sample_summary(s.samples, theta_true), **true_ranks(s, theta_true),
            "wall_s": t["wall_s"], "cpu_s": t["cpu_s"], "note": s.note}
    save_npz(path.with_suffix(".npz"), samples=s.samples)
    atomic_write_json(info, path.with_suffix(".json"))
    return info


def _model_samples(cfg: RunConfig, run: Any, name: str, theta: np.ndarray, n: int,
                   nle: Any) -> np.ndarray:
    """n samples x ~ p̂(x|θ*) of an estimator, (n, D)."""
    gen_seed = stage_torch_seed(cfg.seeds[0], "extras", "samples", name)
    if name == NLE:
        torch.manual_seed(gen_seed)
        cond = torch.as_tensor(theta[None], dtype=torch.float32)
        with torch.no_grad():
            return nle.sample((n,), condition=cond)[:, 0].numpy().astype(float)
    model = run.load(model_config(cfg, name))
    gen = torch.Generator().manual_seed(gen_seed)
    return model.sample(n, torch.as_tensor(theta), generator=gen).numpy().astype(float)


def stage_extras(cfg: RunConfig, variant: str) -> dict:
    """NLE posteriors at the true points, consistency posteriors from n/10 events, manifold
    distance of samples at θ*, reconstruction error of the observed events."""
    run = open_run(cfg)
    nle = load_nle(cfg)
    sim = run.simulator
    seed = cfg.seeds[0]
    n = cfg.mcmc.num_samples
    out: dict[str, Any] = {"points": []}
    for k in range(len(cfg.observed.theta)):
        theta_true, x = run.observed(k)
        few = max(1, len(x) // 10)
        point: dict[str, Any] = {"theta_true": theta_true.tolist(), "n_events": len(x),
                                 "few_events": few, "estimators": {}}
        reference = None
        if sim.observation == "points":  # the attractor at θ*: simulator points (k-d tree)
            ref_path = extras_dir(cfg) / f"reference_{k}.npz"
            rkey = content_key("reference", theta_true, UNCONDITIONAL["n_reference"], seed, k)
            if npz_key(ref_path) != rkey:
                ref = sim.sample(np.tile(theta_true, (UNCONDITIONAL["n_reference"], 1)),
                                 stage_rng(seed, "extras", "reference", k))
                fresh = sim.sample(np.tile(theta_true, (2000, 1)),
                                   stage_rng(seed, "extras", "fresh", k))
                save_npz(ref_path, key=np.array(rkey), reference=ref, fresh=fresh)
            with np.load(ref_path) as f:
                reference = f["reference"]
                point["distance_floor"] = float(nn_distance(f["fresh"], reference).mean())
        else:  # the residual of the dynamics of fresh simulator snippets (0 without noise)
            fresh = sim.sample(np.tile(theta_true, (2000, 1)),
                               stage_rng(seed, "extras", "fresh", k))
            point["distance_floor"] = float(np.mean(sim.distance_to_manifold(
                fresh, np.tile(theta_true, (len(fresh), 1)))))
        for name in estimator_names(cfg):
            entry: dict[str, Any] = {}
            base = extras_dir(cfg) / "posteriors" / f"point_{k}"
            if name == NLE:  # SMC on the NLE's likelihood; sbi's own MCMC at SBI_MCMC_POINTS
                entry["full"] = posterior_item(cfg, run, name, x, theta_true, n, f"point_{k}",
                                               base / path_name(name), nle)
                if k in SBI_MCMC_POINTS:
                    entry["sbi_mcmc"] = posterior_item(
                        cfg, run, name, x, theta_true, n, f"point_{k}",
                        base / f"{path_name(name)}_sbi_mcmc", nle, sbi_mcmc=True)
            entry["few"] = posterior_item(cfg, run, name, x[:few], theta_true, n,
                                          f"point_{k}_few", base / f"{path_name(name)}_few", nle)
            dist_path = base / f"{path_name(name)}_distance.json"
            weights = estimator_weights(cfg, run, name)
            dkey = content_key("distance", name, weights, theta_true, seed, "v3")
            dist = cached(dist_path, dkey)
            if dist is None:
                xs = _model_samples(cfg, run, name, theta_true, 2000, nle)
                if reference is not None:
                    d = nn_distance(xs, reference)
                else:  # samples far off the attractor can overflow the integration: left out
                    with np.errstate(all="ignore"):
                        d = sim.distance_to_manifold(xs, np.tile(theta_true, (len(xs), 1)))
                ok = np.isfinite(d)
                dist = {"key": dkey, "manifold_distance": float(d[ok].mean()),
                        "manifold_distance_median": float(np.median(d[ok])),
                        "nonfinite": int((~ok).sum())}
                mcfg = model_config(cfg, name)
                if mcfg is not None:
                    model = run.load(mcfg)
                    err = model.reconstruction_error(x, np.tile(theta_true, (len(x), 1)))
                    dist["observed_reconstruction_error"] = float(err.mean())
                atomic_write_json(dist, dist_path)
            entry |= {k2: v for k2, v in dist.items() if k2 != "key"}
            point["estimators"][name] = entry
        out["points"].append(point)
    out["lyapunov"] = _lyapunov(cfg, run, variant)
    cond = conditional_model(cfg)
    if cond is not None:
        out["scan"] = {"model": cond.name, "rows": _offmanifold_scan(run, cond)}
    atomic_write_json(out, extras_dir(cfg) / "extras.json")
    return out


def _offmanifold_scan(run: Any, mcfg: ModelConfig, steps: int = 5) -> list[dict]:
    """At the first true point, one parameter at a time moved over ±0.8 of the prior's
    half-width: the θ-dependent manifold's mean distance |x − project_θ(x)| of the observed
    events, and its log-likelihood Σ_i log p̂(x_i|θ) (which does not see that distance)."""
    from mfinfer.inference import ModelLikelihood

    theta_true, x = run.observed(0)
    model = run.load(mcfg)
    like = ModelLikelihood(model, x)
    low, high = run.simulator.prior.bounds
    rows = []
    for j in range(len(theta_true)):
        for frac in np.linspace(-0.8, 0.8, steps):
            t = theta_true.copy()
            t[j] += frac * (high[j] - low[j]) / 2
            err = model.reconstruction_error(x, np.tile(t, (len(x), 1))).numpy()
            rows.append({"param": j, "delta": float(t[j] - theta_true[j]),
                         "distance": float(err.mean()), "log_like": float(like(t[None])[0])})
    return rows


def _lyapunov(cfg: RunConfig, run: Any, variant: str) -> dict:
    """Largest Lyapunov exponent of ``LYAPUNOV["per_posterior"]`` samples of each posterior at
    the true points (all in one vectorized integration)."""
    from simulators.lorenz import largest_lyapunov

    rng = stage_rng(cfg.seeds[0], "extras", "lyapunov", variant)
    rows, labels, inside = [], [], {}
    for k in range(len(cfg.observed.theta)):
        for name in estimator_names(cfg):
            s = posterior_samples(cfg, run, k, name)
            inside.setdefault(name, []).append(run.simulator.prior.contains(s))
            rows.append(s[rng.choice(len(s), LYAPUNOV["per_posterior"], replace=False)])
            labels += [name] * LYAPUNOV["per_posterior"]
    theta = np.concatenate(rows)
    key = content_key("lyapunov", array_digest(theta), LYAPUNOV)
    path = extras_dir(cfg) / "lyapunov.json"
    done = cached(path, key)
    if done is None:
        lam = largest_lyapunov(theta, t=LYAPUNOV["t"], rng=rng)
        done = {"key": key, "lambda": lam.tolist(), "labels": labels}
        atomic_write_json(done, path)
    lam, labels = np.asarray(done["lambda"]), done["labels"]
    return {name: {"min": float(lam[[lb == name for lb in labels]].min()),
                   "fraction_chaotic": float(np.mean(lam[[lb == name for lb in labels]] > 0)),
                   "fraction_in_box": float(np.mean(np.concatenate(inside[name])))}
            for name in dict.fromkeys(labels)}

