"""Plots: corner plots of posterior samples (overlays of several sets, with the true θ*)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfinfer.files import atomic_write

__all__ = ["corner_plot"]


def corner_plot(
    posteriors: Mapping[str, Any],
    path: str | os.PathLike,
    truth: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
    *,
    colors: Sequence[str] | None = None,
    bins: int = 30,
    ranges: Sequence[tuple[float, float]] | None = None,
    smooth: float | None = 1.0,
    dpi: int = 120,
) -> Path:
    """Overlay the corner plots of several sample sets, one colour each, with a legend.

    Arguments:
        posteriors: Name -> samples (n_k, p) or anything with ``.samples`` (a ``Posterior``).
            Histograms are normalised, so different sample sizes compare fairly.
        path: Output image; written atomically.
        truth: True parameters (p,), drawn as black lines and markers.
        labels: Axis labels, length p.
        colors: One matplotlib colour per entry (default: the ``tab10`` cycle).
        bins: Histogram bins per axis.
        ranges: Axis ranges (p pairs); default: the union of the 0.5-99.5 % quantile ranges
            of all sets (and the truth).
        smooth: Gaussian smoothing of the 2-D histograms, in bins (``None``: off).
        dpi: Resolution of raster output.

    Returns:
        The written path.
    """
    import corner
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not posteriors:
        raise ValueError("posteriors: expected at least one name -> samples entry, got none")
    sets = {
        k: np.asarray(getattr(v, "samples", v), dtype=float)
        for k, v in posteriors.items()
    }
    sets = {k: (v[:, None] if v.ndim == 1 else v) for k, v in sets.items()}
    dims = {v.shape[1] for v in sets.values()}
    if len(dims) != 1:
        raise ValueError(
            f"posteriors: all sample sets need the same number of parameters, got "
            f"{ {k: v.shape for k, v in sets.items()} }"
        )
    p = dims.pop()
    if truth is not None:
        truth = np.asarray(truth, dtype=float).reshape(-1)
        if truth.shape != (p,):
            raise ValueError(f"truth: expected shape ({p},), got {truth.shape}")
    if labels is not None and len(labels) != p:
        raise ValueError(f"labels: expected {p} names, got {len(labels)}")
    if ranges is None:
        lo = np.min([np.quantile(v, 0.005, axis=0) for v in sets.values()], axis=0)
        hi = np.max([np.quantile(v, 0.995, axis=0) for v in sets.values()], axis=0)
        if truth is not None:
            lo, hi = np.minimum(lo, truth), np.maximum(hi, truth)
        pad = 0.05 * np.where(hi > lo, hi - lo, 1.0)
        ranges = list(zip((lo - pad).tolist(), (hi + pad).tolist(), strict=False))
    colors = list(colors) if colors is not None else [f"C{i % 10}" for i in range(len(sets))]
    if len(colors) < len(sets):
        raise ValueError(f"colors: need {len(sets)} colours, got {len(colors)}")

    fig = None
    for (_name, samples), color in zip(sets.items(), colors, strict=False):
        fig = corner.corner(
            samples,
            fig=fig,
            bins=bins,
            range=ranges,
            color=color,
            labels=labels,
            smooth=smooth if p > 1 else None,
            plot_datapoints=False,
            plot_density=False,
            fill_contours=False,
            levels=(0.393, 0.865),  # 1 and 2 sigma of a 2-D Gaussian
            hist_kwargs={"density": True, "color": color},
        )
    assert fig is not None  # sets is non-empty (checked above)
    for i in range(p):  # corner scales each diagonal to the first set; fit the tallest instead
        ax = fig.axes[i * (p + 1)]
        ax.relim()
        ax.autoscale(axis="y")
        ax.set_ylim(bottom=0)
    if truth is not None:
        if p == 1:  # corner's overplot helpers expect a grid of axes
            fig.axes[0].axvline(truth[0], color="k", linestyle="--", linewidth=1)
        else:
            corner.overplot_lines(fig, truth, color="k", linestyle="--", linewidth=1)
            corner.overplot_points(fig, truth[None, :], marker="s", color="k", markersize=4)
    handles = [Line2D([], [], color=c, label=k) for k, c in zip(sets, colors, strict=False)]
    if truth is not None:
        handles.append(Line2D([], [], color="k", linestyle="--", label="true θ*"))
    if p == 1:
        fig.axes[0].legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False
        )
    else:
        fig.legend(handles=handles, loc="upper right", frameon=False)

    path = Path(path)
    suffix = path.suffix.lstrip(".") or "png"
    try:
        atomic_write(
            path, lambda f: fig.savefig(f, format=suffix, dpi=dpi, bbox_inches="tight"), "wb"
        )
    finally:
        plt.close(fig)
    return path
