"""Calibration statistics: ranks of θ among posterior samples, HPD coverage, binomial bands, and
sbi's uniformity checks on the collected ranks.

For one observation (θ_j, X_j) and N posterior samples θ_s with log posteriors log p(θ_s|X_j):

- SBC rank of parameter i: #{s : θ_s,i < θ_j,i} ∈ [0, N] (sbi's ``run_sbc`` with
  ``reduce_fns="marginals"``; Talts et al., arXiv:1804.06788);
- HPD rank: #{s : log p(θ_s|X_j) < log p(θ_j|X_j)} (sbi's expected coverage, ``reduce_fns`` the
  log posterior; Deistler et al., arXiv:2210.04815). θ_j lies in the highest-posterior-density
  region of credibility c when the fraction of samples denser than it, ``1 - rank / N``, is < c;
- TARP value: the fraction of samples closer than θ_j to a reference point drawn from the prior,
  distances in units of the prior's width (sbi's ``run_tarp``; Lemos et al., arXiv:2302.03026).

A calibrated posterior makes every rank uniform, so the empirical coverage at level c is c up to
binomial noise over the observations.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["binomial_band", "coverage", "hpd_levels", "rank_statistics", "sbc_checks", "tarp_curve"]


def rank_statistics(samples: np.ndarray, log_probs: np.ndarray, theta: np.ndarray,
                    log_prob_theta: float, reference: np.ndarray, scale: np.ndarray) -> dict[str, Any]:
    """The rank statistics of one observation.

    Arguments:
        samples: posterior samples (N, p).
        log_probs: their (unnormalised) log posteriors (N,).
        theta: the true parameters (p,).
        log_prob_theta: the same log posterior at ``theta``.
        reference: the TARP reference point (p,).
        scale: widths (p,) that make the TARP distances dimensionless.

    Returns:
        ``{"ranks": [p ints], "hpd_rank": int, "tarp": float}``.
    """
    ranks = np.sum(samples < theta[None, :], axis=0)
    hpd_rank = int(np.sum(log_probs < log_prob_theta))
    dist_samples = np.linalg.norm((samples - reference) / scale, axis=1)
    dist_theta = float(np.linalg.norm((theta - reference) / scale))
    return {"ranks": [int(r) for r in ranks], "hpd_rank": hpd_rank,
            "tarp": float(np.mean(dist_samples < dist_theta))}


def hpd_levels(hpd_ranks: np.ndarray, num_samples: int | np.ndarray) -> np.ndarray:
    """The credibility of the smallest HPD region holding θ_j: ``1 - rank / N``, (n,) -> (n,)
    (N one number, or one per observation)."""
    return 1.0 - np.asarray(hpd_ranks, dtype=float) / num_samples


def coverage(hpd_ranks: np.ndarray, num_samples: int | np.ndarray,
             levels: Sequence[float]) -> np.ndarray:
    """Empirical coverage: the fraction of observations whose θ_j lies in the HPD region of each
    credibility level, (n,) ranks -> (len(levels),)."""
    inside = hpd_levels(hpd_ranks, num_samples)[:, None] < np.asarray(levels, dtype=float)[None, :]
    return inside.mean(axis=0)


def binomial_band(n: int, levels: Sequence[float] | np.ndarray,
                  mass: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The central ``mass`` interval of the empirical coverage of a calibrated posterior over
    ``n`` observations, Binomial(n, c) / n at each level c: ``(low, high)``, each (len(levels),)."""
    from scipy.stats import binom

    c = np.asarray(levels, dtype=float)
    tail = 0.5 * (1.0 - mass)
    return binom.ppf(tail, n, c) / n, binom.ppf(1.0 - tail, n, c) / n


def tarp_curve(values: np.ndarray, num_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """TARP's expected coverage probability: ``(ecp, alpha)``, ecp(α) = fraction of observations
    with TARP value <= α on the grid α = 0, 1/num_bins, ..., 1 (default ``n // 10`` bins, at least
    5, at most 50)."""
    n = len(values)
    bins = num_bins or int(np.clip(n // 10, 5, 50))
    alpha = np.linspace(0.0, 1.0, bins + 1)
    ecp = np.mean(np.asarray(values)[:, None] <= alpha[None, :], axis=0)
    return ecp, alpha


def sbc_checks(ranks: np.ndarray, num_samples: int, thetas: np.ndarray, dap: np.ndarray,
               tarp: np.ndarray, labels: Sequence[str], c2st: bool, seed: int) -> dict[str, Any]:
    """sbi's checks of the collected ranks (``check_sbc``; the KS test alone without ``c2st``) and
    of the TARP values (``check_tarp``), as JSON.

    Arguments:
        ranks: (n, k) ranks in [0, num_samples]: one column per label (the parameters, then the
            HPD rank).
        num_samples: N.
        thetas: the true parameters (n, p), prior samples.
        dap: one posterior sample per observation (n, p), the data-averaged posterior.
        tarp: TARP values (n,).
        labels: the k column names.
        c2st: also run the classifier two-sample tests (needs at least 10 observations).
        seed: seeds torch for sbi's uniform reference draws, so the result is reproducible.

    Returns:
        ``{"ks_pvalue": {label: p}, "c2st_ranks": {label: acc}, "c2st_dap": {param: acc},
        "tarp": {"atc": ..., "ks_pvalue": ...}, "notes": [...]}`` (c2st entries only with c2st).
    """
    import torch
    from sbi.diagnostics import check_sbc, check_tarp
    from sbi.diagnostics.sbc import check_uniformity_frequentist

    out: dict[str, Any] = {"notes": []}
    r = torch.as_tensor(np.asarray(ranks, dtype=np.float32))
    with warnings.catch_warnings(record=True) as caught, torch.random.fork_rng(devices=[]):
        warnings.simplefilter("always")
        torch.manual_seed(seed)
        if c2st and len(ranks) >= 10:
            res = check_sbc(r, torch.as_tensor(thetas, dtype=torch.float32),
                            torch.as_tensor(dap, dtype=torch.float32), num_samples)
            out["c2st_ranks"] = dict(zip(labels, res["c2st_ranks"].tolist(), strict=True))
            out["c2st_dap"] = dict(zip(labels, res["c2st_dap"].tolist(), strict=False))
            ks = res["ks_pvals"]
        else:
            if c2st:
                out["notes"].append(f"C2ST skipped: {len(ranks)} observations, fewer than 10")
            ks = check_uniformity_frequentist(r, num_samples)
        ecp, alpha = tarp_curve(tarp)
        atc, tarp_ks = check_tarp(torch.as_tensor(ecp), torch.as_tensor(alpha))
    out["ks_pvalue"] = dict(zip(labels, ks.tolist(), strict=True))
    out["tarp"] = {"atc": float(atc), "ks_pvalue": float(tarp_ks)}
    out["notes"] += sorted({" ".join(str(w.message).split()) for w in caught
                            if issubclass(w.category, UserWarning)})
    return out
