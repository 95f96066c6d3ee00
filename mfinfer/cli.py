"""The ``mfinfer`` command line: ``run``, ``simulate``, ``train``, ``infer``, ``evaluate``.

Every subcommand takes a YAML run configuration (see ``mfinfer.config.RunConfig``) and works in its
run directory, so the stages can be run one by one or all at once with ``mfinfer run``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from mfinfer.config import ConfigError, RunConfig, load_config

__all__ = ["main"]


def _config(args: argparse.Namespace) -> RunConfig:
    cfg = load_config(args.config)
    changes = {}
    if getattr(args, "seeds", None):
        changes["seeds"] = args.seeds
    if getattr(args, "device", None):
        changes["device"] = args.device
    if getattr(args, "output_dir", None):
        changes["output_dir"] = args.output_dir
    return replace(cfg, **changes) if changes else cfg


def _run(config: RunConfig, seed: int, args: argparse.Namespace):
    from mfinfer.pipeline import Run

    return Run(config, seed, progress=not args.quiet)


def cmd_run(args: argparse.Namespace) -> None:
    from mfinfer.pipeline import run_all

    cfg = _config(args)
    summary = run_all(cfg, tuple(args.stages), workers=args.workers, progress=not args.quiet,
                      scheduler=args.scheduler)
    print(format_summary(summary, cfg))
    base = Path(cfg.output_dir) / cfg.name
    print(f"\nrun directory: {base}  (summary.json, seed_*/metrics.json, seed_*/timings.json, "
          "seed_*/plots/corner_point_*.png)")


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
        for s in cfg.seeds:
            _run(cfg, s, args).simulate()
        return
    from mfinfer.registry import get_simulator

    sim = get_simulator(cfg.simulator["name"], **cfg.simulator.get("options", {}))
    rng = np.random.default_rng(args.seed)
    if args.theta is not None:
        theta = np.repeat(sim.prior.check(np.array(args.theta, float), "--theta"), args.n, axis=0)
        x = sim.sample(theta, rng)
    else:
        theta, x = sim.simulate(args.n, rng)
    meta = {"simulator": cfg.simulator, "seed": args.seed, "n": args.n}
    out = Path(args.out)
    if out.suffix == ".root":
        from mfinfer.io import write_events

        write_events(out, x, theta, names=getattr(sim, "observable_names", None), metadata=meta)
    elif out.suffix == ".npz":
        from mfinfer.utils import atomic_write

        atomic_write(out, lambda f: np.savez(f, x=x, theta=theta))
    else:
        raise ValueError(f"--out: expected a .root or .npz path, got {out}")
    print(f"wrote {len(x)} events to {out}")


def cmd_train(args: argparse.Namespace) -> None:
    cfg = _config(args)
    for s in cfg.seeds:
        run = _run(cfg, s, args)
        run.simulate()
        run.train(only=args.model)


def _read_events(args: argparse.Namespace, data_dim: int) -> np.ndarray:
    path = Path(args.events)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return f["x"]
    from mfinfer.io import read_events, read_user_events

    if args.branches or args.leptons:
        selection = _event_selection(args) if args.leptons else None
        x, _ = read_user_events(path, args.tree, branches=args.branches, selection=selection)
        return x
    return read_events(path, tree=args.tree)[0]


def _event_selection(args: argparse.Namespace):  # returns the simulator's selection object
    """The simulator's own selection of events from jagged collections (``--leptons``)."""
    from mfinfer.registry import get_simulator

    cfg = _config(args)
    sim = get_simulator(cfg.simulator["name"], **cfg.simulator.get("options", {}))
    if not hasattr(sim, "event_selection"):
        raise ValueError(f"--leptons: simulator {cfg.simulator['name']!r} defines no "
                         "event_selection(); read flat branches with --branches instead")
    return sim.event_selection()


def cmd_infer(args: argparse.Namespace) -> None:
    cfg = _config(args)
    for s in cfg.seeds:
        run = _run(cfg, s, args)
        if args.events:
            x = _read_events(args, run.simulator.data_dim)
            tag = Path(args.events).stem
            run.infer(x_obs=x, tag=tag)
            from mfinfer.inference import Posterior

            for m in cfg.models:
                post = Posterior.load(run.posterior_path(tag, m.name))
                print(f"{m.name}: mean {np.round(post.mean, 4).tolist()} "
                      f"std {np.round(post.std, 4).tolist()}")
        else:
            run.infer()


def cmd_evaluate(args: argparse.Namespace) -> None:
    from mfinfer.evaluation.report import summarize

    cfg = _config(args)
    results = [_run(cfg, s, args).evaluate() for s in cfg.seeds]
    print(format_summary(summarize(results), cfg))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfinfer", description="Simulation-based inference with "
                                     "manifold-learning flows (M-flows).")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="YAML run configuration")
        p.add_argument("--seeds", type=int, nargs="+", help="override the config's seeds")
        p.add_argument("--device", help="override the config's device (cpu, cuda, auto)")
        p.add_argument("--output-dir", help="override the config's output_dir")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("run", help="the whole pipeline: simulate, train, infer, evaluate")
    common(p)
    p.add_argument("--stages", nargs="+", default=["simulate", "train", "infer", "evaluate"],
                   choices=["simulate", "train", "infer", "evaluate"])
    p.add_argument("--workers", type=int, default=1,
                   help="run seeds in parallel dask worker processes")
    p.add_argument("--scheduler", help="address of an existing dask scheduler")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("simulate",
                       help="simulate training and observed data, or --out a sample file")
    common(p)
    p.add_argument("--out", help="write N events to this .root (TTree) or .npz file instead")
    p.add_argument("--n", type=int, default=1000, help="number of events for --out")
    p.add_argument("--theta", type=float, nargs="+", help="simulate at this θ (default: θ ~ prior)")
    p.add_argument("--seed", type=int, default=0, help="seed for --out")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="train the config's models (resumes from checkpoints)")
    common(p)
    p.add_argument("--model", help="train only this model")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("infer", help="sample posteriors for the observed data or for --events")
    common(p)
    p.add_argument("--events", help="observed events: a .root or .npz file")
    p.add_argument("--tree", default="events", help="tree name in the ROOT file")
    p.add_argument("--branches", nargs="+", help="branch expressions to read as observables")
    p.add_argument("--leptons", action="store_true",
                   help="read jagged Electron_*/Muon_* branches with the 2e2μ lepton selection")
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("evaluate", help="metrics.json and corner plots from the posteriors")
    common(p)
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, FileNotFoundError, ValueError, KeyError) as err:
        print(f"mfinfer {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
