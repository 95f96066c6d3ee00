"""Calibration plots: HPD coverage against credibility with binomial bands (matplotlib), and sbi's
rank histograms (``sbc_rank_plot``) and TARP curves (``plot_tarp``); every file written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfinfer.calibration.ranks import binomial_band
from mfinfer.files import atomic_write

__all__ = ["coverage_plot", "rank_plot", "tarp_plot"]

#: The probability mass of the bands drawn around the diagonal, widest first.
BAND_MASSES = (0.99, 0.95, 0.68)


def _save(fig: Any, path: Path, dpi: int = 120) -> Path:
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def coverage_plot(levels: Sequence[float], coverage: Mapping[str, np.ndarray], n: int,
                  path: str | Path, title: str | None = None) -> Path:
    """Empirical coverage (one line per model) against credibility level, over the bands where a
    calibrated posterior's coverage over ``n`` observations falls with 68, 95 and 99 % probability.

    Arguments:
        levels: credibility levels (k,).
        coverage: model name -> empirical coverage (k,).
        n: number of observations.
        path: the PNG file.
        title: the figure title.
    """
    import matplotlib.pyplot as plt

    grid = np.linspace(0.0, 1.0, 201)[1:-1]
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for mass, shade in zip(BAND_MASSES, (0.12, 0.2, 0.3), strict=True):
        low, high = binomial_band(n, grid, mass)
        ax.fill_between(grid, low, high, color="grey", alpha=shade, lw=0,
                        label=f"{mass:.0%} binomial band (n = {n})")
    ax.plot([0, 1], [0, 1], color="black", ls="--", lw=1, label="calibrated")
    for name, values in coverage.items():
        ax.plot(levels, values, marker="o", ms=3, label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="credibility level of the HPD region",
           ylabel="empirical coverage", title=title or "")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, Path(path))


def rank_plot(ranks: np.ndarray, num_samples: int, labels: Sequence[str], path: str | Path,
              name: str, title: str | None = None) -> Path:
    """sbi's ``sbc_rank_plot`` histograms of one model's ranks (n, k), one panel per label, with
    the band expected under uniformity (``n // 10`` bins, 2 to 20)."""
    from sbi.analysis import sbc_rank_plot

    n = len(ranks)
    fig, _ = sbc_rank_plot(np.asarray(ranks, dtype=float), num_samples, plot_type="hist",
                           num_bins=int(np.clip(n // 10, 2, 20)), parameter_labels=list(labels),
                           ranks_labels=[name])
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))


def tarp_plot(ecp: np.ndarray, alpha: np.ndarray, path: str | Path, title: str | None = None) -> Path:
    """sbi's ``plot_tarp``: TARP expected coverage against credibility."""
    import torch
    from sbi.analysis import plot_tarp

    fig, _ = plot_tarp(torch.as_tensor(ecp), torch.as_tensor(alpha), title=title)
    return _save(fig, Path(path))
