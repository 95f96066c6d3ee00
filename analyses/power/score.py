"""Does training with the joint score (SCANDAL) help the M-flow on the power task at 3k simulations?

The issue's target: the score at least halves the M-flow's posterior MMD² against the exact
posterior. This script trains the config's M-flow (``analyses/power/config.yaml``'s architecture,
M/D sequential) on the same 3k simulations with ``score_weight`` 0 and w > 0, same epochs and seeds,
and compares the posteriors of a few observations (20 events each) with the exact one by
:func:`mfinfer.evaluation.metrics.mmd2` (median-distance bandwidth of the true posterior, as the
power table). θ is one-dimensional, so both posteriors are tabulated on a fine θ grid and sampled
by inverse CDF (exact up to the grid spacing 1e-3; no MCMC noise in the comparison).

It also measures the cost of one training step with and without the score term, for the AF, the
M-flow's D phase, the Mₑ-flow's D phase, the S phase and the FOM flow (ratio in one process).

Each (seed, score weight) run is added to the JSON as it finishes; a rerun keeps the runs already
there (same settings) and does the missing ones, so ``--seeds 2 3`` extends the file.

Run (one thread, ~20-40 min on a busy 2-core machine):

    OMP_NUM_THREADS=1 python -m analyses.power.score            # writes analyses/power/score.json
    OMP_NUM_THREADS=1 python -m analyses.power.score --quick    # a 1-minute smoke run (no file)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mfinfer.evaluation.metrics import mmd2
from mfinfer.files import atomic_write_json
from mfinfer.inference.likelihood import ModelLikelihood, SimulatorLikelihood
from mfinfer.models import AmbientFlow, FOMFlow, ManifoldFlow
from mfinfer.training import PHASES, TrainConfig, train
from simulators.power import PowerSimulator

HERE = Path(__file__).resolve().parent
#: the M-flow of analyses/power/config.yaml
MFLOW = {"outer_layers": 5, "inner_layers": 5, "hidden_features": 100, "num_blocks": 2, "num_bins": 10}
TRUE_THETA = (-0.5, 0.0, 0.5)
N_EVENTS = 20
GRID = np.linspace(-1.0, 1.0, 2001)


def posterior_samples(log_like, n: int, rng: np.random.Generator) -> np.ndarray:
    """Inverse-CDF samples (n, 1) of the posterior ∝ exp(log_like) under the uniform prior on the
    grid (linear interpolation of the CDF)."""
    lp = np.asarray(log_like(GRID[:, None]), dtype=float)
    p = np.exp(lp - lp.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(GRID))])
    return np.interp(rng.uniform(size=n) * cdf[-1], cdf, GRID)[:, None]


def train_mflow(theta, x, score, weight: float, epochs: int, seed: int) -> tuple[ManifoldFlow, float]:
    torch.manual_seed(seed)
    model = ManifoldFlow(3, 2, param_dim=1, **MFLOW)
    cfg = TrainConfig(schedule="sequential", epochs=epochs, batch_size=100, lr=2e-3, patience=None,
                      standardize=False, score_weight=weight, seed=seed, progress=False, device="cpu")
    t0 = time.perf_counter()
    train(model, x, theta, cfg, score=score if weight > 0 else None)
    return model, time.perf_counter() - t0


def step_costs(sim: PowerSimulator, repeats: int) -> dict[str, dict[str, float]]:
    """Seconds per training step (forward + backward, batch 100) without and with the score."""
    theta, x, t = (torch.as_tensor(a, dtype=torch.float32) for a in sim.simulate(100, rng=9, score=True))
    cases = {
        "AF (nll)": (AmbientFlow(3, param_dim=1, num_layers=10, hidden_features=100, num_blocks=2,
                                 num_bins=10), "nll"),
        "M-flow (D phase)": (ManifoldFlow(3, 2, param_dim=1, **MFLOW), "D"),
        "Me-flow (D phase)": (ManifoldFlow(3, 2, param_dim=1, encoder=True, **MFLOW), "D"),
        "M-flow (S phase)": (ManifoldFlow(3, 2, param_dim=1, **MFLOW), "S"),
        "FOM (D phase)": (FOMFlow(sim, param_dim=1, inner_layers=5, hidden_features=100, num_blocks=2,
                                  num_bins=10), "D"),
    }
    out = {}
    for name, (model, phase) in cases.items():
        model.train()
        seconds = {"without": 0.0, "with": 0.0}
        for i in range(repeats + 2):  # alternating, so that a change of load hits both alike
            for label, kwargs in (("without", {}), ("with", {"score": t, "score_weight": 1.0})):
                t0 = time.perf_counter()
                model.zero_grad()
                PHASES[phase].loss(model, x, theta, 1000.0, **kwargs).backward()
                if i >= 2:  # two warm-up steps
                    seconds[label] += (time.perf_counter() - t0) / repeats
        out[name] = {"seconds_without": seconds["without"], "seconds_with": seconds["with"],
                     "ratio": seconds["with"] / seconds["without"]}
        print(f"step cost {name}: {seconds['without']:.4f} s -> {seconds['with']:.4f} s "
              f"(x{out[name]['ratio']:.2f})", flush=True)
    return out


def _summary(runs: list[dict]) -> dict:
    """Median and mean MMD² over every (seed, observation) per score weight, and the seeds."""
    out = {}
    for w in sorted({r["score_weight"] for r in runs}):
        vals = [v for r in runs if r["score_weight"] == w for v in r["mmd2"]]
        out[str(w)] = {"median_mmd2": float(np.median(vals)), "mean_mmd2": float(np.mean(vals)),
                       "seeds": sorted(r["seed"] for r in runs if r["score_weight"] == w)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--score-weights", type=float, nargs="+", default=[1.0])
    ap.add_argument("--step-cost", action="store_true", help="measure the step costs again")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run, writes nothing")
    ap.add_argument("--out", default=str(HERE / "score.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.n_train, args.epochs, args.seeds = 300, 2, [0]
    sim = PowerSimulator()
    rng = np.random.default_rng(12345)
    observed = [sim.sample(np.full((N_EVENTS, 1), th), rng) for th in TRUE_THETA]
    exact = [posterior_samples(SimulatorLikelihood(sim, xo), 4000, np.random.default_rng(k))
             for k, xo in enumerate(observed)]
    settings = {"n_train": args.n_train, "epochs": args.epochs, "true_theta": list(TRUE_THETA),
                "n_events": N_EVENTS, "mflow": MFLOW, "schedule": "sequential"}
    out = Path(args.out)
    results: dict = {**settings, "runs": []}
    if out.is_file() and not args.quick:  # the runs done before, with the same settings (runs are
        stored = json.loads(out.read_text())  # deterministic: a seed and weight give the same result)
        if all(stored.get(k) == v for k, v in settings.items()):
            results = {k: v for k, v in stored.items() if k != "seeds"}  # seeds: now per weight
    for seed in args.seeds:
        theta, x, t = sim.simulate(args.n_train, rng=1000 + seed, score=True)
        for w in [0.0, *args.score_weights]:
            if any(r["seed"] == seed and r["score_weight"] == w for r in results["runs"]):
                continue
            model, seconds = train_mflow(theta, x, t, w, args.epochs, seed)
            mmds = []
            for k, xo in enumerate(observed):
                samples = posterior_samples(ModelLikelihood(model, xo), 4000, np.random.default_rng(100 + k))
                mmds.append(mmd2(samples, exact[k]))
            results["runs"].append({"seed": seed, "score_weight": w, "train_seconds": seconds,
                                    "mmd2": mmds, "median_mmd2": float(np.median(mmds))})
            results["summary"] = _summary(results["runs"])
            print(f"seed {seed} score_weight {w}: MMD² {np.round(mmds, 4).tolist()} "
                  f"({seconds:.0f} s)", flush=True)
            if not args.quick:
                atomic_write_json(results, out)
    if "step_cost" not in results or args.step_cost or args.quick:
        results["step_cost"] = step_costs(sim, 3 if args.quick else 30)
    print(json.dumps(results["summary"], indent=1))
    if not args.quick:
        atomic_write_json(results, out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
