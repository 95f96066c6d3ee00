"""Run configuration: frozen dataclasses read from YAML (``yaml.safe_load`` only).

Unknown or invalid fields raise ``ConfigError`` naming the field and the allowed values. A config
plus a seed determines a run completely (see ``mfinfer.pipeline``).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mfinfer.errors import ConfigError
from mfinfer.models import MODELS
from mfinfer.training import SCHEDULES, TrainConfig

__all__ = ["ConfigError", "MCMCConfig", "ModelConfig", "ObservedConfig", "RunConfig", "load_config"]


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate a dataclass from a mapping, naming unknown fields with the nearest allowed
    ones."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in allowed:
            near = difflib.get_close_matches(key, allowed, n=3, cutoff=0.0)
            rest = [a for a in allowed if a not in near]
            raise ConfigError(f"{where}.{key}: unknown field; allowed: {near + rest}")
    try:
        return cls(**data)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None


def _choice(value: Any, allowed: tuple, where: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}: must be one of {allowed}, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """One model to train: a name, the class (``kind``), constructor options and training
    settings."""

    name: str
    kind: str
    options: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    mode: str = "manifold"

    def __post_init__(self) -> None:
        _choice(self.kind, tuple(MODELS), f"models[{self.name}].kind")
        _choice(self.mode, ("manifold", "pie"), f"models[{self.name}].mode")
        try:
            self.train_config(0, "cpu")
        except (TypeError, ValueError) as err:
            fields = [f.name for f in dataclasses.fields(TrainConfig)]
            raise ConfigError(f"models[{self.name}].train: {err}; allowed fields: {fields}, "
                              f"schedules {SCHEDULES}") from None

    def train_config(self, seed: int, device: str, progress: bool = True) -> TrainConfig:
        return TrainConfig(**{"progress": progress, **self.train, "seed": seed, "device": device})


@dataclass(frozen=True)
class ObservedConfig:
    """Observed data: ``n_events`` simulated at each true point θ* (list of (p,) lists)."""

    theta: list
    n_events: int = 20

    def __post_init__(self) -> None:
        if self.n_events < 1:
            raise ConfigError(f"observed.n_events: expected >= 1, got {self.n_events}")
        if not self.theta:
            raise ConfigError("observed.theta: give at least one true parameter point")


@dataclass(frozen=True)
class MCMCConfig:
    """Posterior sampling settings (see ``mfinfer.inference.sample_posterior``)."""

    num_samples: int = 5000
    num_walkers: int = 32
    max_steps: int = 20_000


@dataclass(frozen=True)
class RunConfig:
    """A whole experiment: simulate, train every model, infer, evaluate.

    Attributes:
        name: the run directory is ``output_dir/name/seed_<seed>``.
        simulator: ``{"name": ..., "options": {...}}`` (a simulator registered under the
            ``mfinfer.simulators`` entry points).
        n_train: number of training simulations, θ ~ prior.
        models: models to train and compare.
        observed: true points and number of observed events.
        mcmc: posterior sampling.
        seeds: one run per seed; medians are taken over them.
        truth: also sample the true posterior (needs the simulator's exact likelihood).
        metrics: options of the metrics (``mfinfer.evaluation.registry.option_defaults()``:
            ``{"c2st": true, "kde_bandwidth": 0.15, "n_model_samples": 2000}``).
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: torch CPU threads per run.
        output_dir: where run directories go.
    """

    name: str
    simulator: dict
    n_train: int
    models: list
    observed: ObservedConfig
    mcmc: MCMCConfig = field(default_factory=MCMCConfig)
    seeds: list = field(default_factory=lambda: [0])
    truth: bool = True
    metrics: dict = field(default_factory=dict)
    device: str = "cpu"
    threads: int = 1
    output_dir: str = "runs"

    def __post_init__(self) -> None:
        from mfinfer.evaluation.registry import resolve_options
        from mfinfer.registry import available_simulators

        if self.n_train < 2:
            raise ConfigError(f"n_train: expected >= 2, got {self.n_train}")
        _choice(self.simulator.get("name"), tuple(available_simulators()), "simulator.name")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names) or "truth" in names:
            raise ConfigError(f"models: names must be unique and not 'truth', got {names}")
        resolve_options(self.metrics)  # ConfigError naming an unknown option and the allowed ones

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        data = dict(data)
        data["models"] = [_build(ModelConfig, m, f"models[{i}]")
                          for i, m in enumerate(data.get("models", []))]
        data["observed"] = _build(ObservedConfig, data.get("observed", {}), "observed")
        data["mcmc"] = _build(MCMCConfig, data.get("mcmc", {}), "mcmc")
        return _build(cls, data, "config")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run configuration."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    return RunConfig.from_dict(data or {})
