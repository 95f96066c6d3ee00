"""Detector-level H -> ZZ* -> 2e2mu: posteriors of the AF and the M-flow trained on smeared events
(analyses/higgs4l/detector_calibration.yaml) at the analysis' three theta*, compared with the exact
posterior of the *unsmeared* (truth-level) events from which the observed events were made.

Per theta*: truth-level events are drawn with ``Higgs4l(cuts=False, smearing=0)`` (the smeared
simulator's own proposal also has no truth-level window), smeared with the smeared simulator's own
``_smear`` (relative Gaussian on |p|, direction kept, E = |p|), and kept when the smeared event
passes the cuts (as ``Higgs4l(cuts=True, smearing=s)`` does) and the unsmeared one passes them too
(so that the exact ``Higgs4l(cuts=True)`` likelihood is finite); the first ``--n-events`` are used.
References: ``truth``, the exact posterior of the unsmeared events; ``oracle-projection``, the
exact posterior of ``Higgs4l.project`` of the smeared events (the simulator's own projection
onto the manifold as a denoiser; events whose projection fails the cuts are dropped).

    .venv/bin/python analyses/higgs4l/detector.py [--n-events 30] [--out analyses/higgs4l/detector]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mfinfer.calibration import load_campaign
from mfinfer.evaluation.metrics import c2st, mmd2
from mfinfer.inference import ModelLikelihood, SimulatorLikelihood
from mfinfer.inference.mcmc import sample_posterior
from mfinfer.pipeline import Run
from simulators.higgs4l import Higgs4l
from simulators.higgs4l import kinematics as kin
from simulators.higgs4l.cuts import passes_cuts

CONFIG = "analyses/higgs4l/detector_calibration.yaml"
#: Grid sampler options, coarser than the defaults for time (as in the calibration config).
GRID = {"initial_cells": 16, "tol": 0.05, "max_evaluations": 3000}


def events(theta: np.ndarray, n: int, smearing: float, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(unsmeared, smeared, n_dropped_truth_fail) for n events at theta."""
    rng = np.random.default_rng(seed)
    gen, det = Higgs4l(cuts=False), Higgs4l(cuts=True, smearing=smearing)
    xs_t, xs_s, dropped = [], [], 0
    while sum(len(x) for x in xs_t) < n:
        x_t = gen.sample(np.tile(theta, (4 * n, 1)), rng=rng)
        ps = det._smear(kin.momenta_from_observables(x_t), rng)
        x_s = kin.observables(*ps)
        ok_s, ok_t = passes_cuts(x_s), passes_cuts(x_t)
        dropped += int((ok_s & ~ok_t).sum())
        keep = ok_s & ok_t
        xs_t.append(x_t[keep]), xs_s.append(x_s[keep])
    return np.concatenate(xs_t)[:n], np.concatenate(xs_s)[:n], dropped


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-events", type=int, default=30)
    ap.add_argument("--num-samples", type=int, default=1000)
    ap.add_argument("--out", default="analyses/higgs4l/detector")
    args = ap.parse_args()
    torch.set_num_threads(1)
    camp = load_campaign(CONFIG)
    cfg = camp.run
    smearing = float(cfg.simulator["options"]["smearing"])
    run = Run(cfg, camp.seed, progress=False)
    models = {m.name: run.load(m) for m in cfg.models}
    exact = Higgs4l(cuts=True)
    prior = exact.prior
    out = {"smearing": smearing, "n_events": args.n_events, "points": []}
    for k, theta in enumerate(np.asarray(cfg.observed.theta, float)):
        x_t, x_s, dropped = events(theta, args.n_events, smearing, seed=1000 + k)
        x_p = exact.project(x_s)
        in_cuts = passes_cuts(x_p)
        likes = {"truth": SimulatorLikelihood(exact, x_t),
                 "oracle-projection": SimulatorLikelihood(exact, x_p[in_cuts])}
        likes.update({name: ModelLikelihood(m, x_s) for name, m in models.items()})
        rec = {"theta": theta.tolist(), "dropped_truth_fail": dropped,
               "oracle_dropped": int((~in_cuts).sum()),
               "mean_smear_shift_GeV": float(np.abs(x_s[:, :16] - x_t[:, :16]).mean()),
               "posteriors": {}}
        samples = {}
        for name, like in likes.items():
            t0 = time.time()
            res = sample_posterior(like, prior, args.num_samples, method="grid", rng=k, **GRID)
            s = np.asarray(res.samples)
            samples[name] = s
            rec["posteriors"][name] = {"mean": s.mean(0).tolist(), "std": s.std(0).tolist(),
                                       "seconds": round(time.time() - t0, 1)}
            print(f"point {k} {name}: mean {s.mean(0).round(2)} std {s.std(0).round(2)} "
                  f"({time.time() - t0:.0f} s)", flush=True)
        for name, s in samples.items():
            if name != "truth":
                rec["posteriors"][name]["mmd2_vs_truth"] = float(mmd2(s, samples["truth"]))
                rec["posteriors"][name]["c2st_vs_truth"] = float(c2st(s, samples["truth"], classifier="rf"))
        out["points"].append(rec)
        np.savez(Path("runs/higgs4l-detector") / f"detector_point_{k}.npz", **samples)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "posteriors.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
