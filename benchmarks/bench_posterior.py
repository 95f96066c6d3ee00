"""Posterior sampling wall time on the power task vs sbi's NLE, measured in one run.

Setup: 10k simulations, 20 observed events at θ* = 0, one torch thread, short training on both
sides. Rows:

1. sbi 0.27 ``NLE(prior)`` (its default density estimator), ``train(max_num_epochs=20)``, default
   ``build_posterior()`` (MCMC, slice_np_vectorized, 20 chains), ``sample((n,), x=x_obs)`` with
   x_obs of shape (20, 3): sbi treats the leading dimension as iid trials;
2. mfinfer's README path with emcee (the default) twice (two seeds: the emcee-vs-emcee MMD² is
   the two-sample noise level) and with ``method="smc"``, for the M-flow (cached projection);
3. the same with ``method="smc"`` for the AF and the conditional-manifold M-flow (no cache), with
   fewer samples (``--samples-uncached``) to keep the run short; their emcee reference is skipped
   unless ``--emcee-uncached``.

Ratios are sampling time only (training is timed separately).

    python benchmarks/bench_posterior.py > benchmarks/results/posterior_cpu.txt
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


def mmd2(a: np.ndarray, b: np.ndarray, n: int = 2000, seed: int = 0) -> float:
    """Unbiased MMD² with a Gaussian kernel (median-heuristic bandwidth) on n draws of each."""
    rng = np.random.default_rng(seed)
    a = a[rng.choice(len(a), min(n, len(a)), replace=False)]
    b = b[rng.choice(len(b), min(n, len(b)), replace=False)]
    z = np.concatenate([a, b])
    d2 = np.sum((z[:, None, :] - z[None, :, :]) ** 2, axis=-1)
    k = np.exp(-d2 / np.median(d2[d2 > 0]))
    na = len(a)
    kaa, kbb, kab = k[:na, :na], k[na:, na:], k[:na, na:]
    np.fill_diagonal(kaa, 0.0)
    np.fill_diagonal(kbb, 0.0)
    nb = len(b)
    return float(kaa.sum() / (na * (na - 1)) + kbb.sum() / (nb * (nb - 1)) - 2 * kab.mean())


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def sbi_nle(theta: np.ndarray, x: np.ndarray, x_obs: np.ndarray, n: int, epochs: int,
            seed: int) -> tuple[np.ndarray, float, float]:
    """sbi's NLE as its users run it; returns (samples, train seconds, sampling seconds)."""
    from sbi.inference import NLE
    from sbi.utils import BoxUniform

    torch.manual_seed(seed)
    prior = BoxUniform(torch.tensor([-1.0]), torch.tensor([1.0]))
    nle = NLE(prior, show_progress_bars=False)
    nle.append_simulations(torch.as_tensor(theta, dtype=torch.float32),
                           torch.as_tensor(x, dtype=torch.float32))
    _, t_train = timed(lambda: nle.train(max_num_epochs=epochs, show_train_summary=False))
    post = nle.build_posterior()
    x_o = torch.as_tensor(x_obs, dtype=torch.float32)  # (20, 3): iid trials
    samples, t_sample = timed(lambda: post.sample((n,), x=x_o, show_progress_bars=False))
    return samples.numpy().astype(float), t_train, t_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--samples-uncached", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2, help="mfinfer training epochs")
    parser.add_argument("--sbi-epochs", type=int, default=20)
    parser.add_argument("--emcee-uncached", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sim = get_simulator("power")
    theta, x = sim.simulate(10_000, rng=0)
    x_obs = sim.sample(np.zeros((args.events, 1)), rng=1)
    log: list[str] = []

    def say(msg: str) -> None:
        print(msg, flush=True)
        log.append(msg)

    rows = []
    sbi_cache: dict[int, tuple[np.ndarray, float, float]] = {}

    def sbi_for(n: int) -> tuple[np.ndarray, float, float]:
        if n not in sbi_cache:
            sbi_cache[n] = sbi_nle(theta, x, x_obs, n, args.sbi_epochs, 0)
            s, tt, ts = sbi_cache[n]
            say(f"sbi NLE n={n}: train {tt:.1f} s, sample {ts:.1f} s, mean {s.mean():.3f} "
                f"std {s.std():.3f}")
        return sbi_cache[n]

    models: list[tuple[str, Callable[[], Any], int, bool]] = [
        ("M-flow (cached)", lambda: ManifoldFlow(3, 2, param_dim=1), args.samples, True),
        ("AF (no cache)", lambda: AmbientFlow(3, param_dim=1), args.samples_uncached,
         args.emcee_uncached),
        ("M-flow conditional manifold (no cache)",
         lambda: ManifoldFlow(3, 2, param_dim=1, conditional_manifold=True),
         args.samples_uncached, args.emcee_uncached),
    ]
    for name, make, n, with_emcee in models:
        torch.manual_seed(0)
        est = LikelihoodEstimator(make(), sim.prior).append_simulations(theta, x)
        _, t_train = timed(est.train, epochs=args.epochs, batch_size=256, progress=False)
        post = est.build_posterior(progress=False)
        post.likelihood(x_obs)  # projection cache built outside the timed sampling
        smc, t_smc = timed(post.posterior, n, x=x_obs, method="smc", rng=0)
        d = smc.smc
        say(f"{name}: train {t_train:.1f} s; smc {t_smc:.1f} s, {d.num_evaluations} evals, "
            f"betas {np.round(d.betas, 3).tolist()}, stage ESS "
            f"{np.round(d.stage_ess).astype(int).tolist()}, acc "
            f"{np.round(d.stage_acceptance, 2).tolist()}, moves {d.stage_moves.tolist()}, "
            f"final ESS {d.final_ess:.0f}, moved {d.moved_fraction:.3f}, converged {d.converged}")
        row: dict[str, Any] = {"name": name, "n": n, "smc": t_smc, "smc_ok": d.converged,
                               "smc_evals": d.num_evaluations, "train": t_train}
        if with_emcee:
            e1, t_e1 = timed(post.posterior, n, x=x_obs, rng=1)
            e2, t_e2 = timed(post.posterior, n, x=x_obs, rng=2)
            for tag, e, t in (("emcee1", e1, t_e1), ("emcee2", e2, t_e2)):
                say(f"{name}: {tag} {t:.1f} s, {e.mcmc.n_steps} steps x {e.mcmc.num_walkers} "
                    f"walkers, tau {np.round(e.mcmc.tau, 1).tolist()}, acc "
                    f"{e.mcmc.acceptance_fraction:.2f}, converged {e.mcmc.converged}")
            row.update(emcee=t_e1, emcee_ok=e1.mcmc.converged and e2.mcmc.converged,
                       mmd_smc=mmd2(smc.samples, e1.samples),
                       mmd_noise=mmd2(e2.samples, e1.samples))
        sbi_s, _, t_sbi = sbi_for(n)
        row.update(sbi=t_sbi, mean_smc=smc.samples.mean(), std_smc=smc.samples.std(),
                   mean_sbi=sbi_s.mean(), std_sbi=sbi_s.std())
        rows.append(row)

    say("")
    say("| model | n | sbi NLE MCMC (s) | mfinfer emcee (s) | mfinfer smc (s) | sbi / smc | "
        "emcee / smc | MMD²(smc, emcee) | MMD²(emcee, emcee) | converged (smc / emcee) | "
        "mean±std smc | mean±std sbi |")
    say("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        em = f"{r['emcee']:.1f}" if "emcee" in r else "-"
        ratio_e = f"{r['emcee'] / r['smc']:.1f}x" if "emcee" in r else "-"
        mmd_s = f"{r['mmd_smc']:.1e}" if "emcee" in r else "-"
        mmd_n = f"{r['mmd_noise']:.1e}" if "emcee" in r else "-"
        conv = f"{r['smc_ok']} / {r.get('emcee_ok', '-')}"
        say(f"| {r['name']} | {r['n']} | {r['sbi']:.1f} | {em} | {r['smc']:.1f} | "
            f"{r['sbi'] / r['smc']:.1f}x | {ratio_e} | {mmd_s} | {mmd_n} | {conv} | "
            f"{r['mean_smc']:.3f}±{r['std_smc']:.3f} | {r['mean_sbi']:.3f}±{r['std_sbi']:.3f} |")


if __name__ == "__main__":
    main()
