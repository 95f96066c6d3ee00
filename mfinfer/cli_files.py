"""The files the command line reads and writes for the user: the events of ``mfinfer infer
--events`` (``.npz``, flat branches, lepton collections, an mfinfer sample, or as a run's
``simulations:`` files are read), the off-manifold gate's report on them, and the samples of
``mfinfer simulate --out``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mfinfer._validation import as_matrix
from mfinfer.config import RunConfig
from mfinfer.errors import CorruptFileError, InputError, MissingKeyError
from mfinfer.registry import SimulatorSpec
from mfinfer.summaries import final_line

__all__ = ["print_gate", "read_events_arg", "write_sample"]


def write_sample(args: argparse.Namespace, cfg: RunConfig) -> None:
    """``mfinfer simulate --out FILE``: ``--n`` events (at ``--theta``, else θ ~ prior), or the
    run's training sample with ``--training``, to a ``.root`` or ``.npz`` file."""
    t0, out = time.perf_counter(), Path(args.out)
    if out.suffix not in (".root", ".npz"):
        raise InputError(f"--out: expected a .root or .npz path, got {out}")
    if cfg.simulator is None:
        raise InputError("--out: needs a simulator: this config names none (its data come from its "
                         "simulations: files)")
    n, seed, rng = _sample_settings(args, cfg)
    sim, score = SimulatorSpec.from_dict(cfg.simulator).build(), None
    if args.theta is not None:
        theta = np.repeat(sim.prior.check(np.array(args.theta, float), "--theta"), n, axis=0)
        x = sim.sample(theta, rng())
    else:
        try:  # the joint score comes with the same draws where the simulator has one
            theta, x, score = sim.simulate(n, rng(), score=True)
        except NotImplementedError:
            theta, x = sim.simulate(n, rng())
    meta = {"simulator": cfg.simulator, "seed": seed, "n": n, "training": bool(args.training)}
    if out.suffix == ".root":
        from mfinfer.io.simulations import write_simulations

        names = getattr(sim, "observable_names", None)
        paths, section = write_simulations(out, theta, x, names=None if names is None else list(names),
                                           weight=np.ones(len(x)), score=score, metadata=meta,
                                           parts=args.parts)
        print("read them with the config section\n"
              + yaml.safe_dump({"simulations": section}, sort_keys=False, default_flow_style=None))
    else:
        from mfinfer.files import atomic_write

        atomic_write(out, lambda f: np.savez(f, x=x, theta=theta))
        paths = [out]
    print(final_line("simulate", f"wrote {len(x)} events to {', '.join(map(str, paths))}",
                     time.perf_counter() - t0))


def _sample_settings(args: argparse.Namespace, cfg: RunConfig) -> tuple[int, int, Callable[[], Any]]:
    """``(n, seed, make_rng)`` of ``simulate --out``: ``--n``/``--seed``, or with ``--training`` the
    run's training sample (``n_train`` drawn as the simulate stage draws it at the config's seed)."""
    if args.parts > 1 and Path(args.out).suffix != ".root":
        raise InputError(f"--parts: applies to .root files only, got --out {args.out}")
    if not args.training:
        n, seed = args.n or 1000, args.seed or 0
        return n, seed, lambda: np.random.default_rng(seed)
    given = [name for name in ("n", "theta", "seed") if getattr(args, name) is not None]
    if given or len(cfg.seeds) != 1 or cfg.n_train is None:
        raise InputError(f"--training: writes the run's training sample (n_train at the config's one "
                         f"seed); drop --{', --'.join(given) or 'n'} and pass one seed (--seeds S)")
    from mfinfer.caching import seed_sequence
    from mfinfer.pipeline import SEED_STAGES

    seed = cfg.seeds[0]
    return cfg.n_train, seed, lambda: np.random.default_rng(seed_sequence(seed, SEED_STAGES["simulate"]))


@contextlib.contextmanager
def _show_info(logger: str) -> Iterator[None]:
    """Print the INFO messages of ``logger`` on stdout (e.g. mfinfer.io's "selected N of M events
    from FILE") while the block runs."""
    log, handler = logging.getLogger(logger), logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def _read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f.files:
                raise MissingKeyError(f"{path}: no array 'x' (the events); it holds {f.files}; "
                                      "write events with `mfinfer simulate CONFIG --out FILE.npz`")
            x = f["x"]
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        # numpy reads what is not an archive as a pickle, which allow_pickle=False refuses
        reason = "not a .npz (zip) archive" if "pickle" in str(err) else str(err)
        raise CorruptFileError(f"{path}: not a readable .npz file of events ({reason}); write one "
                               "with `mfinfer simulate CONFIG --out FILE.npz`") from None
    if x.ndim == 2 and x.dtype.kind in "fc":
        as_matrix(x, None, f"--events {path}", min_rows=0)  # NaN or inf: named with the file
    return x


def read_events_arg(args: argparse.Namespace, cfg: RunConfig) -> np.ndarray:
    """The events of ``--events``, checked against the simulator's ``data_dim``: a ``.npz``, flat
    ``--branches``, lepton collections read with the config's ``events:`` settings (or, with
    ``--leptons`` and no ``events:``, the simulator's default selection), or an mfinfer sample."""
    from mfinfer.io import read_events, read_lepton_events, read_user_events

    if cfg.simulator is None:  # a run from simulations: files reads events as it read them
        path, dim = Path(args.events), cfg.source.spec.data_dim
        if args.branches or args.leptons:
            flag = "--branches" if args.branches else "--leptons"
            raise InputError(f"{flag}: this run names no simulator; its events are read with the "
                             "simulations: section's observables (and --tree), so drop it")
        with _show_info("mfinfer.io"):
            x = _read_npz(path) if path.suffix == ".npz" else cfg.source.read_events(path, args.tree)
        if x.ndim != 2 or x.shape[1] != dim or len(x) == 0:
            raise InputError(f"--events {path}: expected events of shape (n >= 1, {dim}) as the "
                             f"simulations: observables, got {x.shape}")
        return x
    path, sim = Path(args.events), SimulatorSpec.from_dict(cfg.simulator).build()
    if path.suffix == ".npz":
        x = _read_npz(path)
    elif args.branches or (args.leptons and cfg.events is None):
        selection = _event_selection(sim, cfg) if args.leptons else None
        with _show_info("mfinfer.io"):
            x, _ = read_user_events(path, args.tree or "events", branches=args.branches,
                                    selection=selection)
    elif cfg.events is not None:
        with _show_info("mfinfer.io"):
            events = read_lepton_events(path, sim, cfg.events, tree=args.tree)
        x = events.x
        if events.weights is not None and not np.all(events.weights == 1.0):
            print(f"weights ({cfg.events.weight}): read, not used: the posterior's likelihood treats "
                  "observed events as unweighted")
    else:
        x = read_events(path, tree=args.tree or "events")[0]
    if x.ndim != 2 or x.shape[1] != sim.data_dim or len(x) == 0:
        raise InputError(f"--events {path}: expected events of shape (n >= 1, {sim.data_dim}) for "
                         f"simulator {cfg.simulator['name']!r}, got {x.shape}")
    return x


def _event_selection(sim: Any, cfg: RunConfig) -> Any:  # the simulator's selection object
    """The simulator's own selection of events from jagged collections (``--leptons``)."""
    if not hasattr(sim, "event_selection"):
        raise InputError(f"--leptons: simulator {(cfg.simulator or {}).get('name')!r} defines no "
                         "event_selection(); read flat branches with --branches instead")
    return sim.event_selection()


def print_gate(name: str, gate: dict | None) -> None:
    """The gate's line for one posterior; a loud warning on stderr for a significant excess."""
    if not gate:
        return
    dropped = f"; dropped {len(gate['dropped_indices'])}" if gate["dropped_indices"] else ""
    print(f"{name}: gate: {gate['n_flagged']} of {gate['n_events']} events flagged off-manifold "
          f"({100 * gate['flagged_fraction']:.1f} %, expected {100 * gate['expected_rate']:.2f} %, "
          f"binomial p = {gate['p_value']:.2g}; {gate['score']} > {gate['threshold']:.4g}){dropped}")
    if gate["excess"]:
        fix = ("the flagged events were dropped" if gate["dropped_indices"] else
               "the posterior may be biased: check the events and the events: settings, or rerun with "
               "--on-manifold-only (drop them) or --strict (refuse)")
        print(f"mfinfer infer: WARNING: {name}: {100 * gate['flagged_fraction']:.1f} % of the events are "
              f"off the learned manifold, significantly more than the expected "
              f"{100 * gate['expected_rate']:.2f} % (p = {gate['p_value']:.2g}); {fix}", file=sys.stderr)
