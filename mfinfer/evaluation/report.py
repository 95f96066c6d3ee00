"""Reports from run directories: collect ``metrics.json`` and ``timings.json``, summarise over
seeds, write Markdown tables.

A run directory is ``<output_dir>/<name>/seed_<seed>/`` (see :mod:`mfinfer.pipeline`). Values are
aggregated as the registry says (:mod:`mfinfer.evaluation.registry`): over the true points within
a seed first (mean), then over seeds (median). Densities with different base measures get separate,
labelled columns, decided per model by ``MODELS[kind].has_manifold``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mfinfer.evaluation.registry import METRICS, Metric, select
from mfinfer.files import atomic_write, atomic_write_json, read_json

__all__ = ["KEPT_MARKER", "METRICS_FILE", "TIMINGS_FILE", "TRUTH", "base_measures", "collect",
           "read_timings", "record_time", "seed_of", "seed_values", "stage_seconds", "summarize",
           "summary_table", "write_results"]

#: In a ``results.md``, everything from this line on is written by hand and kept by
#: :func:`write_results` when the generated tables above it are rewritten.
KEPT_MARKER = "<!-- Hand-written sections below: kept when run.py rewrites the tables above. -->"

METRICS_FILE = "metrics.json"
TIMINGS_FILE = "timings.json"
#: the name of the exact-likelihood posterior and model row.
TRUTH = "truth"
DASH = "–"

Values = dict[str, dict[str, dict[int, float]]]


def seed_of(directory: str | Path) -> int:
    """The seed of a ``seed_<seed>`` directory (-1 if the name holds none)."""
    try:
        return int(Path(directory).name.removeprefix("seed_"))
    except ValueError:
        return -1


def collect(run_root: str | Path, *, command: str | None = None) -> dict[int, dict]:
    """``{seed: metrics.json}`` of every finished seed under ``run_root`` (``<output_dir>/<name>``),
    by seed.

    Raises:
        FileNotFoundError: when no ``seed_*/metrics.json`` exists (``command``: how to make them).
    """
    run_root = Path(run_root)
    files = sorted(run_root.glob(f"seed_*/{METRICS_FILE}"), key=lambda p: seed_of(p.parent))
    if not files:
        raise FileNotFoundError(f"{run_root}: no seed_*/{METRICS_FILE}; run the experiment first"
                                + (f" ({command})" if command else ""))
    return {seed_of(p.parent): read_json(p) for p in files}


def seed_values(results: Mapping[int, dict], metrics: Iterable[Metric] | None = None) -> Values:
    """One value per seed of each metric that is aggregated over seeds:
    ``{model: {metric: {seed: value}}}``.

    Model metrics are taken as they are; per-point metrics are aggregated over the true points of a
    seed (``within_seed``). Models appear in the order first met, metrics in registry order.

    Arguments:
        results: ``{seed: metrics.json}``, e.g. from :func:`collect`.
        metrics: which metrics (default: every one with an ``over_seeds`` aggregate).
    """
    chosen = list(select() if metrics is None else metrics)
    per_model = [mt for mt in chosen if not mt.per_point]
    per_point = [mt for mt in chosen if mt.per_point]
    out: Values = {}
    for seed, res in results.items():
        for name, vals in res.get("models", {}).items():
            for mt in per_model:
                if mt.name in vals:
                    out.setdefault(name, {}).setdefault(mt.name, {})[seed] = float(vals[mt.name])
        points = res.get("points", [])
        names = dict.fromkeys(n for p in points for n in p["models"])
        for name in names:
            for mt in per_point:
                vals = [p["models"][name][mt.name] for p in points
                        if mt.name in p["models"].get(name, {})]
                if vals:
                    value = mt.aggregate_points(vals)
                    out.setdefault(name, {}).setdefault(mt.name, {})[seed] = value
    return out


def summarize(results: list[dict]) -> dict:
    """Aggregates over seeds (medians) of every summary metric: ``{model: {metric: value,
    "n_seeds": n}}`` (per-point metrics aggregated over the true points within a seed first).

    Arguments:
        results: one ``metrics.json`` per seed.
    """
    if not results:
        return {}
    values = seed_values(dict(enumerate(results)), select(summary=True))
    return {name: {k: METRICS[k].aggregate_seeds(list(v.values())) for k, v in cols.items()}
            | {"n_seeds": len(results)} for name, cols in values.items()}


def base_measures(models: Iterable[Any]) -> dict[str, str]:
    """``{model name: "manifold" | "ambient"}`` for model configs (``.name``, ``.kind``), from
    ``MODELS[kind].has_manifold``; the truth (the simulator's exact likelihood) is on the
    manifold."""
    from mfinfer.models import MODELS

    out = {mc.name: "manifold" if MODELS[mc.kind].has_manifold else "ambient" for mc in models}
    return out | {TRUTH: "manifold"}


def _columns(rows: Mapping[str, Mapping[str, Any]], metrics: list[Metric],
             measures: Mapping[str, str]) -> list[tuple[Metric, str | None]]:
    """One column per metric; a density on the models' own measures gets one per measure present."""
    cols: list[tuple[Metric, str | None]] = []
    for mt in metrics:
        if mt.base_measure != "model":
            cols.append((mt, None))
            continue
        present = dict.fromkeys(measures.get(n, "unknown") for n, v in rows.items() if mt.name in v)
        cols += [(mt, ms) for ms in sorted(present, key=["manifold", "ambient", "unknown"].index)]
    return cols


def summary_table(summary: Mapping[str, Mapping[str, float]], measures: Mapping[str, str],
                  *, unit: str | None = None) -> str:
    """A Markdown table of :func:`summarize`'s values, one row per model.

    Densities with respect to each model's own measure (``test_log_likelihood``) are split into
    labelled columns, one per measure (e.g. "on the manifold" and "in R^D (AF)"): a log-density
    in D dimensions cannot be compared with one on a lower-dimensional manifold.

    Arguments:
        summary: ``{model: {metric: value}}``.
        measures: ``{model: "manifold" | "ambient"}``, e.g. from :func:`base_measures`.
        unit: the unit of x, appended to the titles of distances.
    """
    cols = _columns(summary, select(summary=True), measures)
    lines = ["| model | " + " | ".join(mt.label(measure=ms, unit=unit) for mt, ms in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for name, vals in summary.items():
        own = measures.get(name, "unknown")
        cells = [f"{vals[mt.name]:.{mt.digits}f}" if mt.name in vals and ms in (None, own) else DASH
                 for mt, ms in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------ timings
def read_timings(run_dir: str | Path) -> dict:
    """A seed's ``timings.json`` (``{}`` if there is none); see :func:`record_time`."""
    path = Path(run_dir) / TIMINGS_FILE
    return read_json(path) if path.is_file() else {}


def record_time(run_dir: str | Path, seconds: float, stage: str, *keys: str,
                add: bool = False) -> None:
    """Record wall seconds in a seed's ``timings.json``, merged with what earlier passes recorded.

    The file holds ``{"simulate": s, "train": {model: s}, "infer": {posterior: {point: s}},
    "evaluate": s}``. An item's value is replaced when it is redone (``add``: added to instead,
    for a stage resumed midway).
    """
    timings = read_timings(run_dir)
    node, path = timings, (stage, *keys)
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = (node.get(path[-1], 0.0) if add else 0.0) + float(seconds)
    atomic_write_json(timings, Path(run_dir) / TIMINGS_FILE)


def stage_seconds(timings: Mapping[str, Any]) -> dict[str, float]:
    """Flat seconds per stage item: ``simulate``, ``train <model>``, ``infer <posterior>`` (summed
    over the true points) and ``evaluate``."""
    out: dict[str, float] = {}
    if "simulate" in timings:
        out["simulate"] = float(timings["simulate"])
    for name, s in timings.get("train", {}).items():
        out[f"train {name}"] = float(s)
    for name, points in timings.get("infer", {}).items():
        out[f"infer {name}"] = float(sum(points.values()))
    if "evaluate" in timings:
        out["evaluate"] = float(timings["evaluate"])
    return out


def write_results(path: str | Path, generated: str) -> str:
    """Write ``generated`` (Markdown tables) to ``path`` atomically, keeping the hand-written tail
    of the existing file (from :data:`KEPT_MARKER` on); returns the whole new text."""
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    tail = old[old.index(KEPT_MARKER):] if KEPT_MARKER in old else ""
    text = generated.rstrip("\n") + "\n\n" + tail if tail else generated
    atomic_write(path, lambda f: f.write(text), mode="w")
    return text
