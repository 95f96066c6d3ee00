"""The campaign's results from its records: ``coverage.json``, ``summary.json`` and the plots.

``coverage.json`` is ``{model: {level: empirical coverage}}`` with levels written as in the config
(``"0.05"``); ``summary.json`` adds the binomial bands, sbi's rank checks, TARP, convergence
counts and this pass's timing. Both are rebuilt from the records on every pass, so they always
describe the current config, whatever earlier passes computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mfinfer.calibration.config import Campaign
from mfinfer.calibration.observation import ObservationTask, Source
from mfinfer.calibration.plots import coverage_plot, rank_plot, tarp_plot
from mfinfer.calibration.ranks import binomial_band, coverage, sbc_checks, tarp_curve
from mfinfer.errors import ConfigError
from mfinfer.files import atomic_write_json

__all__ = ["COVERAGE_FILE", "SUMMARY_FILE", "Records", "level_name", "read_records", "write_report"]

COVERAGE_FILE = "coverage.json"
SUMMARY_FILE = "summary.json"
HPD_LABEL = "log posterior (HPD)"


def level_name(level: float) -> str:
    """A level as a ``coverage.json`` key: ``0.05`` -> ``"0.05"``."""
    return f"{level:g}"


@dataclass(frozen=True)
class Records:
    """One model's records, stacked over the observations j = 0..n-1.

    Attributes:
        theta: true parameters (n, p).
        ranks: SBC ranks (n, p).
        hpd_rank: HPD ranks (n,).
        num_samples: posterior samples behind each rank (n,).
        tarp: TARP values (n,).
        dap: one posterior sample per observation (n, p).
        converged: the sampler's convergence flag (n,) (True where it reports none).
    """

    theta: np.ndarray
    ranks: np.ndarray
    hpd_rank: np.ndarray
    num_samples: np.ndarray
    tarp: np.ndarray
    dap: np.ndarray
    converged: np.ndarray


def read_records(task: ObservationTask, source: Source, n: int) -> Records:
    """The current records of ``source`` for observations 0..n-1.

    Raises:
        ConfigError: a record is missing, edited (its ``sha256`` does not match) or was computed
            from other inputs.
    """
    rows = []
    for j in range(n):
        record = task.read(source, j)
        if record is None:
            raise ConfigError(f"{task.path(source.name, j)}: missing, changed after it was written, or "
                              "computed from other inputs than the config now gives; run `mfinfer "
                              "calibrate` again to compute it")
        rows.append(record)
    return Records(
        theta=np.array([r["theta"] for r in rows], dtype=float),
        ranks=np.array([r["ranks"] for r in rows], dtype=float),
        hpd_rank=np.array([r["hpd_rank"] for r in rows], dtype=float),
        num_samples=np.array([r["num_samples"] for r in rows], dtype=float),
        tarp=np.array([r["tarp"] for r in rows], dtype=float),
        dap=np.array([r["dap_sample"] for r in rows], dtype=float),
        converged=np.array([r["converged"] is not False for r in rows]))


def _labels(campaign: Campaign, p: int) -> list[str]:
    from mfinfer.registry import SimulatorSpec

    names = getattr(SimulatorSpec.from_dict(campaign.simulator).build(), "param_names", None)
    return [str(v) for v in names] if names and len(names) == p else [f"theta_{i}" for i in range(p)]


def _file_name(name: str) -> str:
    return name.replace("/", "-").replace("\\", "-").replace(" ", "_")


def write_report(campaign: Campaign, task: ObservationTask, sources: Sequence[Source],
                 run: dict[str, Any], plots: bool = True) -> dict[str, Any]:
    """Write ``coverage.json``, ``summary.json`` and (with ``plots``) ``coverage.png``,
    ``ranks_<model>.png`` and ``tarp_<model>.png`` into the campaign directory.

    Arguments:
        campaign: the campaign.
        task: its observation settings (where the records are, their keys).
        sources: the posteriors to report, in order.
        run: facts about this pass (``computed``, ``reused``, ``workers``, ``seconds``) for
            ``summary.json``.
        plots: also draw the plots.

    Returns:
        The content of ``summary.json``.
    """
    cal = campaign.calibration
    n, levels = cal.n_observations, list(cal.levels)
    directory = campaign.directory
    low, high = binomial_band(n, levels)
    covered: dict[str, np.ndarray] = {}
    models: dict[str, Any] = {}
    for source in sources:
        rec = read_records(task, source, n)
        labels = _labels(campaign, rec.theta.shape[1])
        covered[source.name] = coverage(rec.hpd_rank, rec.num_samples, levels)
        num_samples = int(rec.num_samples.min())
        ranks = np.column_stack([rec.ranks, rec.hpd_rank])
        models[source.name] = {
            "coverage": {level_name(c): float(v) for c, v in zip(levels, covered[source.name],
                                                                  strict=True)},
            "converged": int(rec.converged.sum()),
            **sbc_checks(ranks, num_samples, rec.theta, rec.dap, rec.tarp, [*labels, HPD_LABEL],
                         cal.c2st, campaign.seed),
        }
        if plots:
            stem = _file_name(source.name)
            rank_plot(ranks, num_samples, [*labels, HPD_LABEL], directory / f"ranks_{stem}.png",
                      source.name, f"{source.name}: ranks of θ among {num_samples} posterior "
                      f"samples, n = {n}")
            tarp_plot(*tarp_curve(rec.tarp), directory / f"tarp_{stem}.png", f"{source.name}: TARP")
    atomic_write_json({name: m["coverage"] for name, m in models.items()}, directory / COVERAGE_FILE)
    summary = {
        "name": campaign.name, "seed": campaign.seed, "simulator": campaign.simulator,
        "n_observations": n, "n_events": cal.n_events, "num_samples": cal.num_samples,
        "method": cal.method, "sampler": cal.sampler, "levels": levels,
        "binomial_band_95": {level_name(c): [float(a), float(b)]
                             for c, a, b in zip(levels, low, high, strict=True)},
        "models": models, "run": run,
    }
    atomic_write_json(summary, directory / SUMMARY_FILE)
    if plots:
        coverage_plot(levels, covered, n, directory / "coverage.png",
                      f"{campaign.name}: {n} observations × {cal.n_events} events")
    return summary
