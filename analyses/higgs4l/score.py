"""A small H→4ℓ check of score-augmented training: the config's AF (or M-flow) with and without the
joint score.

Truth level (no cuts, no smearing: the exact posterior exists), ``n_train`` simulations (default
10k, a tenth of the flagship's), the AF of ``analyses/higgs4l/config.yaml`` (θ scaled by the prior)
trained the same epochs with ``score_weight`` 0 and w, same seeds. Each posterior (the config's
three θ*, 50 events each) is tabulated on a θ grid, first coarse over the prior box, then fine over
the box where the log posterior is within 25 of its maximum, and sampled there (cell by mass,
uniform within the cell), for the model and for the exact likelihood alike. The comparison is
C2ST (sbi's MLP classifier, 0.5 = indistinguishable) and MMD² against the exact posterior's samples.

Run (one thread):

    OMP_NUM_THREADS=1 python -m analyses.higgs4l.score          # writes analyses/higgs4l/score.json
    OMP_NUM_THREADS=1 python -m analyses.higgs4l.score --model M-flow   # score_mflow.json
    OMP_NUM_THREADS=1 python -m analyses.higgs4l.score --quick  # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mfinfer.evaluation.metrics import c2st, mmd2
from mfinfer.inference.likelihood import ModelLikelihood, SimulatorLikelihood
from mfinfer.models import build_model
from mfinfer.training import TrainConfig, train
from simulators.higgs4l import Higgs4l

HERE = Path(__file__).resolve().parent
AF = {"num_layers": 6, "hidden_features": 64, "num_blocks": 2, "num_bins": 8}
#: the config's models: (kind, options, schedule)
MODELS = {"AF": ("AmbientFlow", AF, "nll"),
          "M-flow": ("ManifoldFlow", {"outer_layers": 6, "inner_layers": 5, "hidden_features": 64,
                                      "num_blocks": 2, "num_bins": 8}, "sequential")}
TRUE_THETA = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.5))
N_EVENTS = 50


def _grid(low, high, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (n², 2) and cell sizes (2,) of an n × n grid over [low, high]."""
    edges = [np.linspace(lo, hi, n + 1) for lo, hi in zip(low, high, strict=True)]
    centres = [0.5 * (e[1:] + e[:-1]) for e in edges]
    a, b = np.meshgrid(*centres, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], 1), np.array([e[1] - e[0] for e in edges])


def grid_posterior_samples(log_like, prior, n: int, rng: np.random.Generator, size: int = 60) -> np.ndarray:
    """Samples (n, 2) of the posterior ∝ exp(log_like) under the uniform prior: a coarse grid over
    the prior box, then a fine one over the region within 25 of the coarse maximum."""
    low, high = (np.asarray(b, dtype=float) for b in prior.bounds)
    coarse, step = _grid(low, high, size)
    lp = np.asarray(log_like(coarse), dtype=float)
    keep = coarse[lp > lp.max() - 25]
    lo, hi = np.maximum(keep.min(0) - step, low), np.minimum(keep.max(0) + step, high)
    fine, cell = _grid(lo, hi, 2 * size)
    lp = np.asarray(log_like(fine), dtype=float)
    p = np.exp(lp - lp.max())
    idx = rng.choice(len(fine), size=n, p=p / p.sum())
    return fine[idx] + (rng.uniform(size=(n, 2)) - 0.5) * cell


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--score-weight", type=float, default=1.0)
    ap.add_argument("--model", choices=tuple(MODELS), default="AF")
    ap.add_argument("--grid", type=int, default=40, help="coarse grid points per axis (fine: twice)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run, writes nothing")
    ap.add_argument("--out", default=None, help="default: score.json (AF), score_mflow.json (M-flow)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    size = args.grid
    kind, options, schedule = MODELS[args.model]
    out = Path(args.out or HERE / ("score.json" if args.model == "AF" else "score_mflow.json"))
    if args.quick:
        args.n_train, args.epochs, size = 500, 1, 15
    sim = Higgs4l()
    rng = np.random.default_rng(2024)
    observed = [sim.sample(np.repeat([th], N_EVENTS, 0), rng) for th in TRUE_THETA]
    exact = [grid_posterior_samples(SimulatorLikelihood(sim, xo), sim.prior, 2000,
                                    np.random.default_rng(k), size) for k, xo in enumerate(observed)]
    results: dict = {"n_train": args.n_train, "epochs": args.epochs, "model": args.model, "kind": kind,
                     "options": options, "schedule": schedule, "n_events": N_EVENTS,
                     "grid": size, "true_theta": [list(t) for t in TRUE_THETA], "runs": []}
    for seed in args.seeds:
        theta, x, t = sim.simulate(args.n_train, rng=1000 + seed, score=True)
        for w in (0.0, args.score_weight):
            torch.manual_seed(seed)
            model = build_model(kind, sim, **options)
            cfg = TrainConfig(schedule=schedule, epochs=args.epochs, batch_size=256, lr=1e-3, patience=5,
                              score_weight=w, seed=seed, progress=False, device="cpu")
            t0 = time.perf_counter()
            history = train(model, x, theta, cfg, score=t if w > 0 else None)
            seconds = time.perf_counter() - t0
            row = {"seed": seed, "score_weight": w, "train_seconds": seconds, "epochs_run": len(history),
                   "c2st": [], "mmd2": []}
            for k, xo in enumerate(observed):
                samples = grid_posterior_samples(ModelLikelihood(model, xo), sim.prior, 2000,
                                                 np.random.default_rng(100 + k), size)
                row["c2st"].append(c2st(samples, exact[k], seed=0))
                row["mmd2"].append(mmd2(samples, exact[k]))
            results["runs"].append(row)
            print(f"seed {seed} score_weight {w}: C2ST {np.round(row['c2st'], 3).tolist()} MMD² "
                  f"{np.round(row['mmd2'], 4).tolist()} ({seconds:.0f} s, {len(history)} epochs)", flush=True)
    if not args.quick:
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
