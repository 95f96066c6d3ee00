"""The ``mfinfer`` command line: ``run``, ``simulate``, ``train``, ``infer``, ``evaluate``, ``calibrate``.

Every subcommand takes a YAML run configuration (see ``mfinfer.config.RunConfig``) and works in its
run directory, so the stages can be run one by one or all at once with ``mfinfer run``. The whole
config is validated before any work.

Exit codes: 0 success; 2 a usage error, an invalid config or argument, or a file that cannot be
read or written (one line on stderr: ``mfinfer <command>: error: <message>``); 1 an unexpected
error (a bug: one line naming the exception, to report); 130 interrupted. ``--debug`` prints the
traceback instead of the one line.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mfinfer._validation import safe_label
from mfinfer.cli_files import print_gate, read_events_arg, write_sample
from mfinfer.config import RunConfig, load_config
from mfinfer.errors import ConfigError, InputError, MfinferError
from mfinfer.inference.spec import METHODS, RUNS
from mfinfer.summaries import final_line, train_line

__all__ = ["main"]


def _config(args: argparse.Namespace) -> RunConfig:
    """The config with the command line's overrides, validated as a whole."""
    overrides = {key: value for key, value in (("seeds", args.seeds), ("device", args.device),
                                               ("output_dir", args.output_dir)) if value is not None}
    return load_config(args.config, overrides, settings=_settings(args, "posterior"))


def _settings(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """``--set`` plus ``--method``/``--num-samples`` as ``<section>.method``/``.num_samples``
    (``posterior`` of a run config, ``calibration`` of a campaign), validated with the file."""
    settings = dict(args.set)
    for flag in ("method", "num_samples"):
        if getattr(args, flag, None) is not None:
            settings[f"{section}.{flag}"] = getattr(args, flag)
    method = getattr(args, "method", None)
    if method is not None and section == "posterior":  # the file's options of other samplers go
        settings.update({f"posterior.{s}": None for s in RUNS if method not in RUNS[s]})
    return settings


def _run(config: RunConfig, seed: int, args: argparse.Namespace):
    from mfinfer.pipeline import Run

    return Run(config, seed, progress=not args.quiet)


def cmd_run(args: argparse.Namespace) -> None:
    from mfinfer.pipeline import run_all

    t0, cfg = time.perf_counter(), _config(args)
    summary = run_all(cfg, tuple(args.stages), workers=args.workers, progress=not args.quiet,
                      scheduler=args.scheduler, force=args.force)
    if summary:
        print(format_summary(summary, cfg) + "\n")
    base = Path(cfg.output_dir) / cfg.name
    print(final_line("run", f"{' '.join(args.stages)} for seed(s) {list(cfg.seeds)}; run directory {base} "
                     "(summary.json, seed_*/metrics.json, seed_*/timings.json, seed_*/plots/)",
                     time.perf_counter() - t0))


def format_summary(summary: dict, cfg: RunConfig) -> str:
    """A Markdown table of the medians over seeds: the summary metrics of the registry, with
    log-densities on the manifold and in R^D in separate columns (per model, from its kind)."""
    from mfinfer.evaluation.report import base_measures, summary_table

    head = (f"Medians over seeds {list(cfg.seeds)} ({cfg.observed.n_events} observed events per "
            "point)")
    return head + "\n" + summary_table(summary, base_measures(cfg.models))


def cmd_simulate(args: argparse.Namespace) -> None:
    cfg = _config(args)
    if args.out is None:
        given = [name for name in ("n", "theta", "seed") if getattr(args, name) is not None]
        if given:
            raise InputError(f"--{', --'.join(given)}: apply only with --out FILE (a sample file); "
                             "without --out the config's training and observed data are simulated")
        t0 = time.perf_counter()
        written = sum(_run(cfg, s, args).simulate() for s in cfg.seeds)
        total = len(cfg.seeds) * (cfg.simulations is None) + len(cfg.seeds) * len(cfg.observed.theta)
        what = f"wrote {written} of {total} data file(s), the others current, in " \
               f"{Path(cfg.output_dir) / cfg.name}/seed_*/data"
        if cfg.simulations is not None:  # the training data are the user's files, read not simulated
            what = (f"the training data are read from the simulations: files (cached in "
                    f"{Path(cfg.output_dir) / cfg.name}/simulations); "
                    + (f"{what} for the observed points" if total else "nothing to simulate"))
        print(final_line("simulate", what, time.perf_counter() - t0))
        return
    write_sample(args, cfg)


def cmd_train(args: argparse.Namespace) -> None:
    cfg = _config(args)
    names = [m.name for m in cfg.models]
    if args.model is not None and args.model not in names:
        near = difflib.get_close_matches(args.model, names, n=len(names), cutoff=0.0)
        raise InputError(f"--model: no model named {args.model!r} in {args.config}; its models are "
                         f"(nearest first) {near}")
    t0, trained, total = time.perf_counter(), 0, 0
    for s in cfg.seeds:
        run = _run(cfg, s, args)
        run.simulate()
        for record in run.train(only=args.model, force=args.force):
            print(train_line(record, s))
            trained, total = trained + record["trained"], total + 1
    print(final_line("train", f"trained {trained} of {total} model(s), the others current; weights in "
                     f"{Path(cfg.output_dir) / cfg.name}/seed_*/models/<model>/final/",
                     time.perf_counter() - t0))


def cmd_infer(args: argparse.Namespace) -> None:
    import warnings

    from mfinfer.inference.gate import OffManifoldWarning

    cfg = _config(args)
    if not args.events and (args.on_manifold_only or args.strict):
        flag = "--on-manifold-only" if args.on_manifold_only else "--strict"
        raise InputError(f"{flag}: applies only with --events FILE (the off-manifold gate judges user "
                         "events)")
    x = read_events_arg(args, cfg) if args.events else None  # before any run directory is touched
    tag = safe_label(Path(args.events).stem) if args.events else None  # names a folder
    action = "drop" if args.on_manifold_only else "strict" if args.strict else "report"
    t0, sampled, total = time.perf_counter(), 0, 0
    for s in cfg.seeds:
        run = _run(cfg, s, args)
        run.check_trained(args.config)  # simulations and trained models, or how to make them
        with warnings.catch_warnings():  # printed below, from the posteriors' records
            warnings.simplefilter("ignore", OffManifoldWarning)
            done, jobs = run.infer(x_obs=x, tag=tag, force=args.force, gate=action)
            sampled, total = sampled + done, total + jobs
        if tag is not None:
            from mfinfer.inference import Posterior

            for m in cfg.models:
                post = Posterior.load(run.posterior_path(tag, m.name))
                print(f"{m.name}: mean {np.round(post.mean, 4).tolist()} "
                      f"std {np.round(post.std, 4).tolist()}")
                print_gate(m.name, post.metadata.get("gate"))
    where = Path(cfg.output_dir) / cfg.name / "seed_*" / "posteriors" / f"point_{'*' if tag is None else tag}"
    print(final_line("infer", f"sampled {sampled} of {total} posterior(s), the others current; in {where}/",
                     time.perf_counter() - t0))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from mfinfer.evaluation.report import summarize

    t0, cfg = time.perf_counter(), _config(args)
    results = [_run(cfg, s, args).evaluate(force=args.force) for s in cfg.seeds]
    print(format_summary(summarize(results), cfg) + "\n")
    print(final_line("evaluate", f"metrics of seed(s) {list(cfg.seeds)} in {Path(cfg.output_dir) / cfg.name}"
                     "/seed_*/metrics.json, corner plots in seed_*/plots/", time.perf_counter() - t0))


def cmd_calibrate(args: argparse.Namespace) -> None:
    from mfinfer.calibration import calibrate, format_result, load_campaign

    overrides = {key: value for key, value in (("seeds", args.seeds), ("device", args.device),
                                               ("output_dir", args.output_dir)) if value is not None}
    campaign = load_campaign(args.config, overrides, settings=_settings(args, "calibration"))
    t0 = time.perf_counter()
    summary = calibrate(campaign, workers=args.workers, scheduler=args.scheduler,
                        progress=not args.quiet, force=args.force)
    print(format_result(summary, campaign.directory) + "\n")
    run = summary["run"]
    print(final_line("calibrate", f"{summary['n_observations']} observations of {list(summary['models'])}"
                     f" ({run['computed']} records computed, {run['reused']} current); report in "
                     f"{campaign.directory}", time.perf_counter() - t0))


def _assignment(text: str) -> tuple[str, Any]:
    """An argparse type: ``KEY=VALUE`` of ``--set`` (:func:`mfinfer.overrides.parse_assignment`)."""
    from mfinfer.overrides import parse_assignment

    try:
        return parse_assignment(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfinfer", description="Simulation-based inference with "
                                     "manifold-learning flows (M-flows).")
    debug_help = "on an error, print the traceback instead of one line"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, force: str | None = None) -> None:
        p.add_argument("config", help="YAML run configuration")
        p.add_argument("--seeds", type=_int_at_least(0), nargs="+",
                       help="override the config's seeds")
        p.add_argument("--device", help="override the config's device (auto, cpu, cuda, cuda:N, mps)")
        p.add_argument("--output-dir", help="override the config's output_dir")
        p.add_argument("--set", action="append", default=[], type=_assignment, metavar="KEY=VALUE",
                       help="set a config field by dotted path before the config is checked, models "
                       "by name (--set n_train=5000 --set models.AF.train.epochs=2); the value is "
                       "read as YAML; repeatable")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        # also after the subcommand; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        if force:
            p.add_argument("--force", action="store_true", help=force)

    def sampling(p: argparse.ArgumentParser) -> None:
        p.add_argument("--method", choices=list(METHODS), help="posterior sampler (default: the "
                       "config's; auto = grid for p <= 3 when its checks pass, else SMC)")
        p.add_argument("--num-samples", type=_int_at_least(1), help="posterior samples per "
                       "posterior (default: the config's)")

    p = sub.add_parser("run", help="the whole pipeline: simulate, train, infer, evaluate")
    common(p, "redo the stages even where current results exist")
    sampling(p)
    p.add_argument("--stages", nargs="+", default=["simulate", "train", "infer", "evaluate"],
                   choices=["simulate", "train", "infer", "evaluate"])
    p.add_argument("--workers", type=_int_at_least(1), default=1,
                   help="run seeds in parallel dask worker processes")
    p.add_argument("--scheduler", help="address of an existing dask scheduler")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("simulate",
                       help="simulate training and observed data, or --out a sample file")
    common(p)
    p.add_argument("--out", help="write N events to this .root (TTree) or .npz file instead")
    p.add_argument("--n", type=_int_at_least(1), help="number of events for --out (default 1000)")
    p.add_argument("--theta", type=float, nargs="+", help="simulate at this θ (default: θ ~ prior)")
    p.add_argument("--seed", type=_int_at_least(0), help="seed for --out (default 0)")
    p.add_argument("--training", action="store_true", help="--out the run's training sample "
                   "(n_train at the config's seed, as the simulate stage draws it)")
    p.add_argument("--parts", type=_int_at_least(1), default=1,
                   help="split the .root sample into this many files FILE_0.root, FILE_1.root, ...")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="train the config's models (resumes from checkpoints)")
    common(p, "train afresh even where a current trained model exists")
    p.add_argument("--model", help="train only this model")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("infer", help="sample posteriors for the observed data or for --events")
    common(p, "sample again even where current posteriors exist")
    sampling(p)
    p.add_argument("--events", help="observed events: a .root or .npz file")
    p.add_argument("--tree", help="tree name in the ROOT file (default: the events: section's, "
                   "else 'events')")
    p.add_argument("--branches", nargs="+", help="branch expressions to read as observables")
    p.add_argument("--leptons", action="store_true",
                   help="read jagged Electron_*/Muon_* branches with the 2e2μ lepton selection")
    gate = p.add_mutually_exclusive_group()
    gate.add_argument("--on-manifold-only", action="store_true",
                      help="drop the events the off-manifold gate flags before sampling")
    gate.add_argument("--strict", action="store_true",
                      help="refuse to sample (exit 2) when significantly more events are flagged "
                           "off-manifold than expected")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("evaluate", help="metrics.json and corner plots from the posteriors")
    common(p, "recompute metrics.json even where it is current")
    sampling(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("calibrate", help="coverage and SBC ranks of the posteriors over many simulated "
                       "observations (the config's calibration: section)")
    common(p, "recompute every observation even where current records exist")
    sampling(p)
    p.add_argument("--workers", type=_int_at_least(1),
                   help="worker processes of the local dask cluster (default 1)")
    p.add_argument("--scheduler", help="address of a running dask scheduler, instead of a local cluster")
    p.set_defaults(func=cmd_calibrate)
    return parser


def _message(err: BaseException) -> str:
    """An exception's message on one line; an OS error as ``<file>: <reason>``."""
    if isinstance(err, OSError) and not isinstance(err, MfinferError) and err.strerror:
        name = "" if err.filename is None else str(err.filename)
        text = err.strerror if name in err.strerror else f"{name}: {err.strerror}"
        if isinstance(err, PermissionError):
            text += "; check the permissions of that path or use another one"
    elif isinstance(err, KeyError) and not isinstance(err, MfinferError):
        text = f"missing key {err}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed by argparse
        return exit_.code if isinstance(exit_.code, int) else 2
    error: BaseException
    try:
        args.func(args)
        return 0
    except KeyboardInterrupt as err:
        code, line, error = 130, "interrupted; run the same command again to resume", err
    except (MfinferError, OSError, ValueError, KeyError) as err:
        code, line, error = 2, f"error: {_message(err)}", err
    except Exception as err:
        code, line, error = 1, (f"unexpected error: {type(err).__name__}: {_message(err)}; please "
                                "rerun with --debug for the traceback and report it"), err
    if args.debug:
        traceback.print_exception(error)
    else:
        print(f"mfinfer {args.command}: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
