"""Run configuration: frozen dataclasses read from YAML (``yaml.safe_load`` only).

The whole config is checked when it is built, before any work: the type of every field (from its
annotation; integers are never booleans) and its range (field metadata ``min``, ``gt``, ``lt``,
``min_len``), the choices, and, against the simulator it names, the true points (``param_dim``
numbers inside the prior), the MCMC ensemble, every model's options (the model is built once) and
``train`` section (:class:`~mfinfer.training.TrainConfig`), the ``metrics`` options and the device.
Every problem raises ``ConfigError`` naming the field path (``models[M-flow].options.num_layers``,
``observed.theta[1]``), what was expected and what was got. A config plus a seed determines a run
completely (see ``mfinfer.pipeline``).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from mfinfer._validation import check_name, check_names
from mfinfer.errors import ConfigError, MfinferError
from mfinfer.inference.spec import PosteriorSpec, posterior_section
from mfinfer.io.events import EventsConfig
from mfinfer.io.simulations import SimulationsConfig
from mfinfer.models import MODELS, ManifoldFlow
from mfinfer.overrides import apply_overrides
from mfinfer.schema import (
    MAX_COUNT,
    MAX_THREADS,
    build,
    check,
    check_fields,
    choice,
    read_yaml,
    short,
    unknown,
)
from mfinfer.training import TrainConfig

__all__ = [
    "ConfigError",
    "MCMCConfig",
    "ModelConfig",
    "ObservedConfig",
    "RunConfig",
    "build_simulator",
    "check_device",
    "load_config",
    "posterior_section",
]

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
#: ranges of model and metrics options, by annotated (or default) type: sizes and scales.
_OPTION_RANGES: dict[type, dict[str, float]] = {int: {"min": 1, "max": MAX_COUNT}, float: {"gt": 0}}
#: model options are layer counts and widths: 10000 already makes layers of 10^8 weights.
_MODEL_RANGES: dict[type, dict[str, float]] = {int: {"min": 1, "max": 10_000}, float: {"gt": 0}}


# ------------------------------------------------------------------ the config
@dataclass(frozen=True)
class ModelConfig:
    """One model to train: a name, the class (``kind``), constructor options and training
    settings (the fields of :class:`~mfinfer.training.TrainConfig` but ``seed`` and ``device``,
    which the run sets). ``ensemble: K`` > 1 trains K members with different seeds and uses their
    mixture (:mod:`mfinfer.models.ensemble`)."""

    name: str = field(metadata={"min_len": 1})
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    mode: Literal["manifold", "pie"] = "manifold"
    ensemble: int = field(default=1, metadata={"min": 1})

    def __post_init__(self) -> None:
        check_fields(self, self.where)
        check_name(self.name, f"{self.where}.name", slash=True, error=ConfigError)
        choice(self.kind, tuple(MODELS), f"{self.where}.kind")
        for key in ("seed", "device"):
            if key in self.train:
                raise ConfigError(f"{self.where}.train.{key}: set by the run (the config's "
                                  f"{'seeds' if key == 'seed' else 'device'}); remove it here")
        self.settings  # noqa: B018 (built once here: TrainConfig checks every field)

    @property
    def where(self) -> str:
        """This model's path in error messages: ``models[<name>]``."""
        return f"models[{short(self.name)[1:-1] if isinstance(self.name, str) else short(self.name)}]"

    @cached_property
    def settings(self) -> TrainConfig:
        """The ``train`` section as a :class:`~mfinfer.training.TrainConfig` (built and checked
        once; ``seed`` and ``device`` are the run's, see :meth:`train_config`)."""
        where = f"{self.where}.train"
        allowed = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("seed", "device")]
        for key in self.train:
            if key not in allowed:
                unknown(key, allowed, where)
        try:
            return build(TrainConfig, self.train, where)
        except ConfigError as err:
            text = str(err)
            raise ConfigError(where + text.removeprefix("TrainConfig") if text.startswith("TrainConfig.")
                              else text) from None

    def train_config(self, seed: int, device: str, progress: bool = True) -> TrainConfig:
        """The training settings of one run: :attr:`settings` with the run's seed and device."""
        return dataclasses.replace(self.settings, seed=seed, device=device,
                                   progress=self.train.get("progress", progress))


@dataclass(frozen=True)
class ObservedConfig:
    """Observed data: ``n_events`` simulated at each true point θ* (list of (p,) lists)."""

    theta: list[list[float]] = field(default_factory=list)  # none: infer --events only
    n_events: int = field(default=20, metadata={"min": 1, "max": MAX_COUNT})

    def __post_init__(self) -> None:
        check_fields(self, "observed")


def MCMCConfig(**fields: Any) -> PosteriorSpec:
    """The former ``mcmc:`` section's class: its fields (``method`` default ``emcee``,
    ``num_samples``, ``num_walkers``, ``max_steps``) as a :class:`PosteriorSpec`."""
    warnings.warn("MCMCConfig is deprecated; use mfinfer.inference.PosteriorSpec", DeprecationWarning,
                  stacklevel=2)
    return PosteriorSpec.from_options(**{"method": "emcee", **fields}, where="mcmc")


@dataclass(frozen=True)
class RunConfig:
    """A whole experiment: simulate, train every model, infer, evaluate.

    Attributes:
        name: the run directory is ``output_dir/name/seed_<seed>``.
        simulator: ``{"name": ..., "options": {...}}`` (a simulator registered under the
            ``mfinfer.simulators`` entry points).
        n_train: number of training simulations, θ ~ prior (not with ``simulations``).
        models: models to train and compare.
        observed: true points and number of observed events (optional: none, then the data
            come with ``mfinfer infer --events``).
        posterior: how posteriors are sampled (:class:`~mfinfer.inference.spec.PosteriorSpec`:
            ``method`` auto/grid/smc/emcee, ``num_samples``, ``grid:``/``smc:``/``emcee:`` options);
            an old ``mcmc:`` section is read with a warning.
        seeds: one run per seed; medians are taken over them.
        truth: also sample the true posterior (needs the simulator's exact likelihood).
        metrics: options of the metrics (``mfinfer.evaluation.registry.option_defaults()``:
            ``{"c2st": true, "kde_bandwidth": 0.15, "n_model_samples": 2000}``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:<index>`` or ``mps``.
        threads: torch CPU threads per run (at most ``mfinfer.schema.MAX_THREADS``, 1024).
        output_dir: where run directories go.
        events: how ``mfinfer infer --events FILE.root`` reads lepton collections and gates the
            events (``mfinfer.io.events.EventsConfig``: ``{preset: nanoaod}``, ``{preset:
            cms-tutorial}``, overrides); None: the simulator's default selection.
        simulations: train on the user's ROOT files instead of simulating
            (:class:`~mfinfer.io.simulations.SimulationsConfig`; :mod:`mfinfer.sources`); without a
            simulator the run needs ``prior`` and has no ``n_train``, ``observed`` or truth.
        prior: ``{box: {low, high}}`` or ``{gaussian: {loc, scale}}`` for a run from
            ``simulations`` that names no simulator (:func:`mfinfer.priors.prior_from_config`).
    """

    name: str = field(metadata={"min_len": 1})
    simulator: dict[str, Any] | None = field(default=None, kw_only=True)
    n_train: int | None = field(default=None, kw_only=True, metadata={"min": 2, "max": MAX_COUNT})
    models: list[ModelConfig] = field(metadata={"min_len": 1})
    observed: ObservedConfig = field(default_factory=ObservedConfig, kw_only=True)
    posterior: PosteriorSpec = field(default_factory=PosteriorSpec)
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"min": 0, "min_len": 1})
    truth: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    threads: int = field(default=1, metadata={"min": 1, "max": MAX_THREADS})
    output_dir: str = field(default="runs", metadata={"min_len": 1})
    events: EventsConfig | None = None
    simulations: SimulationsConfig | None = None
    prior: dict[str, Any] | None = None

    @cached_property
    def source(self) -> Any:
        """Where the training data come from (:func:`mfinfer.sources.data_source`): the
        ``simulations:`` files, else the simulator."""
        from mfinfer.sources import data_source

        return data_source(self.simulator, self.simulations, self.prior)

    def __post_init__(self) -> None:
        check_fields(self, "")
        check_name(self.name, "name", error=ConfigError)
        names = [m.name for m in self.models]
        if len(set(names)) != len(names) or "truth" in names:
            raise ConfigError(f"models: names must be unique and not 'truth', got {short(names)}")
        check_names(names, "models", ".name", slash=True, error=ConfigError)
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: expected distinct seeds, got {self.seeds}")
        check_device(self.device)
        _check_metrics(self.metrics)
        sim = self.source.spec  # the simulator, or the simulations' dimensions and prior
        p = sim.param_dim
        _check_source(self)
        for k, row in enumerate(self.observed.theta):
            _check_point(row, sim, f"observed.theta[{k}]")
        walkers = self.posterior.options("emcee").num_walkers
        if self.posterior.method == "emcee" and walkers < 2 * p:
            raise ConfigError(f"posterior.emcee.num_walkers: emcee's stretch move needs at least 2 * "
                              f"param_dim = {2 * p} walkers for {p} parameters, got {walkers}")
        for m in self.models:
            _check_options(m, sim)
        if self.events is not None and self.simulator is not None:
            self.events.selection(sim, self.simulator["name"])  # ConfigError: none, or refused

    @classmethod
    def from_dict(cls, data: Any) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"config: expected a mapping of fields (name:, simulator:, n_train:, "
                              f"models:, observed:, ...), got {type(data).__name__}")
        data = dict(data)
        if "models" in data:
            if not isinstance(data["models"], list):
                raise ConfigError(f"models: expected a list of mappings (one per model), got "
                                  f"{type(data['models']).__name__}")
            data["models"] = [build(ModelConfig, m, f"models[{m.get('name') or i}]"
                                     if isinstance(m, dict) else f"models[{i}]")
                              for i, m in enumerate(data["models"])]
        data = posterior_section(data)
        if "observed" in data:
            data["observed"] = build(ObservedConfig, data["observed"], "observed")
        if data.get("events") is not None:
            data["events"] = EventsConfig.from_dict(data["events"], "events")
        if data.get("simulations") is not None:
            data["simulations"] = SimulationsConfig.from_dict(data["simulations"], "simulations")
            _check_no_truth(data)
        return build(cls, data, "config")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def mcmc(self) -> PosteriorSpec:
        """The former name of :attr:`posterior`."""
        return self.posterior


# ------------------------------------------------------------------ checks against the simulator
def _check_source(cfg: RunConfig) -> None:
    """What a run without a simulator (or with simulations: files) cannot have."""
    if cfg.simulator is None:
        for key, given in (("observed", cfg.observed.theta), ("n_train", cfg.n_train is not None)):
            if given:
                raise ConfigError(f"{key}: needs a simulator (the data come from simulations: files); "
                                  "remove it and give observed events with `mfinfer infer --events`")
        object.__setattr__(cfg, "truth", False)  # no simulator, no exact likelihood
        for m in cfg.models:
            if m.kind == "FOMFlow":
                raise ConfigError(f"{m.where}.kind: FOMFlow needs a simulator's chart; use "
                                  "ManifoldFlow or AmbientFlow")
            if m.kind == "ManifoldFlow" and cfg.source.spec.manifold_dim is None:
                raise ConfigError(f"{m.where}.kind: ManifoldFlow needs the manifold dimension; add "
                                  "simulations.manifold_dim")
    elif cfg.simulations is None and cfg.n_train is None:
        raise ConfigError("n_train: missing; give the number of training simulations (or "
                          "simulations: files)")


def _check_no_truth(data: dict[str, Any]) -> None:
    """A run from ``simulations:`` files that names no simulator has no exact likelihood, so an
    explicit request for the true posterior (``truth: true``, ``metrics: {c2st: true}``) is refused
    rather than dropped (``truth`` left out defaults to false there)."""
    if data.get("simulator") is not None:
        return
    metrics = data.get("metrics")
    for key, given in (("truth", data.get("truth")),
                       ("metrics.c2st", metrics.get("c2st") if isinstance(metrics, dict) else None)):
        if given is True:
            raise ConfigError(f"{key}: true needs the exact posterior, which a run from simulations: files "
                              "without a simulator does not have; remove it, or name the simulator: "
                              "that made the files")


def build_simulator(spec: dict[str, Any]) -> Any:
    """The simulator the config names, built once (its options checked by its constructor)."""
    from mfinfer.registry import SimulatorSpec

    return SimulatorSpec.from_dict(spec).build()


def _check_point(row: list[float], sim: Any, where: str) -> None:
    import numpy as np

    p = sim.param_dim
    names = getattr(sim, "param_names", None)
    if len(row) != p:
        named = f" ({', '.join(map(str, names))})" if names else ""
        raise ConfigError(f"{where}: expected {p} number{'s' * (p != 1)}, one per parameter{named}"
                          f" of the simulator, got {len(row)}: {short(row)}")
    if not sim.prior.contains(np.asarray([row], dtype=float))[0]:
        low, high = sim.prior.bounds
        raise ConfigError(f"{where}: {short(row)} is outside the prior support [{low.tolist()}, "
                          f"{high.tolist()}]; choose a true point inside the prior")


def _option_hints(kind: str) -> dict[str, Any]:
    """A model class's keyword options and their annotated types; ``**arch`` adds the
    architecture options of ``flow_transform``."""
    from mfinfer.models.transforms import ARCH_OPTIONS, flow_transform

    params = dict(inspect.signature(MODELS[kind].__init__, eval_str=True).parameters)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        arch = inspect.signature(flow_transform, eval_str=True).parameters
        params |= {k: arch[k] for k in ARCH_OPTIONS}
    return {k: p.annotation for k, p in params.items() if p.kind is p.KEYWORD_ONLY}


def _check_options(model: ModelConfig, sim: Any) -> None:
    """Check a model's options by type, then build the model once for the simulator (cheap; it
    refuses unknown options). The global torch RNG is left as it was."""
    import torch

    from mfinfer.models import build_model

    where = f"{model.where}.options"
    hints = _option_hints(model.kind)
    hints.pop("param_dim", None)  # the simulator's
    for key, value in model.options.items():
        if key == "param_dim":
            raise ConfigError(f"{where}.param_dim: set from the simulator; remove it here")
        if key not in hints:
            unknown(key, sorted(hints), where, f"unknown option of {model.kind}")
        check(value, hints[key], f"{where}.{key}", _MODEL_RANGES.get(hints[key]))
    try:
        with torch.random.fork_rng(devices=[]):
            built = build_model(model.kind, sim, **model.options)
    except (MfinferError, TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"{where}: {err}") from None
    if model.mode == "pie" and not (isinstance(built, ManifoldFlow) and built.encoder is None):
        raise ConfigError(f"{model.where}.mode: 'pie' needs a ManifoldFlow without encoder, got "
                          f"{model.kind} {model.options}; use mode: manifold")


def _check_metrics(metrics: dict[str, Any]) -> None:
    from mfinfer.evaluation.registry import option_defaults, resolve_options

    resolve_options(metrics)  # ConfigError naming an unknown option and the allowed ones
    for key, default in option_defaults().items():
        if key in metrics:
            check(metrics[key], type(default), f"metrics.{key}", _OPTION_RANGES.get(type(default)))


def check_device(device: str) -> None:
    import torch

    if not _DEVICE.fullmatch(device):
        raise ConfigError(f"device: must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps', got "
                          f"{short(device)}; use 'auto' (a GPU when there is one) or 'cpu'")
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(device.partition(":")[2] or 0) >= count:
            raise ConfigError(f"device: {device!r} asked for, but torch sees {count} CUDA "
                              "device(s); use device 'auto' or 'cpu' (or --device cpu)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' asked for, but torch sees no MPS device; use device "
                          "'auto' or 'cpu' (or --device cpu)")


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None,
                settings: Mapping[str, Any] | None = None) -> RunConfig:
    """Read and validate a YAML run configuration.

    Arguments:
        path: the YAML file.
        settings: fields set by dotted path before anything is checked (the CLI's ``--set``,
            :func:`mfinfer.overrides.apply_overrides`: ``{"models.AF.train.epochs": 2}``).
        overrides: top-level fields that replace the file's (the CLI's ``--seeds``, ...); they are
            validated with the rest.

    Raises:
        OSError: the file cannot be read (``FileNotFoundError``, ``IsADirectoryError``, ...).
        ConfigError: invalid YAML or any invalid field (the message names the file and field).
    """
    path = Path(path)
    data = apply_overrides(read_yaml(path, "run configuration"), settings or {})
    if overrides and isinstance(data, dict | None):
        data = {**(data or {}), **overrides}
    try:
        return RunConfig.from_dict({} if data is None else data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
