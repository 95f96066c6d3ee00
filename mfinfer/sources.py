"""Where training data come from: a registered simulator, or the user's files (``simulations:``).

Both sources give training the same arrays, ``theta`` (n, p), ``x`` (n, D) and, where known,
``weight`` (n,) and the joint ``score`` (n, p); training never knows which. A source also says what
the models are built for (:class:`DataSpec`: dimensions and the prior, in place of a simulator for
:func:`mfinfer.models.build_model`) and gives the off-manifold gate its reference events.

- :class:`SimulatorSource`: θ ~ prior, x ~ simulator; references are fresh simulations.
- :class:`FileSource`: the files of a :class:`~mfinfer.io.simulations.SimulationsConfig`, read in
  chunks into a content-keyed cache of memory-mapped arrays (:mod:`mfinfer.io.sample_store`); the
  prior is the run's ``prior:`` section or the simulator's; references are a seeded random subset of
  the sample (events the models were trained on, so the gate's threshold is a little tight).

:func:`data_source` picks one from a run config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfinfer.caching import array_digest
from mfinfer.errors import ConfigError
from mfinfer.io.simulations import SimulationsConfig

__all__ = ["DataSpec", "FileSource", "SimulatorSource", "data_source", "sample_digest"]


def sample_digest(data: Mapping[str, Any]) -> str:
    """SHA-256 of a training sample: ``x`` and ``theta``, then ``weight`` and ``score`` where present
    (so a simulator's sample of x and θ alone keeps the digest it always had)."""
    return array_digest(data["x"], data["theta"], *(data[k] for k in ("weight", "score") if k in data))


@dataclass(frozen=True)
class DataSpec:
    """What a model is built for when no simulator names it: the dimensions and the prior.

    Attributes:
        data_dim: D, the number of observables.
        param_dim: p, the number of parameters.
        manifold_dim: d, the manifold dimension of manifold models (None: not given).
        prior: the prior over θ.
    """

    data_dim: int
    param_dim: int
    manifold_dim: int | None
    prior: Any


class SimulatorSource:
    """Training data simulated by a registered simulator (θ ~ prior, one event per θ)."""

    def __init__(self, simulator: Any) -> None:
        self.simulator = simulator
        self.spec = simulator
        self.prior = simulator.prior

    def simulate(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``{"theta": (n, p), "x": (n, D)}``."""
        theta, x = self.simulator.simulate(n, rng)
        return {"theta": theta, "x": x}

    def reference(self, n: int, rng: np.random.Generator, sample: Any = None) -> np.ndarray:
        """``n`` fresh events (n, D) for the off-manifold gate's threshold."""
        return self.simulator.simulate(n, rng)[1]


class FileSource:
    """Training data read from the user's ROOT files (the ``simulations:`` section)."""

    def __init__(self, cfg: SimulationsConfig, prior: Any, simulator: Any = None,
                 selection: Any = None, spec: DataSpec | Any = None) -> None:
        self.cfg, self.prior, self.simulator, self.selection = cfg, prior, simulator, selection
        self.spec = spec if spec is not None else simulator

    def sample(self, directory: str | Path, *, client: Any = None, progress: bool = False,
               log: Any = None) -> dict[str, np.ndarray]:
        """The sample, read once and cached under ``directory`` (memory-mapped arrays). A weight
        column of ones is dropped: such a sample trains exactly as an unweighted one."""
        from mfinfer.io.sample_store import read_sample

        data = read_sample(self.cfg, self.prior, directory, selection=self.selection, client=client,
                           progress=progress, log=log)
        if data["x"].shape[1] != self.spec.data_dim:
            raise ConfigError(f"simulations.observables: the files give {data['x'].shape[1]} "
                              f"observables per event, the models expect {self.spec.data_dim}")
        if "weight" in data and bool(np.all(data["weight"] == 1.0)):
            data = {k: v for k, v in data.items() if k != "weight"}
        return data

    def reference(self, n: int, rng: np.random.Generator, sample: Any = None) -> np.ndarray:
        """A seeded random subset of ``n`` events (n, D) of the ``sample`` (all when fewer)."""
        x = sample["x"]
        idx = np.sort(rng.choice(len(x), size=min(n, len(x)), replace=False))
        return np.asarray(x[idx], dtype=np.float64)

    def read_events(self, path: str | Path, tree: str | None = None) -> np.ndarray:
        """Observed events (n, D) of one file, read with the section's observables."""
        from mfinfer.io.sample_store import read_observables

        return read_observables(path, self.cfg, tree, self.selection)


def _selection(cfg: SimulationsConfig, simulator: Any, simulator_name: str | None) -> tuple[Any, Any]:
    """The lepton selection of ``observables: {events: ...}`` and the simulator that defines it."""
    from mfinfer.config import build_simulator

    if cfg.events is None:
        return None, None
    if simulator is None:
        if cfg.selection is None:
            raise ConfigError("simulations.selection: lepton collections need a selection; name the "
                              "registered simulator that defines it, e.g. selection: higgs4l")
        simulator_name = cfg.selection
        simulator = build_simulator({"name": cfg.selection})
    return cfg.events.selection(simulator, simulator_name, "simulations.observables.events"), simulator


def data_source(simulator_spec: dict | None, simulations: SimulationsConfig | None,
                prior_spec: dict | None) -> SimulatorSource | FileSource:
    """The run's data source: its files when it has a ``simulations:`` section, else its simulator.

    Arguments:
        simulator_spec: the config's ``simulator:`` (``{"name", "options"}``) or None.
        simulations: the config's ``simulations:`` section or None.
        prior_spec: the config's ``prior:`` section (needed, and only allowed, without a simulator).

    Raises:
        ConfigError: neither a simulator nor files; a prior with a simulator or none without one;
            dimensions that disagree (θ columns vs the prior, observables vs the simulator).
    """
    from mfinfer.config import build_simulator
    from mfinfer.priors import prior_from_config

    simulator = None if simulator_spec is None else build_simulator(simulator_spec)
    if simulations is None:
        if simulator is None:
            raise ConfigError("simulator: missing; name a registered simulator (simulator: {name: "
                              "power}) or give your own simulations (simulations: and prior:)")
        if prior_spec is not None:
            raise ConfigError("prior: the simulator defines the prior; remove prior: (it is for runs "
                              "from simulations: files that name no simulator)")
        return SimulatorSource(simulator)
    if simulator is not None and prior_spec is not None:
        raise ConfigError("prior: the simulator defines the prior; remove prior: or the simulator")
    if simulator is None and prior_spec is None:
        raise ConfigError("prior: missing; a run from simulations: files without a simulator needs "
                          "one, e.g. prior: {box: {low: [0, 0], high: [1, 1]}}")
    prior = simulator.prior if simulator is not None else prior_from_config(prior_spec or {}, "prior")
    if simulations.param_dim != prior.dim:
        raise ConfigError(f"simulations.theta: expected one branch per parameter of the prior "
                          f"({prior.dim}), got {simulations.param_dim}: {simulations.theta}")
    name = None if simulator_spec is None else simulator_spec.get("name")
    selection, selector = _selection(simulations, simulator, name)
    if simulator is not None:
        if simulations.data_dim not in (None, simulator.data_dim):
            raise ConfigError(f"simulations.observables: simulator {name!r} has {simulator.data_dim} "
                              f"observables, the section reads {simulations.data_dim}")
        return FileSource(simulations, prior, simulator, selection)
    data_dim: int = simulations.data_dim if selector is None else selector.data_dim  # type: ignore[assignment]
    manifold_dim = simulations.manifold_dim
    if manifold_dim is None and selector is not None:
        manifold_dim = getattr(selector, "manifold_dim", None)
    if manifold_dim is not None and not manifold_dim < data_dim:
        raise ConfigError(f"simulations.manifold_dim: expected fewer than the {data_dim} observables, "
                          f"got {manifold_dim}")
    spec = DataSpec(data_dim, prior.dim, manifold_dim, prior)
    return FileSource(simulations, prior, None, selection, spec)
