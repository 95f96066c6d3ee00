"""H -> ZZ* -> 2e2mu: AF vs M-flow posteriors for (a2, a3) against the exact posterior.

Usage (from the repository root; ``python analyses/higgs4l/run.py ...`` does the same)::

    python -m analyses.higgs4l.run [--config analyses/higgs4l/config.yaml] [--threads 1]
    python -m analyses.higgs4l.run --table-only   # rebuild results.md from the run directory
    python -m analyses.higgs4l.run --quick        # analyses/higgs4l/quick.yaml (runs/higgs4l-quick,
                                                  # a few minutes), its table in that directory

The config is run through ``mfinfer.pipeline.run_all`` (simulate -> train -> infer -> evaluate;
stages already done are skipped, so an interrupted run resumes). Then ``results.md`` is written next
to this script from ``<output_dir>/<name>/seed_*/metrics.json``: one table per true point (C2ST,
MMD², log p̂(θ*) of every model, and the truth's log p̂(θ*)), the per-model manifold metrics, the
target check (the M-flow's C2ST below the AF's, with a posterior that agrees with the exact one, on at
least 2 of the 3 points), the stage wall
times from each seed's ``timings.json`` and the command that produced it. ``--table-only`` writes
nothing unless every configured seed has finished: it names the missing runs and the commands that
make them (exit status 2). The quick run never writes next to this file. Metrics, their titles and
aggregates come from ``mfinfer.evaluation``. The table logic is in :func:`results_table`, which the
notebook reuses.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from mfinfer.evaluation import report
from mfinfer.evaluation.registry import Metric, metric, resolve_options, select
from mfinfer.files import atomic_write_json

HERE = Path(__file__).resolve().parent

__all__ = ["collect", "main", "results_table", "stage_times", "target_check"]

DEFAULT_CONFIG = "analyses/higgs4l/config.yaml"
#: ``--quick``: the same analysis reduced to a few minutes (its own run directory).
QUICK_CONFIG = "analyses/higgs4l/quick.yaml"
COMMAND = "python -m analyses.higgs4l.run"
#: Model names compared by the target (``config.yaml``): the baseline and the M-flow(s).
BASELINE = "AF"
MFLOW_PREFIX = "M-flow"
#: The target: the M-flow's C2ST below the AF's on at least this many of the true points, each
#: counted only where the M-flow's posterior agrees with the exact one: C2ST <= AGREE_C2ST and its
#: mean within AGREE_SIGMA exact-posterior standard deviations of the exact mean in every parameter.
TARGET_POINTS = 2
AGREE_C2ST = 0.65
AGREE_SIGMA = 0.5
DASH = "–"

UNIT = "GeV"  # of the observables: distances are in GeV
#: the criterion of the target: C2ST against the exact posterior.
CRITERION = metric("c2st")
#: per true point: the posterior metrics (vs the truth and vs θ*), from the registry; the target's
#: criterion first.
POSTERIOR_COLS: list[Metric] = sorted(
    select("posterior_vs_truth", "posterior_vs_theta", summary=True),
    key=lambda mt: mt is not CRITERION)
#: per model: its manifold metrics on test and observed events (densities are left out).
MODEL_COLS: list[Metric] = select("model", "model_on_observed", density=False)


def collect(run_root: str | Path) -> dict[int, dict]:
    """``{seed: metrics.json}`` for every finished seed under ``run_root``.

    Raises:
        FileNotFoundError: when no ``seed_*/metrics.json`` exists.
    """
    return report.collect(run_root, command=COMMAND)


def _fmt(values: list[float], mt: Metric) -> str:
    """One value, or the aggregate over seeds (median) with the (min–max)."""
    digits = mt.digits
    vals = [v for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return DASH if not values else "−∞" if all(v == -np.inf for v in values) else DASH
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{mt.aggregate_seeds(vals):.{digits}f} ({min(vals):.{digits}f}–{max(vals):.{digits}f})"


def _model_names(results: dict[int, dict]) -> list[str]:
    names: list[str] = []
    for res in results.values():
        for p in res["points"]:
            for name in p["models"]:
                if name not in names:
                    names.append(name)
    return names


def _shift(model: dict, truth: dict) -> float | None:
    """max over parameters of |model mean − exact mean| / exact std (None when not recorded)."""
    bias, exact, std = model.get("bias"), truth.get("bias"), truth.get("std")
    if bias is None or exact is None or std is None:
        return None
    return float(max(abs(b - e) / s for b, e, s in zip(bias, exact, std, strict=True)))


def target_check(results: dict[int, dict]) -> tuple[bool, list[str]]:
    """Is the M-flow's posterior closer to the truth than the AF's (lower C2ST) on at least
    ``TARGET_POINTS`` true points, where it also agrees with the exact posterior (C2ST ≤
    ``AGREE_C2ST``, mean within ``AGREE_SIGMA`` σ)? A lower C2ST than a poor baseline alone is no
    success. With several seeds a point uses the medians over seeds.

    Returns:
        ``(met, lines)``: the verdict (for the first M-flow in the config that meets it, or
        False) and one line per M-flow variant.
    """
    names = [n for n in _model_names(results) if n.startswith((MFLOW_PREFIX, "Me-flow"))]
    n_points = min(len(r["points"]) for r in results.values())
    key = CRITERION.name
    lines, met = [], False
    for name in names:
        wins, detail = 0, []
        for k in range(n_points):
            af = [r["points"][k]["models"].get(BASELINE, {}).get(key) for r in results.values()]
            mf = [r["points"][k]["models"].get(name, {}).get(key) for r in results.values()]
            if None in af or None in mf:
                detail.append(f"point {k}: no C2ST")
                continue
            a, m = CRITERION.aggregate_seeds(af), CRITERION.aggregate_seeds(mf)
            shifts = [_shift(r["points"][k]["models"].get(name, {}),
                             r["points"][k]["models"].get(report.TRUTH, {})) for r in results.values()]
            shift = None if None in shifts else float(np.median([v for v in shifts if v is not None]))
            agree = m <= AGREE_C2ST and shift is not None and shift <= AGREE_SIGMA
            wins += m < a and agree
            where = "?" if shift is None else f"{shift:.1f}"
            detail.append(f"point {k}: {m:.3f} {'<' if m < a else '≥'} {a:.3f}, mean {where} σ from "
                          f"the exact one, {'agrees' if agree else 'does not agree'}")
        ok = wins >= TARGET_POINTS
        counted = name.startswith(MFLOW_PREFIX)
        met |= ok and counted
        note = "" if counted else " (Me-flow: shown, the target is about the M-flow)"
        lines.append(f"- {name}: lower C2ST than the {BASELINE} and agreeing with the exact posterior "
                     f"on {wins} of {n_points} points "
                     f"({'; '.join(detail)}) → {'meets' if ok else 'does not meet'} the target"
                     f"{note}.")
    return met, lines


def stage_times(run_dir: str | Path) -> dict[str, float]:
    """Seconds per stage item of one seed, from the ``timings.json`` the pipeline writes:
    ``simulate``, ``train <model>``, ``infer <posterior>`` (sampling, summed over the true points) and
    ``evaluate`` (see :func:`mfinfer.evaluation.report.stage_seconds`)."""
    return report.stage_seconds(report.read_timings(run_dir))


def _convergence(run_root: Path, seeds: list[int]) -> list[str]:
    """One line per posterior whose sampler did not converge (``metadata["sampler"]``; emcee: a
    chain stopped at ``max_steps`` before 50 autocorrelation times)."""
    out = []
    for s in seeds:
        for path in sorted((run_root / f"seed_{s}" / "posteriors").glob("point_*/*.json")):
            record = json.loads(path.read_text())
            mc = record.get("mcmc") or {}
            sampler = record.get("metadata", {}).get("sampler", {})
            if mc and not mc.get("converged", True):
                tau = max(mc.get("tau", [float("nan")]))
                out.append(f"- seed {s}, {path.parent.name}, {path.stem}: stopped at max_steps "
                           f"({mc.get('n_steps')} steps = {mc.get('n_steps', 0) / tau:.0f} τ, τ = "
                           f"{tau:.0f}; 50 τ wanted): its samples may misweight the modes.")
            elif not sampler.get("converged", True):
                out.append(f"- seed {s}, {path.parent.name}, {path.stem}: the {sampler.get('method')} "
                           "sampler did not converge (see its record).")
    return out or ["- every posterior's sampler converged (emcee: ≥ 50 autocorrelation times)."]


def _sampler(cfg: dict) -> str:
    """The posterior method of a run's saved config (a ``mcmc:`` section meant emcee)."""
    return str(cfg.get("posterior", {}).get("method", "emcee" if "mcmc" in cfg else "auto"))


def results_table(run_root: str | Path, command: str | None = None, wall: dict | None = None,
                  config_path: str | Path | None = None) -> str:
    """The Markdown results: per-point posterior tables, model metrics, target, wall times."""
    run_root = Path(run_root)
    results = collect(run_root)
    seeds = sorted(results)
    first = results[seeds[0]]
    names = _model_names(results)
    models = [n for n in names if n != report.TRUTH]
    cfg_text = (run_root / f"seed_{seeds[0]}" / "config.yaml").read_text() \
        if (run_root / f"seed_{seeds[0]}" / "config.yaml").is_file() else ""
    import yaml

    cfg = yaml.safe_load(cfg_text) if cfg_text else {}
    n_events = cfg.get("observed", {}).get("n_events", "?")
    bandwidth = resolve_options(cfg.get("metrics", {}))["kde_bandwidth"]
    lines = [
        "# H → ZZ* → 2e2μ: AF vs M-flow posteriors for (a2, a3)",
        "",
        (f"{len(seeds)} seed(s) {seeds}; {n_events} observed events per true point; "
         f"{cfg.get('n_train', '?')} training simulations at θ ~ prior (the same for every model); "
         f"posteriors by the `{_sampler(cfg)}` sampler, compared with the exact posterior (the same "
         "sampler on the simulator's exact likelihood). With several seeds each cell is the median "
         "(min–max) over seeds."),
        "",
        ("C2ST: accuracy of a classifier telling model-posterior from true-posterior samples "
         "(0.5 = indistinguishable). MMD²: kernel distance to the true-posterior samples "
         "(bandwidth = median distance of the truth's samples). log p̂(θ*): log density of a "
         "Gaussian KDE "
         f"(h = {bandwidth}) of the samples at the true θ."),
        "",
    ]
    for k, point in enumerate(first["points"]):
        theta = point["theta_true"]
        lines += [f"## Point {k}: θ* = (a2, a3) = ({theta[0]:g}, {theta[1]:g})", "",
                  "| posterior | " + " | ".join(mt.label() for mt in POSTERIOR_COLS)
                  + " | mean (a2, a3) | std (a2, a3) |",
                  "|---" * (len(POSTERIOR_COLS) + 3) + "|"]
        for name in names:
            cells = []
            for mt in POSTERIOR_COLS:
                vals = [r["points"][k]["models"].get(name, {}).get(mt.name)
                        for r in results.values()]
                cells.append(_fmt([v for v in vals if v is not None], mt))
            r0 = first["points"][k]["models"].get(name, {})
            mean = np.asarray(theta) + np.asarray(r0.get("bias", [np.nan, np.nan]))
            std = np.asarray(r0.get("std", [np.nan, np.nan]))
            cells.append(f"({mean[0]:.2f}, {mean[1]:.2f})")
            cells.append(f"({std[0]:.2f}, {std[1]:.2f})")
            label = "truth (exact likelihood)" if name == report.TRUTH else name
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Models", "",
              ("Manifold distance: mean distance of 2000 model samples (at θ ~ prior) to the true "
               "11-d manifold (`Higgs4l.distance_to_manifold`, raw units). Reconstruction error: "
               "mean |x − project(x)| of test / observed events (0 for the AF, which has no "
               "manifold). Off-manifold: observed events with a reconstruction error above the "
               "99th percentile of the test events'."), "",
              "| model | " + " | ".join(mt.label(unit=UNIT) for mt in MODEL_COLS) + " |",
              "|---" * (len(MODEL_COLS) + 1) + "|"]
    values = report.seed_values(results, MODEL_COLS)  # per seed; observed: mean over the points
    for name in models:
        cells = [_fmt(list(values.get(name, {}).get(mt.name, {}).values()), mt)
                 for mt in MODEL_COLS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    met, check = target_check(results)
    lines += ["## Target", "",
              (f"The M-flow posterior closer to the truth than the AF's (lower C2ST) and agreeing "
               f"with the exact posterior (C2ST ≤ {AGREE_C2ST}, mean within {AGREE_SIGMA} σ of the "
               f"exact mean) on at least {TARGET_POINTS} of {len(first['points'])} points: "
               f"**{'met' if met else 'not met'}**."),
              "", *check, ""]
    lines += ["## Sampler convergence", "", *_convergence(run_root, seeds), ""]
    lines += ["## Budget and reproduction", ""]
    if cfg:
        for m in cfg.get("models", []):
            lines.append(f"- {m['name']}: {m['kind']} {json.dumps(m.get('options', {}))}, "
                         f"train {json.dumps(m.get('train', {}))}")
        mc = cfg.get("posterior", cfg.get("mcmc", {}))  # runs before the posterior: section: mcmc:
        lines.append(f"- posterior sampler: {json.dumps(mc)}; threads {cfg.get('threads')}, "
                     f"device {cfg.get('device')}")
    for s in seeds:
        times = stage_times(run_root / f"seed_{s}")
        if times:
            lines.append(f"- seed {s} stage wall times: "
                         + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    if wall:
        seconds = wall.get("seconds", float("nan"))
        lines.append(f"- total wall time of the last `run.py` call: {seconds:.0f} s "
                     f"({wall.get('note', '')})")
    if command:
        lines += ["", f"Produced by `{command}` (run directory `{run_root}`)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the config (unless ``--table-only``), then write its table; returns the exit status."""
    from analyses.common import QUICK_NOTE, MissingRuns, missing_seeds, refuse
    from mfinfer.config import load_config
    from mfinfer.pipeline import run_all

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--config", help=f"the run config (default: {DEFAULT_CONFIG})")
    which.add_argument("--quick", action="store_true",
                       help=f"run {QUICK_CONFIG} instead (a few minutes); its table goes to its run "
                            "directory")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--threads", type=int, help="override the config's torch threads")
    parser.add_argument("--workers", type=int, default=1, help="seeds in parallel (dask workers)")
    parser.add_argument("--out", help="where to write the table (default: results.md next to this "
                                      "file; --quick: results.md in the run directory)")
    parser.add_argument("--table-only", action="store_true", help="only rebuild results.md")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    config = args.config or (QUICK_CONFIG if args.quick else DEFAULT_CONFIG)
    cfg = load_config(config)
    changes = {k: v for k, v in (("output_dir", args.output_dir), ("threads", args.threads)) if v}
    cfg = replace(cfg, **changes) if changes else cfg
    run_root = Path(cfg.output_dir) / cfg.name
    out = Path(args.out) if args.out else (run_root / "results.md" if args.quick
                                           else HERE / "results.md")
    wall_path = run_root / "wall_time.json"
    if args.table_only:
        missing = missing_seeds(run_root, cfg.seeds)
        if missing:
            again = COMMAND + (" --quick" if args.quick else
                               f" --config {shlex.quote(config)}" if args.config else "")
            quick = None if args.quick or args.config else f"{COMMAND} --quick"
            return refuse(MissingRuns("analyses/higgs4l", missing, again, quick))
    else:
        t0 = time.perf_counter()
        run_all(cfg, workers=args.workers, progress=not args.quiet)
        seconds = time.perf_counter() - t0
        given = sys.argv[1:] if argv is None else list(argv)
        command = shlex.join([*COMMAND.split(), *given])
        note = "stages already done in the run directory are skipped"
        atomic_write_json({"seconds": seconds, "command": command, "note": note}, wall_path)
    wall = json.loads(wall_path.read_text()) if wall_path.is_file() else None
    text = results_table(run_root, command=(wall or {}).get("command"), wall=wall)
    if args.quick:
        head, _, rest = text.partition("\n\n")
        text = f"{head}\n\n**Quick run** (`{config}`): {QUICK_NOTE}.\n\n{rest}"
    text = report.write_results(out, text)
    print(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    if not __package__:  # `python analyses/higgs4l/run.py`: rerun as the module, from the repository root
        if not Path("analyses/higgs4l/run.py").is_file():
            sys.exit(f"error: run from the repository root: {COMMAND}")
        os.execv(sys.executable, [sys.executable, "-m", "analyses.higgs4l.run", *sys.argv[1:]])
    sys.exit(main())
