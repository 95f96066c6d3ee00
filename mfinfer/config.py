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
import difflib
import inspect
import math
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Literal, NoReturn, Union, get_args, get_origin, get_type_hints

import yaml

from mfinfer.errors import ConfigError, MfinferError
from mfinfer.inference.mcmc import Method
from mfinfer.io.events import EventsConfig
from mfinfer.models import MODELS, ManifoldFlow
from mfinfer.training import TrainConfig

__all__ = ["ConfigError", "MCMCConfig", "ModelConfig", "ObservedConfig", "RunConfig", "load_config"]

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
#: ranges of the ``train`` fields, checked with their types (``TrainConfig`` checks only some).
_TRAIN_RANGES: dict[str, dict[str, float]] = {
    "epochs": {"min": 1}, "batch_size": {"min": 1}, "lr": {"gt": 0}, "weight_decay": {"min": 0},
    "clip_grad": {"gt": 0}, "validation_fraction": {"min": 0, "lt": 1}, "patience": {"min": 1},
    "mse_weight": {"min": 0}}
#: ranges of model and metrics options, by annotated (or default) type: sizes and scales.
_OPTION_RANGES: dict[type, dict[str, float]] = {int: {"min": 1}, float: {"gt": 0}}


# ------------------------------------------------------------------ generic checks
def _describe(hint: Any, plural: bool = False) -> str:
    """A type hint in words: ``list[list[float]]`` -> "a list of lists of finite numbers"."""
    if get_origin(hint) is list:
        return ("lists" if plural else "a list") + f" of {_describe(get_args(hint)[0], plural=True)}"
    words = {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
             float: ("a finite number", "finite numbers"), str: ("a string", "strings")}
    if hint in words:
        return words[hint][plural]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"{hint.__name__}s" if plural else f"a {hint.__name__}"
    return "mappings" if plural else "a mapping"


_OPS = {"min": ">=", "gt": ">", "lt": "<"}


def _range_text(spec: Mapping[str, Any]) -> str:
    parts = [f"{op} {spec[key]}" for key, op in _OPS.items() if key in spec]
    return f" {' and '.join(parts)}" if parts else ""


def _in_range(value: float, spec: Mapping[str, Any]) -> bool:
    return (value >= spec.get("min", -math.inf) and value > spec.get("gt", -math.inf)
            and value < spec.get("lt", math.inf))


def _is_a(value: Any, hint: Any) -> bool:
    origin = get_origin(hint) or hint
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return isinstance(value, origin)


def _check(value: Any, hint: Any, where: str, spec: Mapping[str, Any] | None = None) -> None:
    """Raise ``ConfigError`` at ``where`` unless ``value`` has type ``hint`` within ``spec``
    (``min``/``gt``/``lt`` for numbers, also inside lists; ``min_len`` for a list or string)."""
    spec = spec or {}
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return _choice(value, args, where)
    if origin in (Union, UnionType):
        if value is None and type(None) in args:
            return
        (hint,) = [a for a in args if a is not type(None)]  # only X | None is used
        return _check(value, hint, where, spec)
    if not _is_a(value, hint):
        raise ConfigError(f"{where}: expected {_describe(hint)}{_range_text(spec)}, "
                          f"got {value!r} ({type(value).__name__})")
    if isinstance(value, list | str) and len(value) < spec.get("min_len", 0):
        raise ConfigError(f"{where}: expected a non-empty {_describe(hint)[2:]}, got {value!r}")
    if isinstance(value, list) and args:
        inner = {k: v for k, v in spec.items() if k != "min_len"}
        for i, item in enumerate(value):
            _check(item, args[0], f"{where}[{i}]", inner)
    elif hint in (int, float) and not _in_range(value, spec):
        raise ConfigError(f"{where}: expected {_describe(hint)}{_range_text(spec)}, got {value!r}")


def _check_fields(obj: Any, where: str) -> None:
    """Check every field of a config dataclass against its annotation and metadata."""
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        _check(getattr(obj, f.name), hints[f.name], f"{where}.{f.name}" if where else f.name,
               f.metadata)


def _choice(value: Any, allowed: tuple, where: str) -> None:
    if value not in allowed:
        near = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"{where}: must be one of {allowed}, got {value!r}{hint}")


def _unknown(key: Any, allowed: list[str], where: str, what: str = "unknown field") -> NoReturn:
    near = difflib.get_close_matches(str(key), allowed, n=3, cutoff=0.0)
    rest = [a for a in allowed if a not in near]
    raise ConfigError(f"{where}.{key}: {what}; allowed: {near + rest} (nearest first)")


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate a config dataclass from a mapping, naming unknown fields with the nearest allowed
    ones and missing required fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {type(data).__name__} "
                          f"{data!r:.80}")
    fields = dataclasses.fields(cls)
    allowed = [f.name for f in fields]
    for key in data:
        if key not in allowed:
            _unknown(key, allowed, where)
    missing = [f.name for f in fields if f.name not in data
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {missing}; add them (see the "
                          f"attributes of mfinfer.config.{cls.__name__})")
    return cls(**data)


# ------------------------------------------------------------------ the config
@dataclass(frozen=True)
class ModelConfig:
    """One model to train: a name, the class (``kind``), constructor options and training
    settings (the fields of :class:`~mfinfer.training.TrainConfig` but ``seed`` and ``device``,
    which the run sets)."""

    name: str = field(metadata={"min_len": 1})
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    mode: Literal["manifold", "pie"] = "manifold"

    def __post_init__(self) -> None:
        _check_fields(self, self.where)
        _choice(self.kind, tuple(MODELS), f"{self.where}.kind")
        where, hints = f"{self.where}.train", get_type_hints(TrainConfig)
        for key, value in self.train.items():
            if key in ("seed", "device"):
                raise ConfigError(f"{where}.{key}: set by the run (the config's "
                                  f"{'seeds' if key == 'seed' else 'device'}); remove it here")
            if key not in hints:
                _unknown(key, [k for k in hints if k not in ("seed", "device")], where)
            _check(value, hints[key], f"{where}.{key}", _TRAIN_RANGES.get(key))
        try:
            self.train_config(0, "cpu")
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {err}") from None

    @property
    def where(self) -> str:
        """This model's path in error messages: ``models[<name>]``."""
        return f"models[{self.name}]"

    def train_config(self, seed: int, device: str, progress: bool = True) -> TrainConfig:
        return TrainConfig(**{"progress": progress, **self.train, "seed": seed, "device": device})


@dataclass(frozen=True)
class ObservedConfig:
    """Observed data: ``n_events`` simulated at each true point θ* (list of (p,) lists)."""

    theta: list[list[float]] = field(metadata={"min_len": 1})
    n_events: int = field(default=20, metadata={"min": 1})

    def __post_init__(self) -> None:
        _check_fields(self, "observed")


@dataclass(frozen=True)
class MCMCConfig:
    """Posterior sampling settings (see ``mfinfer.inference.sample_posterior``); ``num_walkers``
    and ``max_steps`` belong to ``method: emcee`` (the default)."""

    num_samples: int = field(default=5000, metadata={"min": 1})
    num_walkers: int = field(default=32, metadata={"min": 2})
    max_steps: int = field(default=20_000, metadata={"min": 10})
    method: str = "emcee"

    def __post_init__(self) -> None:
        _check_fields(self, "mcmc")
        if self.method not in get_args(Method):
            raise ConfigError(f"mcmc.method: expected one of {list(get_args(Method))}, got "
                              f"{self.method!r}")
        if self.num_walkers % 2:
            raise ConfigError(f"mcmc.num_walkers: emcee's stretch move needs an even number, got "
                              f"{self.num_walkers}; use {self.num_walkers + 1}")


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
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:<index>`` or ``mps``.
        threads: torch CPU threads per run.
        output_dir: where run directories go.
        events: how ``mfinfer infer --events FILE.root`` reads lepton collections and gates the
            events (``mfinfer.io.events.EventsConfig``: ``{preset: nanoaod}``, ``{preset:
            cms-tutorial}``, overrides); None: the simulator's default selection.
    """

    name: str = field(metadata={"min_len": 1})
    simulator: dict[str, Any]
    n_train: int = field(metadata={"min": 2})
    models: list[ModelConfig] = field(metadata={"min_len": 1})
    observed: ObservedConfig
    mcmc: MCMCConfig = field(default_factory=MCMCConfig)
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"min": 0, "min_len": 1})
    truth: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    threads: int = field(default=1, metadata={"min": 1})
    output_dir: str = field(default="runs", metadata={"min_len": 1})
    events: EventsConfig | None = None

    def __post_init__(self) -> None:
        _check_fields(self, "")
        if re.search(r"[/\\]", self.name) or self.name in (".", ".."):
            raise ConfigError(f"name: names the run directory, so it cannot be '.', '..' or hold "
                              f"'/' or '\\', got {self.name!r}")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names) or "truth" in names:
            raise ConfigError(f"models: names must be unique and not 'truth', got {names}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: expected distinct seeds, got {self.seeds}")
        _check_device(self.device)
        _check_metrics(self.metrics)
        sim = _simulator(self.simulator)
        p = sim.param_dim
        for k, row in enumerate(self.observed.theta):
            _check_point(row, sim, f"observed.theta[{k}]")
        if self.mcmc.num_walkers < 2 * p:
            raise ConfigError(f"mcmc.num_walkers: emcee's stretch move needs at least 2 * param_dim"
                              f" = {2 * p} walkers for simulator {self.simulator['name']!r}, got "
                              f"{self.mcmc.num_walkers}")
        for m in self.models:
            _check_options(m, sim)
        if self.events is not None:
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
            data["models"] = [_build(ModelConfig, m, f"models[{m.get('name') or i}]"
                                     if isinstance(m, dict) else f"models[{i}]")
                              for i, m in enumerate(data["models"])]
        for key, part in (("observed", ObservedConfig), ("mcmc", MCMCConfig)):
            if key in data:
                data[key] = _build(part, data[key], key)
        if data.get("events") is not None:
            data["events"] = EventsConfig.from_dict(data["events"], "events")
        return _build(cls, data, "config")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------ checks against the simulator
def _simulator(spec: dict[str, Any]) -> Any:
    """The simulator the config names, built once (its options checked by its constructor)."""
    from mfinfer.registry import get_simulator

    for key in spec:
        if key not in ("name", "options"):
            _unknown(key, ["name", "options"], "simulator")
    if "name" not in spec:
        raise ConfigError("simulator.name: missing; name a registered simulator, e.g. "
                          "simulator: {name: power}")
    _check(spec["name"], str, "simulator.name")
    options = spec.get("options", {})
    _check(options, dict[str, Any], "simulator.options")
    try:
        return get_simulator(spec["name"], **options)
    except ConfigError:
        raise
    except (MfinferError, ValueError, TypeError, ImportError) as err:
        raise ConfigError(f"simulator.options: {spec['name']!r} cannot be built with "
                          f"{options}: {err}") from None


def _check_point(row: list[float], sim: Any, where: str) -> None:
    import numpy as np

    p = sim.param_dim
    names = getattr(sim, "param_names", None)
    if len(row) != p:
        named = f" ({', '.join(map(str, names))})" if names else ""
        raise ConfigError(f"{where}: expected {p} number{'s' * (p != 1)}, one per parameter{named}"
                          f" of the simulator, got {len(row)}: {row}")
    if not sim.prior.contains(np.asarray([row], dtype=float))[0]:
        low, high = sim.prior.bounds
        raise ConfigError(f"{where}: {row} is outside the prior support [{low.tolist()}, "
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
            _unknown(key, sorted(hints), where, f"unknown option of {model.kind}")
        _check(value, hints[key], f"{where}.{key}", _OPTION_RANGES.get(hints[key]))
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
            _check(metrics[key], type(default), f"metrics.{key}", _OPTION_RANGES.get(type(default)))


def _check_device(device: str) -> None:
    import torch

    if not _DEVICE.fullmatch(device):
        raise ConfigError(f"device: must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps', got "
                          f"{device!r}; use 'auto' (a GPU when there is one) or 'cpu'")
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if int(device.partition(":")[2] or 0) >= count:
            raise ConfigError(f"device: {device!r} asked for, but torch sees {count} CUDA "
                              "device(s); use device 'auto' or 'cpu' (or --device cpu)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' asked for, but torch sees no MPS device; use device "
                          "'auto' or 'cpu' (or --device cpu)")


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document of ``path`` (``yaml.safe_load``), with errors naming the file and ``what``
    it should hold (e.g. ``"run configuration"``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: config file not found; pass the path of a YAML {what}")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; pass the path of a YAML {what} file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file ({err.reason} at byte {err.start}); expected "
                          f"a YAML {what}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{at}: {problem}; fix the syntax there") from None


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read and validate a YAML run configuration.

    Arguments:
        path: the YAML file.
        overrides: top-level fields that replace the file's (the CLI's ``--seeds``, ...); they are
            validated with the rest.

    Raises:
        OSError: the file cannot be read (``FileNotFoundError``, ``IsADirectoryError``, ...).
        ConfigError: invalid YAML or any invalid field (the message names the file and field).
    """
    path = Path(path)
    data = read_yaml(path, "run configuration")
    if overrides and isinstance(data, dict | None):
        data = {**(data or {}), **overrides}
    try:
        return RunConfig.from_dict({} if data is None else data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
