"""Posterior sampling wall time vs sbi's NLE, measured in one run, on the power task or H→4ℓ.

Setup (power, the default): 10k simulations, 20 observed events at θ* = 0, 5000 posterior samples,
one torch thread, short training on both sides. ``--task higgs4l``: 20k simulations, 50 events at
θ* = (0, 0), the analysis' flow sizes. Rows:

1. sbi 0.27 ``NLE(prior)`` (its default density estimator), ``train(max_num_epochs=20)``, default
   ``build_posterior()`` (MCMC, slice_np_vectorized, 20 chains), ``sample((n,), x=x_obs)`` with
   x_obs of shape (n_events, D): sbi treats the leading dimension as iid trials;
2. mfinfer's README path ``LikelihoodEstimator → build_posterior(method=...) → sample`` with
   ``method="grid"`` (adaptive grid), ``"smc"`` (tempered SMC) and, as the slow reference,
   ``"emcee"`` (the default) twice with two seeds: the emcee-vs-emcee MMD² is the two-sample noise
   level. For the AF and the conditional-manifold M-flow (no projection cache) the reference is
   SMC twice unless ``--emcee-uncached``.

Ratios are sampling time only (training is timed separately); every sampler's own convergence
check is printed (grid: quadrature error, resolution and importance check; SMC: final ESS and
moved fraction; emcee: chain length ≥ 50 τ).

    python benchmarks/bench_posterior.py > benchmarks/results/posterior_cpu.txt
    python benchmarks/bench_posterior.py --task higgs4l > benchmarks/results/posterior_higgs4l_cpu.txt
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mfinfer.inference import LikelihoodEstimator
from mfinfer.models import AmbientFlow, ManifoldFlow
from mfinfer.registry import get_simulator

TASKS: dict[str, dict[str, Any]] = {
    "power": {"n_sims": 10_000, "events": 20, "theta": [0.0], "epochs": 2, "flow": {}},
    "higgs4l": {"n_sims": 20_000, "events": 50, "theta": [0.0, 0.0], "epochs": 2,
                "flow": {"hidden_features": 64, "num_blocks": 2, "num_bins": 8}},
}


def _mmd2_of(k: np.ndarray, in_a: np.ndarray) -> float:
    """Unbiased MMD² from the pooled kernel matrix k and a boolean mask of the first sample."""
    na, nb = in_a.sum(), (~in_a).sum()
    kaa, kbb, kab = k[np.ix_(in_a, in_a)], k[np.ix_(~in_a, ~in_a)], k[np.ix_(in_a, ~in_a)]
    return float((kaa.sum() - np.trace(kaa)) / (na * (na - 1))
                 + (kbb.sum() - np.trace(kbb)) / (nb * (nb - 1)) - 2 * kab.mean())


def mmd2(a: np.ndarray, b: np.ndarray, n: int = 2000, perms: int = 100,
         seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD² (Gaussian kernel, median-heuristic bandwidth) on n draws of each sample, and
    the two-sample noise level: the 95th percentile of MMD² over label permutations."""
    rng = np.random.default_rng(seed)
    a = a[rng.choice(len(a), min(n, len(a)), replace=False)]
    b = b[rng.choice(len(b), min(n, len(b)), replace=False)]
    z = np.concatenate([a, b])
    d2 = np.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1)
    k = np.exp(-d2 / np.median(d2[d2 > 0]))
    labels = np.arange(len(z)) < len(a)
    null = [_mmd2_of(k, rng.permutation(labels)) for _ in range(perms)]
    return _mmd2_of(k, labels), float(np.quantile(null, 0.95))


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def sbi_nle(prior: Any, theta: np.ndarray, x: np.ndarray, x_obs: np.ndarray, n: int, epochs: int,
            seed: int) -> tuple[np.ndarray, float, float]:
    """sbi's NLE as its users run it; returns (samples, train seconds, sampling seconds)."""
    from sbi.inference import NLE
    from sbi.utils import BoxUniform

    torch.manual_seed(seed)
    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in prior.bounds)
    nle = NLE(BoxUniform(low, high), show_progress_bars=False)
    nle.append_simulations(torch.as_tensor(theta, dtype=torch.float32),
                           torch.as_tensor(x, dtype=torch.float32))
    _, t_train = timed(lambda: nle.train(max_num_epochs=epochs, show_train_summary=False))
    post = nle.build_posterior()
    x_o = torch.as_tensor(x_obs, dtype=torch.float32)  # (n_events, D): iid trials
    samples, t_sample = timed(lambda: post.sample((n,), x=x_o, show_progress_bars=False))
    return samples.numpy().astype(float), t_train, t_sample


def diagnostics(post: Any) -> tuple[str, bool]:
    """One line of the sampler's own convergence diagnostics, and its verdict."""
    if post.grid is not None:
        g = post.grid
        return (f"{g.num_evaluations} evals, {g.rounds} rounds, {g.num_cells} cells, error "
                f"{g.error:.1e}, resolution {g.resolution:.1f}, check ESS {g.check_ess:.3f}",
                g.converged)
    if post.smc is not None:
        d = post.smc
        return (f"{d.num_evaluations} evals, betas {np.round(d.betas, 3).tolist()}, moves "
                f"{d.stage_moves.tolist()}, final ESS {d.final_ess:.0f}, moved "
                f"{d.moved_fraction:.3f}", d.converged)
    e = post.mcmc
    return (f"{e.n_steps} steps x {e.num_walkers} walkers, tau {np.round(e.tau, 1).tolist()}, "
            f"acc {e.acceptance_fraction:.2f}", e.converged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="power")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--sbi-epochs", type=int, default=20)
    parser.add_argument("--emcee-uncached", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    task = TASKS[args.task]
    torch.set_num_threads(1)
    sim = get_simulator(args.task)
    theta, x = sim.simulate(task["n_sims"], rng=0)
    x_obs = sim.sample(np.tile(task["theta"], (task["events"], 1)), rng=1)
    n, p, big_d = args.samples, sim.param_dim, sim.data_dim
    d = sim.manifold_dim

    def say(msg: str) -> None:
        print(msg, flush=True)

    say(f"# task {args.task}: {task['n_sims']} simulations, {task['events']} events, {n} samples, "
        f"device {args.device}, torch threads 1")
    sbi_s, t_sbi_train, t_sbi = sbi_nle(sim.prior, theta, x, x_obs, n, args.sbi_epochs, 0)
    say(f"sbi NLE: train {t_sbi_train:.1f} s, sample {t_sbi:.1f} s, mean "
        f"{np.round(sbi_s.mean(0), 3).tolist()} std {np.round(sbi_s.std(0), 3).tolist()}")

    flow = task["flow"]
    models: list[tuple[str, Callable[[], Any], bool]] = [
        ("M-flow (cached)", lambda: ManifoldFlow(big_d, d, param_dim=p, **flow), True),
        ("AF (no cache)", lambda: AmbientFlow(big_d, param_dim=p, **flow), args.emcee_uncached),
        ("M-flow conditional manifold (no cache)",
         lambda: ManifoldFlow(big_d, d, param_dim=p, conditional_manifold=True, **flow),
         args.emcee_uncached),
    ]
    rows = []
    for name, make, with_emcee in models:
        torch.manual_seed(0)
        est = LikelihoodEstimator(make().to(args.device), sim.prior).append_simulations(theta, x)
        _, t_train = timed(est.train, epochs=task["epochs"], batch_size=256, progress=False,
                           device=args.device)
        post = est.build_posterior(progress=False)
        post.likelihood(x_obs)  # projection cache built outside the timed sampling
        say(f"{name}: train {t_train:.1f} s")
        plan = [("grid", 0), ("smc", 0), *([("emcee", 1), ("emcee", 2)] if with_emcee else
                                           [("smc", 2)])]
        runs = {(m, s): timed(post.posterior, n, x=x_obs, method=m, rng=s) for m, s in plan}
        for (method, seed), (res, t) in runs.items():
            text, ok = diagnostics(res)
            say(f"{name}: {method} (seed {seed}) {t:.2f} s, {text}, converged {ok}")
        ref, ref2 = plan[-2:]  # the reference twice: its MMD² is the two-sample noise level
        rows.append({
            "name": name, "train": t_train, "ref": ref[0],
            "grid": runs["grid", 0][1], "smc": runs["smc", 0][1], "slow": runs[ref][1],
            "converged": " / ".join(str(diagnostics(runs[k][0])[1])
                                    for k in (("grid", 0), ("smc", 0), ref)),
            "mmd_grid": mmd2(runs["grid", 0][0].samples, runs[ref][0].samples),
            "mmd_ref": mmd2(runs[ref2][0].samples, runs[ref][0].samples)[0],
            "mean": runs["grid", 0][0].samples.mean(0), "std": runs["grid", 0][0].samples.std(0),
        })

    say("")
    say("| model | sbi NLE MCMC (s) | grid (s) | smc (s) | reference (s) | sbi / grid | sbi / smc | "
        "MMD²(grid, ref) | noise: 95% perm. / ref vs ref | converged (grid / smc / ref) | "
        "mean, std (grid) |")
    say("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        (mmd, noise), mmd_ref = r["mmd_grid"], r["mmd_ref"]
        say(f"| {r['name']} | {t_sbi:.1f} | {r['grid']:.2f} | {r['smc']:.2f} | {r['ref']} "
            f"{r['slow']:.1f} | {t_sbi / r['grid']:.0f}x | {t_sbi / r['smc']:.1f}x | "
            f"{mmd:.1e} | {noise:.1e} / {mmd_ref:.1e} | {r['converged']} | "
            f"{np.round(r['mean'], 3).tolist()}, {np.round(r['std'], 3).tolist()} |")
    say(f"sbi NLE mean, std: {np.round(sbi_s.mean(0), 3).tolist()}, "
        f"{np.round(sbi_s.std(0), 3).tolist()}")


if __name__ == "__main__":
    main()
