"""Posterior wall time for 20 observed events and 5000 samples, measured in one run:

1. ours: emcee over the M-flow likelihood with the cached projection (u_i and ½ log det JᵀJ once);
2. ours without the cache (the full manifold density, Jacobian included, at every θ);
3. sbi's MCMCPosterior (slice_np_vectorized) on the same trained density, as sbi's NLE would use it
   (every event through the full model at every θ), and with our cached likelihood as its potential.

    python benchmarks/bench_posterior.py [--model runs/power-demo/seed_0/models/<name>/final]

Without --model a small M-flow is trained on the power task first (quality does not matter here).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from mfinfer.inference import ModelLikelihood, sample_posterior
from mfinfer.models import ManifoldFlow, load_model
from mfinfer.registry import get_simulator
from mfinfer.training import TrainConfig, train


def sbi_sample(like: ModelLikelihood, prior, x_obs: np.ndarray, n: int, seed: int) -> np.ndarray:
    from sbi.inference import MCMCPosterior
    from sbi.utils import BoxUniform

    low, high = prior.bounds
    box = BoxUniform(torch.as_tensor(low, dtype=torch.float32),
                     torch.as_tensor(high, dtype=torch.float32))

    def potential(theta: torch.Tensor, x_o: torch.Tensor) -> torch.Tensor:
        lp = like(theta.double().numpy()) + box.log_prob(theta).double().numpy()
        return torch.as_tensor(lp, dtype=torch.float32)

    torch.manual_seed(seed)
    post = MCMCPosterior(potential, proposal=box, method="slice_np_vectorized", num_chains=20,
                         warmup_steps=200, thin=1)
    x_o = torch.as_tensor(x_obs[:1], dtype=torch.float32)
    return post.sample((n,), x=x_o, show_progress_bars=False).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="directory of a saved M-flow for the power task")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sim = get_simulator("power")
    if args.model:
        model = load_model(args.model)
    else:
        torch.manual_seed(0)
        model = ManifoldFlow(3, 2, param_dim=1, outer_layers=5, inner_layers=5, hidden_features=100)
        theta, x = sim.simulate(10_000, rng=0)
        train(model, x, theta, TrainConfig(epochs=2, batch_size=256, progress=False))
    model.eval()
    x_obs = sim.sample(np.zeros((args.events, 1)), rng=1)
    cached = ModelLikelihood(model, x_obs, cache=True)
    direct = ModelLikelihood(model, x_obs, cache=False)
    times, means = {}, {}

    def ours(like: ModelLikelihood) -> np.ndarray:
        return sample_posterior(like, sim.prior, args.samples, rng=0, progress=False).samples

    for name, run in [
        ("ours_cached", lambda: ours(cached)),
        ("ours_uncached", lambda: ours(direct)),
        ("sbi_slice_uncached", lambda: sbi_sample(direct, sim.prior, x_obs, args.samples, 0)),
        ("sbi_slice_cached", lambda: sbi_sample(cached, sim.prior, x_obs, args.samples, 0)),
    ]:
        t0 = time.perf_counter()
        samples = run()
        times[name] = time.perf_counter() - t0
        means[name] = [float(samples.mean()), float(samples.std())]
        row = {"method": name, "seconds": times[name], "mean_std": means[name]}
        print(json.dumps(row), flush=True)
    base = times["ours_cached"]
    print("| method | wall time / ours (cached) | posterior mean, std |")
    print("|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {t / base:.1f}x | {means[name][0]:.3f}, {means[name][1]:.3f} |")


if __name__ == "__main__":
    main()
