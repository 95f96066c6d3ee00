"""The Lorenz analysis' figures: the unconditional experiment's learned manifold, corner plots
of every estimator's posterior at the true points, and the calibration curves."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from analyses.lorenz.estimators import coverage
from analyses.lorenz.settings import PARAMS, estimator_names, open_run, posterior_samples
from mfinfer.config import RunConfig


def figures(results: dict, cfgs: dict[str, RunConfig], uncond_root: Path, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mfinfer.plotting import corner_plot

    fig_data = uncond_root / "figure_data.npz"
    if fig_data.is_file():
        with np.load(fig_data) as f:
            data = dict(f)
        plot_unconditional(data, plt).savefig(out_dir / "unconditional_manifold.png", dpi=110)
        plt.close("all")
    for variant, cfg in cfgs.items():
        if variant not in results["variants"]:
            continue
        run = open_run(cfg)
        for k in range(len(cfg.observed.theta)):
            samples = {}
            for name in estimator_names(cfg):  # those sampled (the quick run has no NLE)
                with contextlib.suppress(FileNotFoundError):
                    samples[name] = posterior_samples(cfg, run, k, name)
            if samples:
                corner_plot(samples, out_dir / f"corner_{variant}_{k}.png",
                            truth=np.asarray(cfg.observed.theta[k]), labels=list(PARAMS),
                            n_events=cfg.observed.n_events)
    fig = plot_calibration(results, plt)
    if fig is not None:
        fig.savefig(out_dir / "calibration.png", dpi=110)
    plt.close("all")


def plot_unconditional(data: dict[str, np.ndarray], plt: Any) -> Any:
    """The attractor (simulator points) with the M-flow's decoded u-grid (where its density
    lives) and the models' samples: a 3-d view and two x–z projections."""
    fig = plt.figure(figsize=(14, 4.6))
    att = data["attractor"][:8000]
    grid = data.get("M-flow/grid_x")
    ax = fig.add_subplot(1, 3, 1, projection="3d")
    ax.scatter(*att.T, s=0.3, c="0.35", alpha=0.35, label="attractor (simulator)")
    if grid is not None:
        ax.plot_wireframe(grid[..., 0], grid[..., 1], grid[..., 2], rstride=2, cstride=2,
                          color="C3", linewidth=0.4, label="M-flow: decoded u-grid")
    ax.view_init(elev=25, azim=-55)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.legend(loc="upper left", fontsize=8)
    ax = fig.add_subplot(1, 3, 2)
    ax.scatter(att[:, 0], att[:, 2], s=0.3, c="0.35", alpha=0.35)
    if grid is not None:
        for line in (*grid[::2], *grid.transpose(1, 0, 2)[::2]):
            ax.plot(line[:, 0], line[:, 2], color="C3", lw=0.4)
    ax.set_title("x–z: attractor and decoded u-grid")
    ax.set_xlabel("x")
    ax.set_ylabel("z")
    ax = fig.add_subplot(1, 3, 3, sharex=ax, sharey=ax)
    ax.scatter(att[:, 0], att[:, 2], s=0.3, c="0.35", alpha=0.35, label="attractor")
    for name, color in (("AF", "C0"), ("M-flow", "C3")):
        s = data.get(f"{name}/samples")
        if s is not None:
            ax.scatter(s[:1500, 0], s[:1500, 2], s=0.6, c=color, alpha=0.5,
                       label=f"{name} samples")
    ax.set_xlabel("x")
    ax.legend(fontsize=8, markerscale=8)
    ax.set_title("x–z: model samples")
    fig.suptitle("Lorenz attractor at θ = (10, 28, 8/3) and the learned manifold (d = 2)")
    fig.tight_layout()
    return fig


def plot_calibration(results: dict, plt: Any) -> Any:
    """Expected coverage of the HPD regions against the nominal level, per variant/estimator."""
    variants = [(n, v["calibration"], v.get("ablation")) for n, v in results["variants"].items()
                if v.get("calibration")]
    if not variants:
        return None
    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants), 4.2), squeeze=False)
    levels = np.linspace(0, 1, 101)
    for ax, (variant, cal, ablation) in zip(axes[0], variants, strict=True):
        n = cal["n_obs"]
        band = 2 * np.sqrt(levels * (1 - levels) / n)
        ax.fill_between(levels, levels - band, levels + band, color="0.85", label="±2σ (binomial)")
        ax.plot(levels, levels, "k--", lw=0.8)
        for name, c in cal["estimators"].items():
            ax.plot(levels, coverage(c["hpd_ranks"], levels), label=name)
        if ablation and ablation.get("calibration"):
            ax.plot(levels, coverage(ablation["calibration"]["hpd_ranks"], levels), "--",
                    label="M-flow (conditional manifold) + off-manifold term")
        ax.set_title(f"{variant}: {n} observations × {cal['n_events']} events")
        ax.set_xlabel("credibility level of the HPD region")
        ax.set_ylabel("coverage")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

