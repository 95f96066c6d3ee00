"""The Lorenz analysis' results: :func:`collect` gathers everything from the run directories,
:func:`results_table` turns it into ``results.md``'s Markdown (the notebook reuses both)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from analyses.lorenz.estimators import sample_summary
from analyses.lorenz.settings import (
    CALIBRATION,
    NLE,
    PARAMS,
    extras_dir,
    open_run,
    posterior_samples,
    run_dir,
)
from mfinfer.config import RunConfig
from mfinfer.files import read_json


def collect(cfgs: dict[str, RunConfig], uncond_root: Path) -> dict:
    """Everything the table and the notebook need, from the run directories."""
    from mfinfer.evaluation.report import read_timings, stage_seconds

    out: dict[str, Any] = {"variants": {}}
    path = uncond_root / "summary.json"
    if path.is_file():
        out["unconditional"] = read_json(path)
    for variant, cfg in cfgs.items():
        directory = run_dir(cfg)
        if not (directory / "metrics.json").is_file():
            continue
        metrics = read_json(directory / "metrics.json")
        entry: dict[str, Any] = {"name": cfg.name, "simulator": cfg.simulator,
                                 "n_events": cfg.observed.n_events, "n_train": cfg.n_train,
                                 "metrics": metrics,
                                 "timings": stage_seconds(read_timings(directory))}
        run = open_run(cfg)
        entry["pipeline_posteriors"] = {}
        for k in range(len(cfg.observed.theta)):
            theta_true = np.asarray(cfg.observed.theta[k])
            entry["pipeline_posteriors"][k] = {
                m.name: sample_summary(posterior_samples(cfg, run, k, m.name), theta_true)
                for m in cfg.models}
        for part in ("extras.json", "nle/train.json", "calibration/summary.json",
                     "ablation/summary.json"):
            p = extras_dir(cfg) / part
            if p.is_file():
                entry[part.split("/")[0].removesuffix(".json")] = read_json(p)
        out["variants"][variant] = entry
    return out


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _vec(v: Any, digits: int = 2) -> str:
    return "(" + ", ".join(_fmt(a, digits) for a in v) + ")" if v is not None else "–"


def _marginal_by_level(c: dict) -> tuple[list[float], list[float]]:
    """A calibration summary's marginal central coverage (σ, ρ, β) at 68 % and at 95 %."""
    m = c["marginal_coverage"]
    return [m[j][0] for j in range(3)], [m[j][1] for j in range(3)]


def target_check(results: dict) -> tuple[bool, list[str]]:
    """The target on points: the θ-dependent M-flow is calibrated (68 % and 95 % HPD coverage
    within ±5 %) and narrower than every other calibrated estimator, the θ-independent M-flow
    and the AF among them or miscalibrated."""
    cal = results["variants"].get("points", {}).get("calibration")
    if not cal:
        return False, ["- no calibration results for points yet."]
    levels = CALIBRATION["levels"]
    lines, calibrated, width = [], {}, {}
    for name, e in cal["estimators"].items():
        calibrated[name] = all(abs(c - a) <= 0.05 for c, a in zip(e["hpd_coverage"], levels,
                                                                   strict=True))
        width[name] = float(np.exp(np.mean(np.log(e["relative_width"]))))
        lines.append(f"- {name}: HPD coverage {_vec(e['hpd_coverage'])} at {_vec(levels)} → "
                     f"{'calibrated' if calibrated[name] else 'not calibrated'} (±5 %); mean "
                     f"posterior width {width[name]:.4f} of the prior box (geometric mean over "
                     "σ, ρ, β)")
    cond = next((n for n in cal["estimators"] if "cond" in n), None)
    if cond is None:
        return False, lines
    others = [n for n in cal["estimators"] if n != cond]
    met = calibrated[cond] and all(not calibrated[n] or width[cond] < width[n] for n in others)
    return met, lines


def results_table(results: dict, command: str | None = None) -> str:
    """The Markdown results from :func:`collect`'s dictionary."""
    lines = ["# Lorenz-63: inference on (σ, ρ, β) with θ-dependent manifolds", ""]
    un = results.get("unconditional")
    if un:
        s = un["settings"]
        lines += ["## The paper's unconditional experiment (θ = (10, 28, 8/3))", "",
                  (f"{s['n_train']} attractor points for training; manifold distance of "
                   f"{s['n_test']} model samples = mean distance to the nearest of "
                   f"{s['n_reference']} simulator points (state units); the same for "
                   f"{s['n_test']} fresh simulator points, the floor of this measure, is "
                   f"**{un['floor']:.3f}**. Reconstruction error: mean |x − project(x)| of "
                   f"{s['n_test']} test points. Figure: `unconditional_manifold.png`."), "",
                  "| model | manifold distance of samples ↓ | reconstruction error ↓ | "
                  "distance of the decoded u-grid (where p(u) is above its 1st percentile on test "
                  "points) | train wall [s] |", "|---|---|---|---|---|"]
        for name, m in un["models"].items():
            lines.append(f"| {name} | {_fmt(m['manifold_distance'], 3)} | "
                         f"{_fmt(m.get('reconstruction_error'), 3)} | "
                         f"{_fmt(m.get('grid_distance'), 3)} | {m['train_wall_s']:.0f} |")
        lines.append("")
    for variant, v in results["variants"].items():
        lines += _variant_lines(variant, v)
    met, check = target_check(results)
    lines += ["## Target (points)", "",
              ("The θ-dependent M-flow gives the narrowest posteriors that are still calibrated "
               f"and beats the θ-independent M-flow and the AF: **{'met' if met else 'not met'}**."),
              "", *check, ""]
    lines += ["Reproduce: `python -m analyses.lorenz.run --quiet` (every stage; stages and items "
              "already done are kept, see the module docstring)."]
    if command:
        lines += ["", f"These tables were last written by `{command}`."]
    return "\n".join(lines) + "\n"


def _variant_lines(variant: str, v: dict) -> list[str]:
    sim = v["simulator"].get("options", {})
    ex = v.get("extras", {})
    lines = [f"## {variant}: {json.dumps(sim)}, {v['n_events']} events per observation", "",
             f"{v['n_train']} training simulations at θ ~ prior (the same for every estimator). "
             "Posteriors: the config's sampler on each estimator's likelihood (for the NLE also "
             "sbi's default MCMC at the first point); 'std from n/10 events' uses the first "
             "tenth of the same events. Manifold distance of 2000 samples x ~ p̂(x|θ*): "
             + ("mean distance to the nearest of 50 000 simulator points at θ* (floor: the same "
                "for 2000 fresh simulator points)." if sim.get("observation") == "points" else
                "mean residual of the dynamics (`Lorenz.distance_to_manifold(x, θ*)`; floor: "
                "fresh simulator snippets, 0 without noise)."), ""]
    names = [*v["pipeline_posteriors"][next(iter(v["pipeline_posteriors"]))], NLE]
    for k, point in v["pipeline_posteriors"].items():
        e = ex["points"][int(k)] if ex else {}
        theta = e.get("theta_true") or v["metrics"]["points"][int(k)]["theta_true"]
        few = e.get("few_events", "n/10")
        lines += [f"### θ* = {_vec(theta, 3)}", "",
                  f"| estimator | mean | std | bias / std | std from {few} events | "
                  "width ratio few / all | manifold distance of samples at θ* ↓ |",
                  "|---|---|---|---|---|---|---|"]
        for name in names:
            est = (e.get("estimators") or {}).get(name, {})
            full = point.get(name) or est.get("full")
            if full is None:
                continue
            pull = np.asarray(full["bias"]) / np.asarray(full["std"])
            fs = (est.get("few") or {}).get("std")
            ratio = np.asarray(fs) / np.asarray(full["std"]) if fs else None
            bad = est.get("nonfinite")
            note = f" ({bad} of 2000 samples diverge in the integration, left out)" if bad else ""
            lines.append(f"| {name} | {_vec(full['mean'], 3)} | {_vec(full['std'], 3)} | "
                         f"{_vec(pull)} | {_vec(fs, 3)} | {_vec(ratio, 1)} | "
                         f"{_fmt(est.get('manifold_distance'), 3)}{note} |")
            mc = est.get("sbi_mcmc")
            if mc:  # the same NLE likelihood sampled by sbi's default MCMC
                lines.append(f"| {name}, sbi's default MCMC ({mc['wall_s']:.0f} s wall, "
                             f"{mc['cpu_s']:.0f} s CPU; SMC above: {full['wall_s']:.0f} s, "
                             f"{full['cpu_s']:.0f} s) | {_vec(mc['mean'], 3)} | "
                             f"{_vec(mc['std'], 3)} | "
                             f"{_vec(np.asarray(mc['bias']) / np.asarray(mc['std']))} | | | |")
        if "distance_floor" in e:
            lines.append(f"| simulator (floor) | | | | | | {e['distance_floor']:.3f} |")
        lines.append("")
    cal = v.get("calibration")
    if cal:
        lines += [f"### Calibration: {cal['n_obs']} observations θ ~ prior, {cal['n_events']} "
                  f"events each, {cal['num_samples']} samples per posterior", "",
                  "| estimator | HPD coverage 68 % / 95 % | marginal central coverage 68 % "
                  "(σ, ρ, β) | 95 % (σ, ρ, β) | mean std / prior width (σ, ρ, β) | "
                  "posterior wall [s] | unconverged |", "|---|---|---|---|---|---|---|"]
        for name, c in cal["estimators"].items():
            m68, m95 = _marginal_by_level(c)
            lines.append(f"| {name} | {_vec(c['hpd_coverage'])} | {_vec(m68)} | {_vec(m95)} | "
                         f"{_vec(c['relative_width'], 3)} | {c['wall_s']:.1f} | "
                         f"{c['unconverged']} |")
        lines.append("")
    ab = v.get("ablation")
    if ab and ab.get("points"):
        c = ab["calibration"]
        lines += [f"### Ablation: {ab['estimator']} (s = {ab['s']:.3f})", "",
                  "The θ-dependent M-flow's likelihood times a Gaussian of the observed events' "
                  "distance from the learned manifold at θ (width s per normal direction, fitted "
                  "to 2000 fresh simulations at their own θ): a noisy-manifold model, no longer "
                  "the M-flow's density. Same sampler, events and calibration observations.", "",
                  "| θ* | mean | std | bias / std |", "|---|---|---|---|"]
        for r, point in zip(ab["points"], v["metrics"]["points"], strict=False):
            pull = np.asarray(r["bias"]) / np.asarray(r["std"])
            lines.append(f"| {_vec(point['theta_true'], 3)} | {_vec(r['mean'], 3)} | "
                         f"{_vec(r['std'], 3)} | {_vec(pull)} |")
        m68, m95 = _marginal_by_level(c)
        lines += ["", f"Calibration ({c['n_obs']} observations): HPD coverage "
                  f"{_vec(c['hpd_coverage'])} at 68 % / 95 %; marginal central coverage "
                  f"{_vec(m68)} / {_vec(m95)}; mean std / prior width "
                  f"{_vec(c['relative_width'], 3)}; {c['wall_s']:.1f} s per posterior.", ""]
    scan = ex.get("scan")
    if scan:
        lines += [f"### What the θ-dependent manifold's likelihood sees ({scan['model']}, "
                  "first true point)", "",
                  "One parameter moved at a time: mean distance of the observed events from "
                  "the learned manifold at θ, |x − project_θ(x)|, and the log-likelihood "
                  "Σ_i log p̂(x_i|θ) (the density at the projected points, which ignores that "
                  "distance).", "", "| parameter | Δ | mean distance to the manifold at θ | "
                  "Σ log p̂ |", "|---|---|---|---|"]
        lines += [f"| {PARAMS[r['param']]} | {r['delta']:+.2f} | {r['distance']:.3f} | "
                  f"{r['log_like']:.1f} |" for r in scan["rows"]]
        lines.append("")
    lines += ["### Cost and chaos", "",
              "| estimator | train wall [s] | posterior wall [s] (all events, mean over θ*) | "
              "test log p̂ | reconstruction error, test | posterior mass in the prior box | "
              "Lyapunov λ_max of posterior samples (min) |", "|---|---|---|---|---|---|---|"]
    for name in names:
        extra = ""
        if name == NLE:
            tr = (v.get("nle") or {}).get("train_wall_s")
            post = [p["estimators"][name]["full"]["wall_s"] for p in ex.get("points", [])]
            sbi = [p["estimators"][name]["sbi_mcmc"]["wall_s"] for p in ex.get("points", [])
                   if "sbi_mcmc" in p["estimators"][name]]
            extra = f" (sbi's default MCMC: {np.mean(sbi):.0f})" if sbi else ""
            m: dict[str, Any] = {}
        else:
            tr = v["timings"].get(f"train {name}")
            post = [v["timings"].get(f"infer {name}")] if v["timings"].get(f"infer {name}") else []
            post = [post[0] / len(v["pipeline_posteriors"])] if post else []
            m = v["metrics"]["models"].get(name, {})
        lam = (ex.get("lyapunov") or {}).get(name, {})
        lines.append(f"| {name} | {_fmt(tr, 0)} | {_fmt(np.mean(post) if post else None, 1)}{extra} | "
                     f"{_fmt(m.get('test_log_likelihood'))} | "
                     f"{_fmt(m.get('reconstruction_error'), 3)} | "
                     f"{_fmt(lam.get('fraction_in_box'), 3)} | {_fmt(lam.get('min'), 2)} |")
    lines.append("")
    return lines

