"""The evaluate stage: metrics, their registry, and reports from run directories.

- :mod:`~mfinfer.evaluation.metrics`: the metric functions (MMD², C2ST, KDE log p̂(θ*), bias and
  width, manifold distance, reconstruction error), on arrays.
- :mod:`~mfinfer.evaluation.registry`: name -> :class:`Metric` (function, what it needs, how it
  aggregates over true points and seeds, column title, base measure of densities); ``compute``.
- :mod:`~mfinfer.evaluation.report`: collect ``seed_*/metrics.json`` and ``timings.json``,
  ``summarize`` (medians over seeds), Markdown tables.
"""

from mfinfer.evaluation.metrics import (
    bias_and_width,
    c2st,
    log_prob_at_truth,
    manifold_distance,
    median_distance,
    mmd2,
    reconstruction_error,
)
from mfinfer.evaluation.registry import METRICS, Metric, compute, metric, select
from mfinfer.evaluation.report import collect, seed_values, summarize, summary_table

__all__ = [
    "METRICS",
    "Metric",
    "bias_and_width",
    "c2st",
    "collect",
    "compute",
    "log_prob_at_truth",
    "manifold_distance",
    "median_distance",
    "metric",
    "mmd2",
    "reconstruction_error",
    "seed_values",
    "select",
    "summarize",
    "summary_table",
]
