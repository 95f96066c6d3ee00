"""Early stopping on a 10-parameter Gaussian task: where would ``patience`` 10 (mfinfer) or 20 (sbi's
``stop_after_epochs``) stop, and what validation NLL would it keep?

Task (sbibm's "gaussian_linear"): θ ~ N(0, 0.1 I₁₀), x | θ ~ N(θ, 0.1 I₁₀); ``--n`` simulations; an
AF likelihood with mfinfer's defaults (``LikelihoodEstimator``: θ scaled by the prior, cosine
learning rate over ``--epochs``). Each seed trains once with ``patience=None`` and records the
validation NLL of every epoch; the trainer's rule (stop after ``patience`` epochs without a better
validation loss, restore the best epoch) is then applied to that curve. Up to the stopping epoch a
run with that patience is this run, so the kept NLL is exact. The exact likelihood's NLL on the same
validation rows is the floor.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_patience.py --seeds 0 1 --out benchmarks/results/patience.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mfinfer import AmbientFlow, Gaussian, LikelihoodEstimator
from mfinfer.files import atomic_write_json
from mfinfer.training.data import split

DIM, VAR = 10, 0.1


def stop_rule(val: list[float], patience: int | None) -> dict[str, float | int]:
    """The trainer's rule on a validation curve: (stop epoch, best epoch, kept NLL), epochs from 1."""
    best, best_epoch, bad = np.inf, 0, 0
    for epoch, v in enumerate(val, start=1):
        if v < best:
            best, best_epoch, bad = v, epoch, 0
        else:
            bad += 1
        if patience is not None and bad >= patience:
            return {"stop_epoch": epoch, "best_epoch": best_epoch, "val_nll": best}
    return {"stop_epoch": len(val), "best_epoch": best_epoch, "val_nll": best}


def run(seed: int, n: int, epochs: int) -> dict:
    rng = np.random.default_rng(seed)
    prior = Gaussian(np.zeros(DIM), np.sqrt(VAR))
    theta = prior.sample(n, rng)
    x = theta + np.sqrt(VAR) * rng.standard_normal((n, DIM))
    torch.manual_seed(seed)
    est = LikelihoodEstimator(AmbientFlow(DIM, param_dim=DIM), prior).append_simulations(theta, x)
    t0 = time.perf_counter()
    est.train(epochs=epochs, patience=None, seed=seed, progress=False)
    seconds = time.perf_counter() - t0
    val = [float(h["val"]) for h in est.history]
    _, val_idx = split(n, 0.25, seed)
    d = x[val_idx.numpy()] - theta[val_idx.numpy()]
    exact = float(np.mean(0.5 * np.sum(d**2, 1) / VAR + 0.5 * DIM * np.log(2 * np.pi * VAR)))
    out = {"seed": seed, "n": n, "epochs": epochs, "train_seconds": round(seconds, 1),
           "exact_val_nll": exact, "val_curve": val}
    for patience in (10, 20, None):
        out[f"patience_{patience}"] = stop_rule(val, patience)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    records = []
    for seed in args.seeds:
        r = run(seed, args.n, args.epochs)
        records.append(r)
        rules = [(p, r[f"patience_{p}"]) for p in (10, 20, None)]
        print(f"seed {seed}: exact val NLL {r['exact_val_nll']:.3f}; " + "; ".join(
            f"patience {p}: stop {s['stop_epoch']}, best {s['best_epoch']}, NLL {s['val_nll']:.3f}"
            for p, s in rules) + f" ({r['train_seconds']:.0f} s)", flush=True)
    if args.out:
        atomic_write_json({"records": records}, Path(args.out))
        print(json.dumps({"written": args.out}))


if __name__ == "__main__":
    main()
