"""Posterior speed through the default paths, like for like: mfinfer vs sbi's NLE, in one run.

Both sides get the same simulations, the same number of training epochs, the same 20 observed
events at θ*, 5000 posterior samples and one torch thread; each side uses its defaults otherwise:

1. mfinfer, the README's first example: ``LikelihoodEstimator(ManifoldFlow(D, d, param_dim=p))``,
   ``train(epochs=E, schedule="sequential")``, ``build_posterior()`` (``method="auto"``: the adaptive
   grid for p ≤ 3 when its checks pass, else SMC), ``sample(5000, x=x_obs)``;
2. sbi 0.27: ``NLE(prior)`` (its default density estimator), ``train(max_num_epochs=E - 1)`` (sbi
   runs epochs 0..max_num_epochs, so E epochs; its early stopping, 20 epochs' patience, cannot
   trigger within E), default
   ``build_posterior()`` (MCMC, slice_np_vectorized), ``sample((5000,), x=x_obs)`` with x_obs of
   shape (20, D): sbi treats the leading dimension as iid trials.

The sampling time of each ``sample`` call is the figure compared (the likelihood's set-up, the
cached projection for mfinfer, counts inside it); training times are reported too. Quality check:
where the simulator has an exact likelihood (power, H→4ℓ), the true posterior is sampled with the
grid on it, and the MMD² of each side's samples against it is printed with the two-sample noise
level (95th percentile over label permutations): a fast posterior that is wrong would show there.

    OMP_NUM_THREADS=1 python benchmarks/bench_posterior.py --task power
    OMP_NUM_THREADS=1 python benchmarks/bench_posterior.py --task higgs4l

Each writes ``benchmarks/results/posterior_<task>.txt`` (the printed lines) and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfinfer.inference import LikelihoodEstimator, SimulatorLikelihood, sample_posterior
from mfinfer.models import ManifoldFlow
from mfinfer.registry import get_simulator

#: Per task: simulations (the README's 20k for power), epochs (the README's 10), θ*, model options.
TASKS: dict[str, dict[str, Any]] = {
    "power": {"simulator": {}, "n_sims": 20_000, "epochs": 10, "theta": [0.0], "flow": {}},
    "higgs4l": {"simulator": {"cuts": False, "smearing": 0.0}, "n_sims": 20_000, "epochs": 10,
                "theta": [0.0, 0.0],
                "flow": {"hidden_features": 64, "num_blocks": 2, "num_bins": 8}},
}
RESULTS = Path(__file__).parent / "results"


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _mmd2_of(k: np.ndarray, in_a: np.ndarray) -> float:
    """Unbiased MMD² from the pooled kernel matrix k and a boolean mask of the first sample."""
    na, nb = in_a.sum(), (~in_a).sum()
    kaa, kbb, kab = k[np.ix_(in_a, in_a)], k[np.ix_(~in_a, ~in_a)], k[np.ix_(in_a, ~in_a)]
    return float((kaa.sum() - np.trace(kaa)) / (na * (na - 1))
                 + (kbb.sum() - np.trace(kbb)) / (nb * (nb - 1)) - 2 * kab.mean())


def mmd2(a: np.ndarray, b: np.ndarray, n: int = 1500, perms: int = 100,
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


def sbi_nle(prior: Any, theta: np.ndarray, x: np.ndarray, x_obs: np.ndarray, n: int,
            epochs: int) -> dict[str, Any]:
    """sbi's NLE as its users run it: its default estimator, MCMC and sample call."""
    from sbi.inference import NLE
    from sbi.utils import BoxUniform

    torch.manual_seed(0)
    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in prior.bounds)
    nle = NLE(BoxUniform(low, high), show_progress_bars=False)
    nle.append_simulations(torch.as_tensor(theta, dtype=torch.float32),
                           torch.as_tensor(x, dtype=torch.float32))
    # sbi counts epochs from 0 and runs while epoch <= max_num_epochs: E - 1 gives E epochs.
    _, t_train = timed(lambda: nle.train(max_num_epochs=epochs - 1, show_train_summary=False))
    post = nle.build_posterior()
    x_o = torch.as_tensor(x_obs, dtype=torch.float32)
    samples, t_sample = timed(lambda: post.sample((n,), x=x_o, show_progress_bars=False))
    return {"samples": samples.numpy().astype(float), "train_s": t_train, "sample_s": t_sample,
            "epochs": nle.summary["epochs_trained"][-1] if nle.summary.get("epochs_trained") else None}


def mfinfer_default(sim: Any, theta: np.ndarray, x: np.ndarray, x_obs: np.ndarray, n: int,
                    epochs: int, flow: dict[str, Any]) -> dict[str, Any]:
    """The README's first example with this task's simulator."""
    torch.manual_seed(0)
    model = ManifoldFlow(sim.data_dim, sim.manifold_dim, param_dim=sim.param_dim, **flow)
    est = LikelihoodEstimator(model, prior=sim.prior).append_simulations(theta, x)
    _, t_train = timed(est.train, epochs=epochs, schedule="sequential", progress=False)
    posterior = est.build_posterior()
    post, t_sample = timed(posterior.posterior, n, x=x_obs)
    return {"samples": post.samples, "train_s": t_train, "sample_s": t_sample,
            "epochs": len(est.history), "sampler": post.metadata["sampler"],
            "diagnostics": post.summary().get("grid") or post.summary().get("smc")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="power")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--n-sims", type=int, help="simulations (default: the task's)")
    parser.add_argument("--epochs", type=int, help="training epochs of both sides (default: the task's)")
    parser.add_argument("--out", type=Path, help="output stem (default benchmarks/results/posterior_<task>; "
                        "'-' prints only)")
    args = parser.parse_args()
    task = TASKS[args.task]
    n_sims, epochs, n = args.n_sims or task["n_sims"], args.epochs or task["epochs"], args.samples
    torch.set_num_threads(1)
    sim = get_simulator(args.task, **task["simulator"])
    theta, x = sim.simulate(n_sims, rng=0)
    x_obs = sim.sample(np.tile(task["theta"], (args.events, 1)), rng=1)
    lines: list[str] = []

    def say(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    say(f"# task {args.task}: {n_sims} simulations, {epochs} epochs on both sides, {args.events} events at "
        f"theta* = {task['theta']}, {n} samples, torch threads 1, {platform.processor() or 'cpu'}, "
        f"{os.cpu_count()} cores, load average at start {load:.1f}")
    mf = mfinfer_default(sim, theta, x, x_obs, n, epochs, task["flow"])
    say(f"mfinfer (README default path): train {mf['train_s']:.1f} s ({mf['epochs']} epochs), "
        f"sample {mf['sample_s']:.2f} s with {mf['sampler']['method']} "
        f"(requested {mf['sampler']['requested']}, fallback {mf['sampler']['fallback']}, converged "
        f"{mf['sampler']['converged']})")
    sb = sbi_nle(sim.prior, theta, x, x_obs, n, epochs)
    say(f"sbi NLE (defaults): train {sb['train_s']:.1f} s ({sb['epochs']} epochs), "
        f"sample {sb['sample_s']:.1f} s")
    truth, t_truth = timed(sample_posterior, SimulatorLikelihood(sim, x_obs), sim.prior, n,
                           method="grid", rng=0)
    say(f"exact posterior (simulator likelihood, grid): {t_truth:.2f} s, converged {truth.converged}")
    out: dict[str, Any] = {"task": args.task, "n_sims": n_sims, "epochs": epochs, "events": args.events,
                           "samples": n, "load_average_start": load,
                           "load_average_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    say("")
    say("| side | train (s) | sample (s) | mean | std | MMD² vs exact | noise (95% perm.) |")
    say("|---|---|---|---|---|---|---|")
    for name, r in (("mfinfer build_posterior().sample", mf), ("sbi NLE build_posterior().sample", sb)):
        m, noise = mmd2(r["samples"], truth.samples)
        say(f"| {name} | {r['train_s']:.1f} | {r['sample_s']:.2f} | "
            f"{np.round(r['samples'].mean(0), 3).tolist()} | {np.round(r['samples'].std(0), 3).tolist()} | "
            f"{m:.1e} | {noise:.1e} |")
        out[name.split()[0]] = {k: v for k, v in r.items() if k != "samples"} | {
            "mean": r["samples"].mean(0).tolist(), "std": r["samples"].std(0).tolist(), "mmd2_vs_exact": m,
            "mmd2_noise": noise}
    say(f"| exact (grid on the simulator likelihood) | - | {t_truth:.2f} | "
        f"{np.round(truth.samples.mean(0), 3).tolist()} | {np.round(truth.samples.std(0), 3).tolist()} "
        f"| - | - |")
    ratio = sb["sample_s"] / mf["sample_s"]
    out["sample_ratio_sbi_over_mfinfer"] = ratio
    total = (sb["train_s"] + sb["sample_s"]) / (mf["train_s"] + mf["sample_s"])
    say(f"\nposterior sampling: mfinfer's default path is {ratio:.0f}x faster than sbi's NLE default "
        f"(sample call, same run); train + sample: {total:.1f}x")
    if args.out != Path("-"):
        stem = args.out or RESULTS / f"posterior_{args.task}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        texts = {".txt": "\n".join(lines) + "\n", ".json": json.dumps(out, indent=1, default=str)}
        for suffix, text in texts.items():
            tmp = stem.with_name(stem.name + suffix + ".tmp")
            tmp.write_text(text)
            tmp.replace(stem.with_name(stem.name + suffix))


if __name__ == "__main__":
    main()
