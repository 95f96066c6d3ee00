"""The paper's power experiment: run the config, then write ``results.md`` (ours vs the paper).

Usage (from the repository root; ``python analyses/power/run.py ...`` does the same)::

    python -m analyses.power.run [--config analyses/power/config.yaml] [--workers 2]
    python -m analyses.power.run --table-only   # rebuild results.md from the run directories
    python -m analyses.power.run --quick        # analyses/power/demo.yaml (runs/power-demo) and
                                                # its table in runs/power-demo/results.md

Stages that are already done are skipped (``mfinfer.pipeline.run_all`` resumes), so running the
script after ``mfinfer run analyses/power/config.yaml`` only rebuilds the summary and the table.
``--table-only`` writes nothing unless every configured seed has finished: it names the missing
runs and the commands that make them (exit status 2). The quick run never writes next to this
file. The table logic is in :func:`results_table`, which the notebook reuses.

Reference: Brehmer & Cranmer, "Flows for simultaneous manifold learning and density estimation",
arXiv:2003.13913, power experiment (numbers from ``/work/shared/reference/mflow-paper.md``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from mfinfer.evaluation import report
from mfinfer.evaluation.registry import metric, select

__all__ = ["METRICS", "PAPER", "PAPER_ROW", "collect", "main", "results_table", "target_check"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Paper medians over 5 runs: manifold distance of samples, reconstruction error, posterior MMD².
# Keys are registry metric names (mfinfer.evaluation.registry).
_PAPER_KEYS = ("manifold_distance", "reconstruction_error", "mmd2")
PAPER: dict[str, dict[str, float]] = {
    row: dict(zip(_PAPER_KEYS, vals, strict=True)) for row, vals in [
        ("AF", (0.005, 0.000, 0.071)),
        ("PIE (unconditional manifold)", (0.006, 1.253, 0.075)),
        ("M-flow S", (0.006, 0.011, 0.026)),
        ("M-flow M/D alternating", (0.002, 0.003, 0.020)),
        ("M-flow M/D sequential", (0.009, 0.013, 0.017)),
        ("M_e-flow M/D sequential", (0.002, 0.002, 0.007)),
    ]
}

# Our model name (analyses/power/config.yaml) -> the paper's row (None: the paper has no such row).
PAPER_ROW: dict[str, str | None] = {
    "AF": "AF",
    "PIE": "PIE (unconditional manifold)",
    "M-flow (M/D alternating)": "M-flow M/D alternating",
    "M-flow (M/D sequential)": "M-flow M/D sequential",
    "Me-flow (M/D sequential)": "M_e-flow M/D sequential",
    "Me-flow (M/D alternating)": None,
}

# The table's metrics (registry name -> column title): the manifold metrics of the models and the
# posterior metrics against the truth, as in the paper. C2ST is ours only (0.5 = indistinguishable).
METRICS: dict[str, str] = {
    m.name: m.label() for m in select("model", "posterior_vs_truth", density=False, summary=True)}
if not set(_PAPER_KEYS) <= set(METRICS):
    raise RuntimeError(f"the paper's columns {_PAPER_KEYS} must be table metrics of the registry, "
                       f"got {list(METRICS)}")

# The target: an M-flow's median posterior MMD² at most this, and below the AF's in the same run.
TARGET = metric("mmd2")
TARGET_MMD2 = 0.02
MFLOWS = ("M-flow (M/D sequential)", "M-flow (M/D alternating)")
MEFLOWS = ("Me-flow (M/D sequential)", "Me-flow (M/D alternating)")  # shown, not counted

DASH = "–"
DEFAULT_CONFIG = "analyses/power/config.yaml"
#: ``--quick``: the reduced experiment of ``make demo`` (AF vs M-flow, 20k events, one seed).
QUICK_CONFIG = "analyses/power/demo.yaml"
COMMAND = "python -m analyses.power.run"


def collect(run_root: str | Path) -> dict[str, dict[str, dict[int, float]]]:
    """Per-seed values of every table metric: ``{model: {metric: {seed: value}}}``.

    Reads ``<run_root>/seed_*/metrics.json`` (:func:`mfinfer.evaluation.report.collect`); posterior
    metrics are aggregated over the true points within a seed as the registry says
    (:func:`mfinfer.evaluation.report.seed_values`). The truth has no table metric, so no row.

    Raises:
        FileNotFoundError: when no ``seed_*/metrics.json`` exists under ``run_root``.
    """
    results = report.collect(run_root, command=COMMAND)
    values = report.seed_values(results, [metric(name) for name in METRICS])
    return {name: cols for name, cols in values.items() if name != report.TRUTH}


def _median(values: dict[int, float]) -> float:
    """The registry's aggregate over seeds (the median) of the target metric."""
    return TARGET.aggregate_seeds(list(values.values()))


def target_check(values: dict[str, dict[str, dict[int, float]]]) -> tuple[bool, list[str]]:
    """Is the target met: some M-flow has median MMD² <= 0.02 and below the AF's median?

    Returns:
        ``(met, lines)``: the verdict and one explanatory line per M-flow variant.
    """
    af = values.get("AF", {}).get(TARGET.name)
    lines, met = [], False
    for name in MFLOWS + MEFLOWS:
        counted = name in MFLOWS
        mm = values.get(name, {}).get(TARGET.name)
        if not mm:
            if counted:
                lines.append(f"- {name}: not in this run.")
            continue
        med = _median(mm)
        ok_abs = med <= TARGET_MMD2
        text = f"- {name}: median MMD² {med:.4f} {'≤' if ok_abs else '>'} {TARGET_MMD2}"
        ok_af = False
        if af:
            af_med = _median(af)
            ok_af = med < af_med
            common = sorted(set(mm) & set(af))
            wins = sum(mm[s] < af[s] for s in common)
            text += (f"; {'below' if ok_af else 'not below'} the AF's {af_med:.4f} "
                     f"(lower than the AF in {wins} of {len(common)} seeds)")
        else:
            text += "; no AF in this run to compare with"
        both = ok_abs and ok_af
        if counted:
            met |= both
            verdict = " → **meets the target**." if both else " → does not meet the target."
            lines.append(text + verdict)
        else:
            would = "would meet" if both else "would not meet"
            lines.append(text + f" (for reference; {would} the target, which is about the "
                         "M-flows).")
    return met, lines


def _num(x: float) -> str:
    """4 decimals; an estimate that rounds to zero is shown as 0.0000, never -0.0000."""
    text = f"{x:.4f}"
    return "0.0000" if text == "-0.0000" else text


def _cell(key: str, values: dict[int, float] | None) -> str:
    """The aggregate over seeds (median) with the min–max, e.g. ``0.0123 (0.0101–0.0150)``."""
    if not values:
        return DASH
    v = np.array(list(values.values()))
    if len(v) == 1:
        return _num(v[0])
    return f"{_num(metric(key).aggregate_seeds(v))} ({_num(v.min())}–{_num(v.max())})"


def _paper(row: str | None, key: str) -> str:
    if row is None or key not in PAPER.get(row, {}):
        return DASH
    return f"{PAPER[row][key]:.3f}"


def results_table(run_root: str | Path, command: str | None = None) -> str:
    """The Markdown results: ours (median and min–max over seeds) next to the paper, per-seed
    values, the target verdict and, if given, the command that produced the runs.

    Arguments:
        run_root: ``<output_dir>/<name>``, holding ``seed_*/metrics.json``.
        command: The command line that produced the run directories.

    Returns:
        Markdown text (no trailing newline).
    """
    run_root = Path(run_root)
    values = collect(run_root)
    seeds = sorted({s for cols in values.values() for v in cols.values() for s in v})
    known = [m for m in PAPER_ROW if m in values]
    ours = known + [m for m in values if m not in PAPER_ROW]
    rows: list[tuple[str, str | None]] = [(m, PAPER_ROW.get(m)) for m in ours]
    used = {r for _, r in rows if r}
    rows += [(None, r) for r in PAPER if r not in used]  # paper rows we did not run (M-flow S)
    order = list(PAPER)
    rows.sort(key=lambda mr: order.index(mr[1]) if mr[1] in order else len(order))

    intro = (f"Run directory: `{_display_path(run_root)}`, {len(seeds)} seed(s) {seeds}. "
             "Ours: median over seeds, (min–max) over seeds; paper: median of 5 runs "
             "(arXiv:2003.13913). Posterior metrics compare with the exact-likelihood posterior "
             "at the configured true points (the unbiased MMD² estimate can be slightly negative); "
             "C2ST (0.5 = indistinguishable from the true posterior) is ours only.")
    lines = [intro, ""]
    head = ["model (ours)", "paper row"]
    for title in METRICS.values():
        head += [f"{title}: ours", "paper"]
    lines += ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (2 * len(METRICS))]
    for model, row in rows:
        cells = [model or "(not run)", row or DASH]
        for key in METRICS:
            mine = _cell(key, values.get(model, {}).get(key)) if model else DASH
            cells += [mine, _paper(row, key)]
        lines.append("| " + " | ".join(cells) + " |")

    lines += ["", "Per-seed values (seeds " + ", ".join(map(str, seeds)) + "):", ""]
    lines += ["| model | " + " | ".join(METRICS.values()) + " |", "|---|" + "---|" * len(METRICS)]
    for model in ours:
        cells = [" / ".join(_num(values[model][k].get(s, float("nan"))) for s in seeds)
                 if k in values[model] else DASH for k in METRICS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")

    met, verdict = target_check(values)
    target = (f"**Target** (an M-flow's median posterior MMD² ≤ {TARGET_MMD2} and below the AF's "
              f"in the same run): **{'met' if met else 'not met'}**.")
    lines += ["", target, "", *verdict]
    if command:
        lines += ["", (f"Produced by `{command}` (from the repository root; finished stages are "
                       "skipped, so the same command also rebuilds this file).")]
    return "\n".join(lines)


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    """Run the config (unless ``--table-only``), then write its table; returns the exit status."""
    from analyses.common import QUICK_NOTE, MissingRuns, missing_seeds, refuse
    from mfinfer.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--config", help=f"the run config (default: {DEFAULT_CONFIG})")
    which.add_argument("--quick", action="store_true",
                       help=f"run {QUICK_CONFIG} instead (a few minutes); its table goes to its run "
                            "directory")
    parser.add_argument("--workers", type=int, help="seeds in parallel (default: 2; --quick: 1)")
    parser.add_argument("--table-only", action="store_true",
                        help="only rebuild the table from the finished run directories")
    parser.add_argument("--out", help="where to write the table (default: results.md next to this "
                                      "file; --quick: results.md in the run directory)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    config = args.config or (QUICK_CONFIG if args.quick else DEFAULT_CONFIG)
    workers = args.workers or (1 if args.quick else 2)
    cfg = load_config(config)
    run_root = Path(cfg.output_dir) / cfg.name
    out = Path(args.out) if args.out else (run_root / "results.md" if args.quick
                                           else HERE / "results.md")
    if args.table_only:
        missing = missing_seeds(run_root, cfg.seeds)
        if missing:
            again = f"{COMMAND} --quick" if args.quick else (
                f"{COMMAND} --config {shlex.quote(config)} --workers {workers}"
                if args.config else f"{COMMAND} --workers {workers}")
            quick = None if args.quick or args.config else f"{COMMAND} --quick"
            return refuse(MissingRuns("analyses/power", missing, again, quick))
    else:
        from mfinfer.pipeline import run_all

        run_all(cfg, workers=workers, progress=workers <= 1 and not args.quiet)
    opts = " --quick" if args.quick else f" --config {shlex.quote(config)}" if args.config else ""
    command = f"{COMMAND}{opts} --workers {workers}"
    title = (f"# Power experiment: ours vs the paper\n\nConfig: `{config}` "
             f"({cfg.n_train} training events; {len(cfg.seeds)} seed(s) configured: "
             f"{list(cfg.seeds)}).\n\n")
    if args.quick:
        title += f"**Quick run**: {QUICK_NOTE}.\n\n"
    notes = [ln.lstrip("# ").strip() for ln in Path(config).read_text().splitlines()
             if ln.startswith("# Differences")]
    if notes:
        title += "".join(f"{n}\n\n" for n in notes)
    done = sorted(report.seed_of(p.parent) for p in run_root.glob(f"seed_*/{report.METRICS_FILE}"))
    missing_now = [s for s in cfg.seeds if s not in done]
    if missing_now:
        title += (f"**Partial results**: seeds {missing_now} have not finished; the table below is "
                  "over the finished seeds only. Rerun the command below to complete them.\n\n")
    text = title + results_table(run_root, command) + "\n"
    text += (f"\nEquivalently: `mfinfer run {shlex.quote(config)} --workers {workers}`, "
             f"then `{COMMAND}{opts} --table-only` to rebuild this file.\n")
    text = report.write_results(out, text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if not __package__:  # `python analyses/power/run.py`: rerun as the module, from the repository root
        if not Path("analyses/power/run.py").is_file():
            sys.exit(f"error: run from the repository root: {COMMAND}")
        os.execv(sys.executable, [sys.executable, "-m", "analyses.power.run", *sys.argv[1:]])
    sys.exit(main())
