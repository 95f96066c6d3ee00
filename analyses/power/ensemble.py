"""What does ensembling do to the power M-flow's posterior and its coverage at 3k simulations?

K = 3 M-flows (the architecture of ``analyses/power/config.yaml``, M/D sequential, the budget of
``score.py``) trained by :func:`mfinfer.training.train_ensemble` on the same simulations; member 0
is the single model. For ``n_obs`` observations (θ* ~ prior, 20 events each) the posteriors of the
single model, the ensemble (per-event mixture) and the exact likelihood are tabulated on a fine θ
grid; coverage counts how often θ* lies in the highest-posterior-density region of 68 % and 95 %
mass (the exact posterior's coverage shows the Monte Carlo spread around nominal), and MMD² compares
each with the exact posterior at the three θ* of ``score.py``.

    OMP_NUM_THREADS=1 python -m analyses.power.ensemble           # writes analyses/power/ensemble.json
    OMP_NUM_THREADS=1 python -m analyses.power.ensemble --quick   # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from analyses.power.score import GRID, MFLOW, N_EVENTS, TRUE_THETA, posterior_samples
from mfinfer.evaluation.metrics import mmd2
from mfinfer.inference.likelihood import ModelLikelihood, SimulatorLikelihood
from mfinfer.models import ManifoldFlow
from mfinfer.training import TrainConfig, train_ensemble
from simulators.power import PowerSimulator

HERE = Path(__file__).resolve().parent
LEVELS = (0.68, 0.95)


def hpd_covers(log_like, theta_true: float) -> list[bool]:
    """Whether θ* lies in the 68 % / 95 % highest-density region of the grid posterior."""
    lp = np.asarray(log_like(GRID[:, None]), dtype=float)
    p = np.exp(lp - lp.max())
    p /= p.sum()
    order = np.argsort(-p)
    mass_above = np.cumsum(p[order])  # mass of the cells at least as dense as each
    rank = np.empty(len(p))
    rank[order] = mass_above - p[order]  # mass strictly denser than the cell
    k = int(np.argmin(np.abs(GRID - theta_true)))
    return [bool(rank[k] < level) for level in LEVELS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--n-obs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run, writes nothing")
    ap.add_argument("--out", default=str(HERE / "ensemble.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.n_train, args.epochs, args.n_obs = 300, 2, 10
    sim = PowerSimulator()
    theta, x = sim.simulate(args.n_train, rng=1000 + args.seed)
    cfg = TrainConfig(schedule="sequential", epochs=args.epochs, batch_size=100, lr=2e-3, patience=None,
                      standardize=False, seed=args.seed, progress=False, device="cpu")
    t0 = time.perf_counter()
    ens, _ = train_ensemble(lambda: ManifoldFlow(3, 2, param_dim=1, **MFLOW), args.members, x, theta, cfg,
                            init_seed=args.seed)
    seconds = time.perf_counter() - t0
    models = {"single": ens.members[0], "ensemble": ens}
    rng = np.random.default_rng(777)
    thetas = sim.prior.sample(args.n_obs, rng)
    cover: dict[str, list[list[bool]]] = {name: [] for name in (*models, "exact")}
    for th in thetas:
        xo = sim.sample(np.repeat(th[None], N_EVENTS, 0), rng)
        cover["exact"].append(hpd_covers(SimulatorLikelihood(sim, xo), th[0]))
        for name, model in models.items():
            cover[name].append(hpd_covers(ModelLikelihood(model, xo), th[0]))
    obs_rng = np.random.default_rng(12345)  # the observations of score.py
    observed = [sim.sample(np.full((N_EVENTS, 1), th), obs_rng) for th in TRUE_THETA]
    out: dict = {"n_train": args.n_train, "epochs": args.epochs, "members": args.members, "seed": args.seed,
                 "n_obs": args.n_obs, "levels": list(LEVELS), "train_seconds": seconds, "models": {}}
    for name in cover:
        c = np.array(cover[name], dtype=float)
        row: dict = {"coverage": c.mean(0).tolist(), "coverage_se": (c.std(0) / np.sqrt(len(c))).tolist()}
        if name != "exact":
            mm = []
            for k, xo in enumerate(observed):
                ref = posterior_samples(SimulatorLikelihood(sim, xo), 4000, np.random.default_rng(k))
                like = ModelLikelihood(models[name], xo)
                got = posterior_samples(like, 4000, np.random.default_rng(100 + k))
                mm.append(mmd2(got, ref))
            row["mmd2"] = mm
        out["models"][name] = row
        print(name, json.dumps(row), flush=True)
    if not args.quick:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
