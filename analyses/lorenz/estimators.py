"""Posteriors of the Lorenz analysis' estimators and their summaries: the config's sampler on an
mfinfer model's or the NLE's likelihood, sbi's own MCMC, the off-manifold ablation's likelihood,
and the posterior summaries, ranks and coverage."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import torch

from mfinfer.interop.nle import NLELikelihood, sbi_prior


class Sampled(NamedTuple):
    """Posterior samples (n, p), their unnormalised log posterior (n,), and the log posterior
    as a function of θ (m, p) -> (m,) of the same normalisation."""

    samples: np.ndarray
    log_post: np.ndarray
    log_post_fn: Callable[[np.ndarray], np.ndarray]
    note: str = ""


def model_posterior(model: Any, x: np.ndarray, prior: Any, n: int, method: str,
                    rng: np.random.Generator) -> Sampled:
    """An mfinfer model's posterior by the config's sampler (``ModelLikelihood``: cached
    projection for a θ-independent manifold, per-θ projection and Jacobian otherwise)."""
    from mfinfer.inference import ModelLikelihood, sample_posterior
    from mfinfer.inference.potential import LogPosterior

    like = model if isinstance(model, NLELikelihood) else ModelLikelihood(model, x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sample_posterior(like, prior, n, method=method, rng=rng, progress=False)
    note = "; ".join(str(w.message)[:120] for w in caught if "sample_" in str(w.message))
    return Sampled(res.samples, res.log_prob, LogPosterior(like, prior), note)


class OffManifoldLikelihood:
    """A θ-dependent M-flow's likelihood plus the off-manifold distance it ignores:
    Σ_i [log p̂(x_i|θ) + log N_{D−d}(x_i − project_θ(x_i); 0, s² I)], θ (m, p) -> (m,).

    Not an M-flow density: the M-flow's manifold density times a Gaussian of fixed width s in the
    D − d normal directions (a noisy-manifold model); s² is the mean squared distance of held-out
    simulations from the learned manifold at their own θ, per normal direction."""

    def __init__(self, model: Any, x: np.ndarray, s2: float, chunk: int = 16_384) -> None:
        from mfinfer.inference import ModelLikelihood

        self.base, self.model, self.s2, self.chunk = ModelLikelihood(model, x), model, s2, chunk
        self.x = self.base.x
        self.k = model.data_dim - model.manifold_dim

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        rows = torch.as_tensor(np.atleast_2d(theta), dtype=self.x.dtype)
        n, out = len(self.x), []
        for t in rows.split(max(1, self.chunk // n)):
            x_rep, t_rep = self.x.repeat(len(t), 1), t.repeat_interleave(n, dim=0)
            r2 = ((self.model.project(x_rep, t_rep) - x_rep) ** 2).sum(1)
            lp = -0.5 * r2 / self.s2 - 0.5 * self.k * np.log(2 * np.pi * self.s2)
            out.append(lp.reshape(len(t), n).sum(1))
        return self.base(theta) + torch.cat(out).numpy().astype(float)


def nle_posterior(estimator: Any, prior: Any, x: np.ndarray, n: int, seed: int) -> Sampled:
    """sbi's default posterior of a trained NLE: ``build_posterior()`` (MCMC,
    slice_np_vectorized, 20 chains) and ``sample((n,), x=x_obs)`` with x_obs (n_events, D)."""
    from sbi.inference import NLE as SbiNLE

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # sbi's slice sampler draws from numpy's global generator
    post = SbiNLE(sbi_prior(prior), show_progress_bars=False).build_posterior(estimator)
    xt = torch.as_tensor(x, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = post.sample((n,), x=xt, show_progress_bars=False)
        lp = post.potential(s, x=xt)

    def fn(theta: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = torch.as_tensor(np.atleast_2d(theta), dtype=torch.float32)
            return post.potential(t, x=xt).numpy().astype(float)

    return Sampled(s.numpy().astype(float), lp.numpy().astype(float), fn)


# ------------------------------------------------------------------ summaries
def coverage(ranks: np.ndarray, levels: Iterable[float]) -> list[float]:
    """Fraction of observations whose θ* lies inside the level-α region, for each α: a θ* with
    HPD rank r (the share of posterior samples with a higher log posterior) is inside iff r < α;
    a marginal quantile position q is inside the central interval iff |q − ½| < α / 2 (pass
    ``2 |q − ½|``)."""
    ranks = np.asarray(ranks, dtype=float)
    return [float(np.mean(ranks < a)) for a in levels]


def true_ranks(s: Sampled, theta_true: np.ndarray) -> dict[str, Any]:
    """HPD rank of θ* and its marginal quantile positions among the samples."""
    lp_true = float(s.log_post_fn(theta_true[None])[0])
    return {"hpd": float(np.mean(s.log_post > lp_true)),
            "marginal": np.mean(s.samples < theta_true, axis=0).tolist()}


def sample_summary(samples: np.ndarray, theta_true: np.ndarray | None) -> dict[str, Any]:
    """Mean, std, quantiles (2.5, 16, 50, 84, 97.5 %) and, given θ*, the bias of the samples."""
    out = {"mean": samples.mean(0).tolist(), "std": samples.std(0, ddof=1).tolist(),
           "q": np.quantile(samples, [0.025, 0.16, 0.5, 0.84, 0.975], axis=0).tolist()}
    if theta_true is not None:
        out["bias"] = (samples.mean(0) - theta_true).tolist()
    return out


def calibration_summary(infos: list[dict], bounds: tuple[np.ndarray, np.ndarray],
                        levels: tuple[float, ...]) -> dict[str, Any]:
    """Coverage of the HPD regions and marginal central intervals, the HPD ranks, the mean std
    relative to the prior box and the mean posterior wall time of calibration posteriors."""
    low, high = bounds
    hpd = np.array([i["hpd"] for i in infos])
    marg = np.array([i["marginal"] for i in infos])  # (n_obs, p)
    std = np.array([i["std"] for i in infos]) / (high - low)
    return {"hpd_coverage": coverage(hpd, levels),
            "marginal_coverage": [coverage(2 * np.abs(marg[:, j] - 0.5), levels)
                                  for j in range(marg.shape[1])],
            "hpd_ranks": hpd.tolist(),
            "relative_width": std.mean(0).tolist(),
            "wall_s": float(np.mean([i["wall_s"] for i in infos]))}


def nn_distance(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point (n, D) to its nearest reference point (m, D), (n,)."""
    from scipy.spatial import cKDTree

    return cKDTree(reference).query(points, k=1)[0]
