"""Lorenz-63: M-flows with θ-dependent and θ-independent manifolds, an AF and sbi's NLE on (σ, ρ, β).

Usage (from the repository root; ``python analyses/lorenz/run.py ...`` does the same)::

    python -m analyses.lorenz.run                      # every stage, then results.md
    python -m analyses.lorenz.run --stage calibrate    # one stage (those before it must have run)
    python -m analyses.lorenz.run --table-only         # rebuild results.md and the figures
    python -m analyses.lorenz.run --quick              # quick.yaml: pipeline + table of the points
                                                       # variant in runs/lorenz-quick (a few minutes)

``--table-only`` never writes less than the results it would replace: when a run directory that
the existing ``results.json`` drew on is missing (a fresh clone has none), it writes nothing, names
what is missing and the command that makes it, and exits with status 2.

Stages, in order; each keeps what it finished in the run directories, so a killed run resumes
(an item is redone only when its inputs changed: settings, data, model weights):

1. ``unconditional``: the paper's Lorenz experiment. At the classic θ = (10, 28, 8/3), an
   unconditional AF and M-flow (d = 2) with the config's architectures and training settings
   learn ``UNCONDITIONAL["n_train"]`` attractor points. Manifold distance of 5000 model samples =
   mean distance to the nearest of ``n_reference`` simulator points (a k-d tree), reported with
   the same distance for fresh simulator points (the floor that the finite reference set sets);
   reconstruction error = mean |x − project(x)|; the learned manifold decoded on a grid of u.
2. ``pipeline``: ``mfinfer.pipeline.run_all`` (simulate → train → infer → evaluate) for the config
   (points) and the snippet variants of ``VARIANTS``, which change only ``simulator.options``,
   ``observed.n_events`` and the run name: the same models, training and sampler.
3. ``sbi``: sbi 0.27's ``NLE(prior)`` with its default density estimator trained on each
   variant's training simulations (the pipeline's ``data/train.npz``), as its users run it.
4. ``extras``: NLE posteriors at the true points by the config's sampler on the NLE's likelihood
   (:class:`NLELikelihood`), and at ``SBI_MCMC_POINTS`` also by sbi's default
   ``build_posterior()`` MCMC with ``sample((n,), x=x_obs)``, the events as iid trials (the two
   agree; sbi's MCMC costs ~100× more CPU); every estimator's posterior from the first
   ``n_events / 10`` events (consistency); manifold distance of model samples at θ*; the
   largest Lyapunov exponent of a subsample of every posterior; the θ-dependent M-flow's
   likelihood and off-manifold distance along each parameter (``scan``).
5. ``calibrate`` (variants in ``CALIBRATION["variants"]``, or ``--calibrate``):
   ``CALIBRATION["n_obs"]`` observations with θ ~ prior, every estimator's posterior by the
   config's sampler; coverage of the joint highest-posterior-density (HPD) regions (θ* is inside
   the level-α region iff the share of samples with a higher log posterior, by the estimator's
   own log posterior, is below α) and of the marginal central intervals.
6. ``ablation``: the θ-dependent M-flow's likelihood plus a Gaussian term for the distance of
   the events from its manifold at θ (which the manifold density ignores), at the true points
   and on the calibration observations (:class:`OffManifoldLikelihood`).
7. ``table``: ``results.json``, ``results.md`` and the figures in ``analyses/lorenz/``.

The code, one concept per module of this folder (imported as ``analyses.lorenz.<module>``):
``settings`` (variants, seeds, run-directory layout), ``estimators`` (posteriors and their
summaries), ``unconditional`` (stage 1), ``extras`` (stages 3-4), ``calibration`` (stages 5-6),
``report`` (:func:`collect` and :func:`results_table`, reading the run directories; the notebook
reuses them) and ``figures``; this file is the command line and re-exports their public names.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

if __name__ == "__main__" and not __package__:  # `python analyses/lorenz/run.py`: run as the module
    if not Path("analyses/lorenz/run.py").is_file():
        sys.exit("error: run from the repository root: python -m analyses.lorenz.run")
    os.execv(sys.executable, [sys.executable, "-m", "analyses.lorenz.run", *sys.argv[1:]])

import torch

from analyses.common import QUICK_NOTE, MissingRuns, lost_parts, refuse
from analyses.lorenz.calibration import ABLATION, stage_ablation, stage_calibrate
from analyses.lorenz.estimators import (
    NLELikelihood,
    OffManifoldLikelihood,
    Sampled,
    coverage,
    model_posterior,
    nle_posterior,
    nn_distance,
)
from analyses.lorenz.extras import stage_extras, stage_sbi
from analyses.lorenz.figures import figures, plot_calibration, plot_unconditional
from analyses.lorenz.report import collect, results_table, target_check
from analyses.lorenz.settings import (
    CALIBRATION,
    CLASSIC,
    LYAPUNOV,
    NLE,
    PARAMS,
    SBI_MCMC_POINTS,
    UNCONDITIONAL,
    VARIANTS,
    extras_dir,
    run_dir,
    variant_configs,
)
from analyses.lorenz.unconditional import stage_unconditional
from mfinfer.config import RunConfig, load_config
from mfinfer.evaluation.report import write_results
from mfinfer.files import atomic_write_json, read_json

__all__ = ["ABLATION", "CALIBRATION", "CLASSIC", "LYAPUNOV", "NLE", "PARAMS", "SBI_MCMC_POINTS",
           "STAGES", "UNCONDITIONAL", "VARIANTS", "NLELikelihood", "OffManifoldLikelihood",
           "Sampled", "collect", "coverage", "figures", "load_config", "main", "missing_runs",
           "model_posterior",
           "nle_posterior", "nn_distance", "plot_calibration", "plot_unconditional",
           "results_table", "stage_ablation", "stage_calibrate", "stage_extras", "stage_sbi",
           "stage_unconditional", "target_check", "variant_configs"]

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = "analyses/lorenz/config.yaml"
#: ``--quick``: the points variant reduced to a few minutes, in its own run directory.
QUICK_CONFIG = "analyses/lorenz/quick.yaml"
QUICK_STAGES = ("pipeline", "table")
COMMAND = "python -m analyses.lorenz.run"
STAGES = ("unconditional", "pipeline", "sbi", "extras", "calibrate", "ablation", "table")


def missing_runs(old: dict, new: dict, cfg: RunConfig, variants: list[str], uncond_root: Path,
                 calibrate: list[str], quick: bool = False) -> MissingRuns | None:
    """What rebuilding ``old`` (an existing ``results.json``) as ``new`` would lose, as the missing
    files of the run directories and the command that makes them; None when nothing is lost.

    Every part of ``results.json`` comes from one stage: ``unconditional``, a variant's entry
    (``pipeline``), its ``nle`` (``sbi``), ``extras``, ``calibration`` (``calibrate``) and
    ``ablation``. With no ``old`` and nothing found, every variant asked for is missing.

    Arguments:
        old: the existing ``results.json`` (``{"variants": {}}`` when there is none).
        new: :func:`collect`'s results from the run directories found now.
        cfg: the analysis config (the points variant); ``variants``: those asked for.
        uncond_root: the unconditional stage's directory.
        calibrate: the variants the command calibrates (``--calibrate``).
        quick: the quick run's table (its command is ``--quick``).
    """
    if not new["variants"] and not old.get("variants"):
        old = {"variants": {v: {} for v in variants}}
    cfgs = variant_configs(cfg)
    lost = lost_parts(old, new)
    if not lost:
        return None
    part_stage = {"nle": "sbi", "extras": "extras", "calibration": "calibrate",
                  "ablation": "ablation"}
    part_file = {"nle": "nle/train.json", "extras": "extras.json",
                 "calibration": "calibration/summary.json", "ablation": "ablation/summary.json"}
    stages, needed, cal, files = set(), set(), set(), []
    for part in lost:
        keys = part.split("/")
        if keys[0] == "unconditional":
            stages.add("unconditional")
            files.append(str(uncond_root / "summary.json"))
        elif keys[0] == "variants" and len(keys) > 1 and keys[1] in VARIANTS:
            vcfg = cfgs[keys[1]]
            needed.add(keys[1])
            if len(keys) > 2 and keys[2] in part_stage:
                stages.add(part_stage[keys[2]])
                files.append(str(extras_dir(vcfg) / part_file[keys[2]]))
                if keys[2] in ("calibration", "ablation"):
                    cal.add(keys[1])
            else:
                stages.add("pipeline")
                files.append(str(run_dir(vcfg) / "metrics.json"))
    if quick:
        return MissingRuns("analyses/lorenz", files, f"{COMMAND} --quick")
    if not new["variants"]:
        return MissingRuns("analyses/lorenz", files, COMMAND, f"{COMMAND} --quick")
    if "pipeline" in stages:  # a variant's run directory is missing: its later stages too
        stages |= {"sbi", "extras"}
        cal |= needed & set(old_cal(old))
        stages |= {"calibrate", "ablation"} if cal else set()
    command = COMMAND + "".join(f" --stage {st}" for st in STAGES if st in stages | {"table"})
    command += " --variants " + " ".join(v for v in VARIANTS if v in (needed or {"points"}))
    if cal != set(calibrate) and cal:
        command += " --calibrate " + " ".join(v for v in VARIANTS if v in cal)
    return MissingRuns("analyses/lorenz", files, command)


def old_cal(results: dict) -> list[str]:
    """The variants with calibration results in ``results``."""
    return [v for v, e in results.get("variants", {}).items() if e.get("calibration")]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen stages (default: all) for the chosen variants; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--config", help=f"the run config (default: {DEFAULT_CONFIG})")
    which.add_argument("--quick", action="store_true",
                       help=f"{QUICK_CONFIG}: stages {QUICK_STAGES} of the points variant, results "
                            "in its run directory (a few minutes)")
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--stage", choices=STAGES, action="append",
                        help="run only these stages (repeatable); default: all")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        help="default: all (--quick: points)")
    parser.add_argument("--calibration-obs", type=int, help="override CALIBRATION['n_obs']")
    parser.add_argument("--calibrate", nargs="+", choices=list(VARIANTS),
                        default=list(CALIBRATION["variants"]),
                        help="variants to calibrate (default: %(default)s)")
    parser.add_argument("--out", help="folder for results.md and figures (default: this folder; "
                                      "--quick: the quick run directory)")
    parser.add_argument("--table-only", action="store_true", help="only the 'table' stage")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from mfinfer.pipeline import run_all

    cfg = load_config(args.config or (QUICK_CONFIG if args.quick else DEFAULT_CONFIG))
    if args.output_dir:
        cfg = replace(cfg, output_dir=args.output_dir)
    torch.set_num_threads(cfg.threads)
    variants = args.variants or (["points"] if args.quick else list(VARIANTS))
    cfgs = {k: v for k, v in variant_configs(cfg).items() if k in variants}
    stages = ["table"] if args.table_only else (
        args.stage or list(QUICK_STAGES if args.quick else STAGES))
    uncond_root = Path(cfg.output_dir) / f"{cfg.name}-unconditional"
    out_dir = Path(args.out) if args.out else (
        Path(cfg.output_dir) / cfg.name if args.quick else HERE)
    for stage in STAGES:
        if stage not in stages:
            continue
        t0 = time.perf_counter()
        if stage == "unconditional":
            stage_unconditional(cfg, progress=not args.quiet)
        elif stage == "pipeline":
            for c in cfgs.values():
                run_all(c, progress=not args.quiet)
        elif stage == "sbi":
            for c in cfgs.values():
                stage_sbi(c)
        elif stage == "extras":
            for variant, c in cfgs.items():
                stage_extras(c, variant)
        elif stage == "ablation":
            for variant, c in cfgs.items():
                if variant in args.calibrate:
                    stage_ablation(c, variant)
        elif stage == "calibrate":
            for variant, c in cfgs.items():
                if variant in args.calibrate:
                    stage_calibrate(c, variant, args.calibration_obs)
        else:
            results = collect(cfgs, uncond_root)
            old_path = out_dir / "results.json"
            old = read_json(old_path) if old_path.is_file() else {"variants": {}}
            missing = missing_runs(old, results, cfg, variants, uncond_root, args.calibrate,
                                   args.quick)
            if missing is not None:
                return refuse(missing)
            given = sys.argv[1:] if argv is None else list(argv)
            command = shlex.join([*COMMAND.split(), *given])
            out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(results, out_dir / "results.json")
            figures(results, cfgs, uncond_root, out_dir)
            text = results_table(results, command)
            if args.quick:
                head, _, rest = text.partition("\n\n")
                text = f"{head}\n\n**Quick run** (`{QUICK_CONFIG}`): {QUICK_NOTE}.\n\n{rest}"
            write_results(out_dir / "results.md", text)
        print(f"[lorenz] stage {stage}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
