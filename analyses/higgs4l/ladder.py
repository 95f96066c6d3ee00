"""H→4ℓ flagship comparison and diagnostic ladder: every estimator against the exact posterior, per budget.

For each seed, on the training simulations and observed events of ``analyses/higgs4l/config.yaml``
(the pipeline's, so ``run.py`` sees the same ones), every estimator of
:data:`analyses.higgs4l.estimators.ESTIMATORS` is trained on the same simulations under each
``--budget`` (:mod:`analyses.higgs4l.budgets`: ``wall=SECONDS``, the same wall-clock training time
for every estimator on one machine, or ``converge``, each to its own early stopping, sbi's NLE
uncapped), and its posterior at the three θ* is compared with the exact one (C2ST, 0.5 ideal;
MMD²), all by the adaptive grid sampler with the same options:

- the AF and the M-flow, each with and without the joint score (SCANDAL), an ensemble of three
  M-flows with the score, and sbi's **NLE** with its defaults (MAF): the estimators a user picks;
- the ceiling: the **true-chart flow** (the M-flow's inner flow on the 11 chart coordinates
  z = ``Higgs4l.true_chart(x)``: the best the inner flow can do once the manifold is exact), with
  and without the score; the M-flows' reconstruction error |x − project(x)| on held-out events;
- the 16 lepton four-momentum components (columns 0-15, GeV) as a second representation.

Training checkpoints every epoch and resumes (``runs/higgs4l/seed_S/ladder/<budget folder>/<device>/``,
the budget folder ``wall-SECONDSs`` or ``converge``); posteriors are kept in
``--out/<budget folder>/seed_S.json``, keyed by the trained weights; ``--out/ladder.json`` and
``table.md`` hold every budget run so far (default ``--out``: ``analyses/higgs4l/flagship``).
``--coverage N`` adds the 68 % / 95 % HPD coverage of the M-flow, the M-flow + score, its
3-member ensemble and the NLE (``--covered``: others) over N observations
(:mod:`analyses.higgs4l.coverage`). On 2 cores, two shells with ``--train-only`` and disjoint
``--estimators`` train in parallel; a last call without it computes the posteriors, and
``--trained-only`` reports what is trained so far while they run (:mod:`analyses.higgs4l.compare`
counts head-to-head wins).

    .venv/bin/python -m analyses.higgs4l.ladder --budget wall=1800 converge --coverage 100
    .venv/bin/python -m analyses.higgs4l.ladder --smoke --out /tmp/ladder     # ~1 min
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analyses.higgs4l.budgets import Budget, parse_budget
from analyses.higgs4l.estimators import ESTIMATORS, fit, likelihood, load, represent, trained
from mfinfer.caching import content_key, json_key, seed_sequence
from mfinfer.config import RunConfig, load_config
from mfinfer.evaluation.metrics import c2st, mmd2
from mfinfer.files import atomic_write, atomic_write_json, read_json
from mfinfer.inference import SimulatorLikelihood
from mfinfer.inference.mcmc import sample_posterior
from mfinfer.pipeline import Run
from simulators.higgs4l import Higgs4l

CONFIG = "analyses/higgs4l/config.yaml"
SMOKE = {"n_train": 2000, "observed": {"theta": [[0.0, 0.0], [1.0, 0.0]], "n_events": 5}}
#: the costliest first, so that two shells started on halves of the list finish together
ORDER = ["M-flow + score, 3 members", "M-flow + score", "M-flow", "AF + score", "AF",
         "M-flow, 16 momenta", "AF, 16 momenta", "true chart + score", "true chart (FOM)"]


def posteriors(cfg: RunConfig, seed: int, budget: Budget, fits: dict[str, dict], out: Path,
               num_samples: int, n_test: int) -> dict:
    """Posteriors of the exact likelihood and every estimator at the config's θ*, their C2ST and
    MMD² against the exact one, and the M-flows' reconstruction errors; kept in
    ``out/<budget>/seed_S.json`` and reused while the trained weights are the same."""
    torch.set_num_threads(cfg.threads)
    path = out / budget.folder / f"seed_{seed}.json"
    key = content_key("ladder-posteriors", {n: f["key"] for n, f in fits.items()}, num_samples, n_test,
                      cfg.observed.n_events)
    if json_key(path, "key") == key:
        return read_json(path)
    run, sim = Run(cfg, seed, progress=False), Higgs4l()
    with np.load(run.dir / "data" / "train.npz") as f:
        theta_train, x_train = f["theta"], f["x"]
    models = {n: load(run, n, budget, theta_train, x_train, sim) for n in fits}
    rng = np.random.default_rng(seed_sequence(seed, 6, "held-out"))
    held_out = sim.sample(sim.prior.sample(n_test, rng), rng)
    record: dict = {"key": key, "seed": seed, "budget": budget.key, "fits": fits,
                    "reconstruction_error": {}, "points": []}
    for n, m in models.items():
        if ESTIMATORS[n][0] == "M-flow":  # an ensemble's: the members' mean
            with torch.no_grad():
                err = m.reconstruction_error(torch.as_tensor(represent(sim, held_out, ESTIMATORS[n][1]),
                                                             dtype=torch.float32)).numpy()
            record["reconstruction_error"][n] = {"median": float(np.median(err)),
                                                 "mean": float(np.mean(err))}
    for k in range(len(cfg.observed.theta)):
        with np.load(run.dir / "data" / f"observed_{k}.npz") as f:
            theta_star, x = f["theta"], f["x"]
        likes: dict[str, Any] = {"truth": SimulatorLikelihood(sim, x)}
        likes.update({n: likelihood(n, m, sim, x) for n, m in models.items()})
        point: dict = {"theta": np.asarray(theta_star).tolist(), "posteriors": {}}
        samples = {}
        for n, like in likes.items():
            t0 = time.perf_counter()
            res = sample_posterior(like, sim.prior, num_samples, method="grid", rng=k)
            samples[n] = s = np.asarray(res.samples)
            point["posteriors"][n] = {"mean": s.mean(0).tolist(), "std": s.std(0).tolist(),
                                      "converged": bool(res.converged),
                                      "seconds": round(time.perf_counter() - t0, 1)}
            if n != "truth":
                point["posteriors"][n].update(c2st=float(c2st(s, samples["truth"], classifier="rf")),
                                              mmd2=float(mmd2(s, samples["truth"])))
        record["points"].append(point)
    atomic_write_json(record, path)
    return record


def summarise(records: list[dict], budget: Budget, device: str,
              pending: dict[str, list[int]] | None = None) -> dict:
    """Median, min and max over the seeds it was trained on of every estimator's C2ST at each θ*,
    its training cost and (M-flows) its reconstruction error, under one budget; ``pending``: the
    seeds of each estimator still training (``--trained-only``)."""
    def stats(values: list[float]) -> dict:
        return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values))}

    names = [n for n in ESTIMATORS if any(n in r["fits"] for r in records)]
    out: dict = {"budget": budget.key, "description": budget.describe(), "seconds": budget.seconds,
                 "device": device, "seeds": [r["seed"] for r in records], "estimators": {},
                 "pending": pending or {}}
    for n in names:
        mine = [r for r in records if n in r["fits"]]
        fits = [r["fits"][n] for r in mine]
        entry = {"seeds": [r["seed"] for r in mine],
                 "c2st": [stats([r["points"][k]["posteriors"][n]["c2st"] for r in mine])
                          for k in range(len(records[0]["points"]))],
                 "train_seconds": stats([f["seconds"] for f in fits]),
                 "seconds_per_epoch": stats([f["seconds_per_epoch"] for f in fits]),
                 "epochs": stats([f["epochs"] for f in fits]),
                 "device": sorted({f["device"] for f in fits}),
                 # seeds where a member stopped (wall budget) before its last phase (the M-flow's D)
                 "unfinished_phases": sum(bool(f.get("unfinished_phases")) for f in fits)}
        if n in mine[0]["reconstruction_error"]:
            entry["reconstruction_error"] = stats([r["reconstruction_error"][n]["median"] for r in mine])
        out["estimators"][n] = entry
    out["theta"] = [p["theta"] for p in records[0]["points"]]
    return out


def table(summary: dict) -> str:
    """One budget's summary as a markdown table: median (min–max) over the seeds each estimator was
    trained on, under a line that states the budget (in seconds) and the device, above a line that
    names the estimators still training (``--trained-only``)."""
    def cell(s: dict, fmt: str = ".3f") -> str:
        return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"

    thetas = " | ".join(f"C2ST θ*=({t[0]:g}, {t[1]:g})" for t in summary["theta"])
    lines = [f"**Budget `{summary['budget']}`**: {summary['description']}; device {summary['device']} "
             f"(sbi's NLE: cpu); seeds {summary['seeds']}.", "",
             f"| estimator | seeds | {thetas} | reconstruction error, median [GeV] | train wall [s] | "
             "epochs, all members | s / epoch | device |",
             "|---|" + "---|" * (len(summary["theta"]) + 6)]
    for n in [n for n in ESTIMATORS if n in summary["estimators"]]:  # JSON sorts the keys
        e = summary["estimators"][n]
        recon = cell(e["reconstruction_error"], ".1f") if "reconstruction_error" in e else (
            "0 (exact)" if ESTIMATORS[n][0] == "chart" else "–")
        cost = (f"{cell(e['train_seconds'], '.0f')} | {cell(e['epochs'], '.0f')} | "
                f"{cell(e['seconds_per_epoch'], '.1f')} | {', '.join(e['device'])}")
        mark = " †" if e.get("unfinished_phases") else ""
        seeds = ", ".join(str(k) for k in e.get("seeds", summary["seeds"]))
        c2st = " | ".join(cell(c) for c in e["c2st"])
        lines.append(f"| {n}{mark} | {seeds} | {c2st} | {recon} | {cost} |")
    if any(e.get("unfinished_phases") for e in summary["estimators"].values()):
        lines += ["", "† on some seed a member ran out of the budget before its last phase (the "
                      "M-flow's density phase): its epochs were planned from a pilot that underestimated "
                      "them; see `unfinished_phases` in its fit.json."]
    if summary.get("pending"):
        still = "; ".join(f"{n} (seeds {', '.join(str(k) for k in seeds)})"
                          for n, seeds in summary["pending"].items())
        lines += ["", f"Still training under this budget (the command without `--trained-only` "
                      f"resumes them): {still}."]
    return "\n".join(lines) + "\n"


def in_budget_order(summaries: dict[str, dict]) -> list[dict]:
    """The budgets' summaries (``ladder.json``), shortest wall budget first, ``converge`` last."""
    return sorted(summaries.values(), key=lambda s: (s["seconds"] is None, s["seconds"] or 0.0))


def config(smoke: bool, seeds: list[int], out: Path, device: str | None) -> RunConfig:
    """The flagship config (``--smoke``: 2000 simulations, 2 θ* of 5 events, seed 0, in
    ``out/runs``), on ``device`` if given."""
    overrides: dict = {"seeds": seeds}
    if smoke:
        overrides = {**SMOKE, "seeds": [0], "output_dir": str(out / "runs")}
    if device:
        overrides["device"] = device
    return load_config(CONFIG, overrides)


def main(argv: list[str] | None = None) -> None:
    from analyses.higgs4l.coverage import COVERED, coverage_table, run_coverage

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=parse_budget, nargs="+", default=[parse_budget("converge")],
                    help="wall=SECONDS (the same training time for every estimator) and/or converge")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=list(ESTIMATORS))
    ap.add_argument("--device", help="train the flows there (e.g. cuda; sbi's NLE stays on the cpu)")
    ap.add_argument("--num-samples", type=int, default=1000)
    ap.add_argument("--coverage", type=int, default=0, metavar="N",
                    help=f"also the HPD coverage of --covered ({', '.join(COVERED)}) over N observations "
                         "(seed 0; give it in every call that writes the table: its ranks are kept and "
                         "reused)")
    ap.add_argument("--covered", nargs="+", default=list(COVERED), choices=list(ESTIMATORS),
                    help="the estimators --coverage covers (default: %(default)s)")
    ap.add_argument("--max-epochs", type=int, help="cap the converge budget's epochs (default: none; "
                    "--smoke: 2)")
    ap.add_argument("--out", default="analyses/higgs4l/flagship")
    ap.add_argument("--train-only", action="store_true",
                    help="train the estimators and stop (e.g. split over shells by --estimators)")
    ap.add_argument("--trained-only", action="store_true",
                    help="train nothing: report the estimators trained so far (e.g. while --train-only "
                         "shells still run) and list the others as still training")
    ap.add_argument("--smoke", action="store_true",
                    help="a check that it runs: 2000 simulations, 2 θ* of 5 events, 1 seed, converge "
                         "capped at 2 epochs")
    args = ap.parse_args(argv)
    out = Path(args.out)
    cap = 2 if args.smoke and args.max_epochs is None else args.max_epochs
    budgets = [b if b.seconds is not None else replace(b, max_epochs=cap) for b in args.budget]
    cfg = config(args.smoke, args.seeds, out, args.device)
    num_samples, n_test = (200, 200) if args.smoke else (args.num_samples, 5000)
    for seed in cfg.seeds:
        Run(cfg, seed, progress=False).simulate()
    wanted = set(args.estimators) | (set(args.covered) if args.coverage else set())
    todo = [n for n in dict.fromkeys(ORDER + list(ESTIMATORS)) if n in wanted]
    kept = read_json(out / "ladder.json") if (out / "ladder.json").is_file() else {}
    summaries = {k: v for k, v in kept.items() if isinstance(v, dict) and "budget" in v}
    if args.train_only and args.trained_only:
        ap.error("--train-only trains and --trained-only reports: give one of them")
    for budget in budgets:
        if args.trained_only:
            fits = {(seed, n): r for n in todo for seed in cfg.seeds
                    if (r := trained(cfg, seed, n, budget)) is not None}
        else:
            fits = {(seed, n): fit(cfg, seed, n, budget) for n in todo for seed in cfg.seeds}
        if args.train_only:
            continue
        chosen = {seed: {n: fits[seed, n] for n in args.estimators if (seed, n) in fits}
                  for seed in cfg.seeds}
        pending = {n: [seed for seed in cfg.seeds if (seed, n) not in fits] for n in args.estimators}
        records = [posteriors(cfg, seed, budget, f, out, num_samples, n_test)
                   for seed, f in chosen.items() if f]
        if not records:
            print(f"budget {budget.key}: no estimator is trained yet")
            continue
        summaries[budget.key] = summarise(records, budget, cfg.device,
                                          {n: seeds for n, seeds in pending.items() if seeds})
        covered = {n: fits[cfg.seeds[0], n] for n in args.covered if (cfg.seeds[0], n) in fits}
        if args.coverage and covered:
            cov = run_coverage(cfg, budget, covered, out, args.coverage, num_samples)
            summaries[budget.key]["coverage"] = cov
    if args.train_only:
        return
    atomic_write_json(summaries, out / "ladder.json")
    text = "\n".join(table(s) + ("\n" + coverage_table(s["coverage"]) if "coverage" in s else "")
                     for s in in_budget_order(summaries))
    atomic_write(out / "table.md", lambda f: f.write(text), "w")
    print(text)
    print(json.dumps({b: {n: e["reconstruction_error"] for n, e in s["estimators"].items()
                          if "reconstruction_error" in e} for b, s in summaries.items()}))


if __name__ == "__main__":  # python -m analyses.higgs4l.ladder (from the repository root)
    main()
