"""Plots: corner plots of posterior samples (overlays of several sets, with the true θ*).

The figures say what they show: parameter names on the axes (Greek letter names such as ``sigma``
drawn as σ), a title with θ* and the number of events, the exact posterior named as such (the
pipeline's ``truth`` set) apart from the true θ* (dashed black lines), and the contour levels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfinfer.files import atomic_write

__all__ = ["CONTOUR_LEVELS", "EXACT", "corner_plot", "display_label", "plot_title"]

#: Probability mass inside the 2-D contours (highest-density regions of the smoothed histograms).
CONTOUR_LEVELS = (0.68, 0.95)
#: Legend name of the posterior from the simulator's exact likelihood (the pipeline's ``truth``).
EXACT = "exact posterior"
_GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "kappa": "κ",
          "lambda": "λ", "mu": "μ", "nu": "ν", "rho": "ρ", "sigma": "σ", "tau": "τ", "theta": "θ",
          "phi": "φ", "omega": "ω"}


def display_label(name: str) -> str:
    """A parameter's axis label: a Greek letter's name becomes the letter (``"sigma"`` -> σ).

    >>> [display_label(n) for n in ("sigma", "theta", "a2")]
    ['σ', 'θ', 'a2']
    """
    return _GREEK.get(name, name)


def plot_title(truth: np.ndarray | None, labels: Sequence[str] | None,
               n_events: int | None) -> str | None:
    """``θ* = (a2, a3) = (1, 0), 50 events``, or None when neither θ* nor the count is known.

    >>> plot_title(np.array([1.0, 0.0]), ["a2", "a3"], 50)
    'θ* = (a2, a3) = (1, 0), 50 events'
    >>> plot_title(np.array([0.25]), ["θ"], None)
    'θ* = 0.25'
    """
    parts = []
    if truth is not None:
        values = ", ".join(f"{v:.4g}" for v in truth)
        if len(truth) == 1:
            parts.append(f"θ* = {values}")
        else:
            names = f"({', '.join(labels)}) = " if labels else ""
            parts.append(f"θ* = {names}({values})")
    if n_events is not None:
        parts.append(f"{n_events} event{'s' * (n_events != 1)}")
    return ", ".join(parts) or None


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
    n_events: int | None = None,
    title: str | None = None,
) -> Path:
    """Overlay the corner plots of several sample sets, one colour each, with a legend.

    Arguments:
        posteriors: Name -> samples (n_k, p) or anything with ``.samples`` (a ``Posterior``).
            Histograms are normalised, so different sample sizes compare fairly. The name
            ``truth`` (the pipeline's exact-likelihood posterior) is shown as "exact posterior".
        path: Output image; written atomically.
        truth: True parameters (p,), drawn as black lines and markers.
        labels: Parameter names, length p (a simulator's ``param_names``); Greek letter names are
            drawn as letters (:func:`display_label`).
        colors: One matplotlib colour per entry (default: the ``tab10`` cycle).
        bins: Histogram bins per axis.
        ranges: Axis ranges (p pairs); default: the union of the 0.5-99.5 % quantile ranges
            of all sets (and the truth).
        smooth: Gaussian smoothing of the 2-D histograms, in bins (``None``: off).
        dpi: Resolution of raster output.
        n_events: Observed events behind the posteriors, for the title.
        title: The figure's title (default: :func:`plot_title` of θ*, the labels and
            ``n_events``); the contour levels are always stated below it.

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
    labels = [display_label(str(n)) for n in labels] if labels is not None else None
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
            levels=CONTOUR_LEVELS,
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
    handles = [Line2D([], [], color=c, label=EXACT if k == "truth" else k)
               for k, c in zip(sets, colors, strict=False)]
    if truth is not None:
        handles.append(Line2D([], [], color="k", linestyle="--", label="true θ*"))
    if p == 1:
        fig.axes[0].legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False
        )
    else:
        # in the empty top-right cell of the grid, below the title
        fig.axes[p - 1].legend(handles=handles, loc="upper right", bbox_to_anchor=(1.05, 1.05),
                               frameon=False, fontsize="small" if p == 2 else None)
    heading = title if title is not None else plot_title(truth, labels, n_events)
    lines = [heading] if heading else []
    if p > 1:
        lines.append("contours: " + ", ".join(f"{round(100 * lv)} %" for lv in CONTOUR_LEVELS)
                     + " of each posterior's mass")
    if lines:
        fig.suptitle("\n".join(lines), fontsize=10, y=1.0, va="bottom")

    path = Path(path)
    suffix = path.suffix.lstrip(".") or "png"
    try:
        atomic_write(
            path, lambda f: fig.savefig(f, format=suffix, dpi=dpi, bbox_inches="tight"), "wb"
        )
    finally:
        plt.close(fig)
    return path
