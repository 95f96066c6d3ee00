"""Lorenz-63: M-flows with θ-dependent and θ-independent manifolds, an AF and sbi's NLE on (σ, ρ, β).

Usage (from the repository root)::

    python analyses/lorenz/run.py                      # every stage, then results.md
    python analyses/lorenz/run.py --stage calibrate    # one stage (those before it must have run)
    python analyses/lorenz/run.py --table-only         # rebuild results.md and the figures

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
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:  # mfinfer and this folder's modules, however this file is loaded
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from analyses.lorenz.calibration import ABLATION, stage_ablation, stage_calibrate  # noqa: E402
from analyses.lorenz.estimators import (  # noqa: E402
    NLELikelihood,
    OffManifoldLikelihood,
    Sampled,
    coverage,
    model_posterior,
    nle_posterior,
    nn_distance,
)
from analyses.lorenz.extras import stage_extras, stage_sbi  # noqa: E402
from analyses.lorenz.figures import figures, plot_calibration, plot_unconditional  # noqa: E402
from analyses.lorenz.report import collect, results_table, target_check  # noqa: E402
from analyses.lorenz.settings import (  # noqa: E402
    CALIBRATION,
    CLASSIC,
    LYAPUNOV,
    NLE,
    PARAMS,
    SBI_MCMC_POINTS,
    UNCONDITIONAL,
    VARIANTS,
    variant_configs,
)
from analyses.lorenz.unconditional import stage_unconditional  # noqa: E402
from mfinfer.config import load_config  # noqa: E402
from mfinfer.evaluation.report import write_results  # noqa: E402
from mfinfer.files import atomic_write_json  # noqa: E402

__all__ = ["ABLATION", "CALIBRATION", "CLASSIC", "LYAPUNOV", "NLE", "PARAMS", "SBI_MCMC_POINTS",
           "STAGES", "UNCONDITIONAL", "VARIANTS", "NLELikelihood", "OffManifoldLikelihood",
           "Sampled", "collect", "coverage", "figures", "load_config", "main", "model_posterior",
           "nle_posterior", "nn_distance", "plot_calibration", "plot_unconditional",
           "results_table", "stage_ablation", "stage_calibrate", "stage_extras", "stage_sbi",
           "stage_unconditional", "target_check", "variant_configs"]

DEFAULT_CONFIG = "analyses/lorenz/config.yaml"
STAGES = ("unconditional", "pipeline", "sbi", "extras", "calibrate", "ablation", "table")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen stages (default: all) for the chosen variants; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--stage", choices=STAGES, action="append",
                        help="run only these stages (repeatable); default: all")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--calibration-obs", type=int, help="override CALIBRATION['n_obs']")
    parser.add_argument("--calibrate", nargs="+", choices=list(VARIANTS),
                        default=list(CALIBRATION["variants"]),
                        help="variants to calibrate (default: %(default)s)")
    parser.add_argument("--out", default=str(HERE), help="folder for results.md and figures")
    parser.add_argument("--table-only", action="store_true", help="only the 'table' stage")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from mfinfer.pipeline import run_all

    cfg = load_config(args.config)
    if args.output_dir:
        cfg = replace(cfg, output_dir=args.output_dir)
    torch.set_num_threads(cfg.threads)
    cfgs = {k: v for k, v in variant_configs(cfg).items() if k in args.variants}
    stages = ["table"] if args.table_only else (args.stage or list(STAGES))
    uncond_root = Path(cfg.output_dir) / f"{cfg.name}-unconditional"
    out_dir = Path(args.out)
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
            given = sys.argv[1:] if argv is None else list(argv)
            command = shlex.join(["python", "analyses/lorenz/run.py", *given])
            out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(results, out_dir / "results.json")
            figures(results, cfgs, uncond_root, out_dir)
            write_results(out_dir / "results.md", results_table(results, command))
        print(f"[lorenz] stage {stage}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
