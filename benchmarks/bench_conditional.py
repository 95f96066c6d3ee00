"""Cost of a posterior with a θ-dependent manifold (no projection cache) against the cached path.

Lorenz-63 points (D = 3, d = 2, θ = (σ, ρ, β)). Three likelihoods of the same size as the Lorenz
analysis' models (5 outer / 4 inner RQ-spline layers, 64 hidden units, 8 bins), briefly trained on
the same simulations so that the posteriors, and hence the number of likelihood evaluations the
sampler asks for, are realistic:

1. ``cached``: M-flow with a θ-independent manifold; u_i = encode(x_i) and ½ log det JᵀJ(u_i) are
   computed once, each θ costs one inner-flow pass per event (``ModelLikelihood``'s default);
2. ``uncached``: the same model with ``cache=False``: encode, forward-mode Jacobian of the
   decoder and the inner flow for every (θ, event) pair (the cost of not caching, same weights);
3. ``conditional``: ``ManifoldFlow(conditional_manifold=True)``: the uncached path is the only
   one (the projection and det JᵀJ depend on θ);

plus the AF for reference. Each posterior: tempered SMC (``sample_posterior(method="smc")``) with
the same number of particles and seed, at θ* = (10, 28, 8/3) with 10 and 100 observed points.
Reported per model and event count: likelihood evaluations (θ points), CPU and wall seconds of
the posterior, µs per (θ, event) pair, and the ratio to the cached path. One torch thread.

    OMP_NUM_THREADS=1 python benchmarks/bench_conditional.py > benchmarks/results/conditional_cpu.txt
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings

import numpy as np
import torch

from mfinfer import AmbientFlow, ManifoldFlow, get_simulator
from mfinfer.inference import ModelLikelihood, sample_posterior
from mfinfer.training import TrainConfig, train

ARCH = {"hidden_features": 64, "num_blocks": 2, "num_bins": 8,
        "theta_loc": [10.0, 30.0, 2.4], "theta_scale": [1.0, 3.0, 0.4]}
CLASSIC = (10.0, 28.0, 8.0 / 3.0)


def build(kind: str) -> torch.nn.Module:
    if kind == "AF":
        return AmbientFlow(3, param_dim=3, num_layers=5, **ARCH)
    return ManifoldFlow(3, 2, param_dim=3, outer_layers=5, inner_layers=4,
                        conditional_manifold=kind == "conditional", **ARCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sims", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--particles", type=int, default=500)
    parser.add_argument("--events", type=int, nargs="+", default=[10, 100])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# OMP_NUM_THREADS=1 {' '.join(['python', *sys.argv])} > benchmarks/results/conditional_cpu.txt")
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread; "
          f"{args.n_sims} Lorenz point simulations, {args.epochs} epochs; SMC with "
          f"{args.particles} particles, seed 0; θ* = (10, 28, 8/3)")
    print("# the machine is shared: CPU (process) seconds are the robust measure, wall seconds "
          "are shown for completeness")
    sim = get_simulator("lorenz", observation="points")
    theta, x = sim.simulate(args.n_sims, rng=0)
    models = {}
    for kind in ("M-flow", "conditional", "AF"):
        torch.manual_seed(0)
        model = build(kind)
        schedule = "nll" if kind == "AF" else "sequential"
        c0 = time.process_time()
        train(model, x, theta, TrainConfig(schedule=schedule, epochs=args.epochs, batch_size=256,
                                           patience=None, progress=False))
        models[kind] = model.eval()
        print(f"# trained {kind}: {time.process_time() - c0:.0f} s CPU")
    rows = [("cached", "M-flow", True), ("uncached", "M-flow", False),
            ("conditional", "conditional", True), ("AF", "AF", True)]
    print()
    print("| likelihood | events | evaluations | posterior CPU [s] | wall [s] | µs per (θ, event) "
          "pair (CPU) | CPU / cached | posterior mean (σ, ρ, β) | std |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n_events in args.events:
        x_obs = sim.sample(np.tile(CLASSIC, (n_events, 1)), rng=1)
        base = None
        for label, kind, cache in rows:
            like = ModelLikelihood(models[kind], x_obs, cache=cache)
            like(np.array([CLASSIC]))  # warm-up (first-call overheads)
            c0, w0 = time.process_time(), time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = sample_posterior(like, sim.prior, args.particles, method="smc", rng=0)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            base = cpu if label == "cached" else base
            per_pair = cpu / (res.num_evaluations * n_events) * 1e6
            mean, std = res.samples.mean(0), res.samples.std(0)
            print(f"| {label} | {n_events} | {res.num_evaluations} | {cpu:.1f} | {wall:.1f} | "
                  f"{per_pair:.1f} | {cpu / base:.1f}× | ({', '.join(f'{m:.2f}' for m in mean)}) | "
                  f"({', '.join(f'{s:.2f}' for s in std)}) |", flush=True)


if __name__ == "__main__":
    main()
