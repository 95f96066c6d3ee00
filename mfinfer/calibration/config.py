"""The ``calibration:`` section of a run config, and the campaign a whole file describes.

A calibration config is a run config (:class:`mfinfer.config.RunConfig`) plus a ``calibration``
section (:class:`CalibrationConfig`). Trained models are named by their ``models[].name``; the
name ``truth`` is the simulator's exact likelihood. A campaign of ``truth`` alone needs no
``models``, ``n_train`` or ``observed`` section: the file then holds only ``name``, ``simulator``
and optionally ``seeds``, ``output_dir``, ``device``, ``threads``. Every problem raises
``ConfigError`` naming the field, what was expected and the fix, before any work.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np

from mfinfer._validation import check_name
from mfinfer.config import ModelConfig, RunConfig, build_simulator, check_device
from mfinfer.errors import ConfigError
from mfinfer.evaluation.report import TRUTH
from mfinfer.inference.spec import Method, PosteriorSpec
from mfinfer.overrides import apply_overrides
from mfinfer.schema import MAX_COUNT, build, check, check_fields, nearest, read_yaml, short, unknown

__all__ = ["DEFAULT_LEVELS", "MIN_NUM_SAMPLES", "TRUTH", "CalibrationConfig", "Campaign", "load_campaign"]

#: The fewest posterior samples per observation. The HPD rank of θ_j among L samples moves the
#: coverage in steps of 1/(L + 1); with fewer than 19 samples the default levels, 0.05 apart, are
#: not resolved (with L = 1 every level reads 0.5). Finer levels need more (checked too).
MIN_NUM_SAMPLES = 20
#: Credibility levels 0.05, 0.10, ..., 0.95.
DEFAULT_LEVELS = [round(0.05 * k, 2) for k in range(1, 20)]
#: Top-level fields a truth-only campaign may hold (besides ``calibration``).
_TRUTH_ONLY_FIELDS = ("name", "simulator", "seeds", "device", "threads", "output_dir")
#: Fields that make the file a full run config (validated as one, models trained by the pipeline).
_RUN_FIELDS = ("n_train", "models", "observed")
#: ``sample_posterior`` arguments the campaign sets itself, and what sets them.
_SET_BY_CAMPAIGN = {"num_samples": "calibration.num_samples", "method": "calibration.method",
                    "rng": "the campaign (seeded per observation)", "progress": "the campaign (--quiet)"}


@dataclass(frozen=True)
class CalibrationConfig:
    """A calibration campaign: posteriors of many simulated observations, ranked against θ.

    Attributes:
        n_observations: number of observations j; θ_j ~ prior, seeded from (seed, j).
        n_events: i.i.d. events per observation X_j.
        num_samples: posterior samples per observation and model, at least ``MIN_NUM_SAMPLES``
            (20) and enough to resolve the levels: 1/(num_samples + 1) no larger than the
            smallest gap between 0, the levels and 1.
        levels: credibility levels in (0, 1) at which coverage is reported.
        models: ``truth`` and/or names of the config's ``models``.
        method: the sampler (:class:`~mfinfer.inference.spec.PosteriorSpec`): ``auto`` (default:
            the grid for p ≤ 3 when its checks pass, else SMC), ``grid``, ``smc`` or ``emcee``.
        sampler: that method's options, flat (``max_moves``, ``tol``, ``num_walkers``...); an
            option of a sampler the method never runs is an error naming its sampler.
        c2st: also run sbi's classifier checks (``check_sbc``: C2ST of ranks and of the
            data-averaged posterior; seconds per model); the KS tests always run.
    """

    n_observations: int = field(metadata={"min": 1, "max": MAX_COUNT})
    n_events: int = field(default=20, metadata={"min": 1, "max": MAX_COUNT})
    num_samples: int = field(default=1000, metadata={"min": MIN_NUM_SAMPLES, "max": MAX_COUNT})
    levels: list[float] = field(default_factory=lambda: list(DEFAULT_LEVELS),
                                metadata={"gt": 0, "lt": 1, "min_len": 1})
    models: list[str] = field(default_factory=lambda: [TRUTH], metadata={"min_len": 1})
    method: Method = "auto"
    sampler: dict[str, Any] = field(default_factory=dict)
    c2st: bool = True

    def __post_init__(self) -> None:
        check_fields(self, "calibration")
        if len(set(self.levels)) != len(self.levels):
            raise ConfigError(f"calibration.levels: expected distinct levels, got {short(self.levels)}")
        gap = min(np.diff([0.0, *sorted(self.levels), 1.0]))
        if self.num_samples + 1 < 1 / gap - 1e-9:
            raise ConfigError(f"calibration.num_samples: {self.num_samples} samples resolve coverage in "
                              f"steps of 1/{self.num_samples + 1}, coarser than the levels' smallest gap "
                              f"{gap:.3g}; use at least {math.ceil(1 / gap - 1e-9) - 1}")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"calibration.models: expected distinct names, got {short(self.models)}")
        for key in self.sampler:
            if key in _SET_BY_CAMPAIGN:
                raise ConfigError(f"calibration.sampler.{key}: set by {_SET_BY_CAMPAIGN[key]}; "
                                  "remove it here")
        self.spec  # noqa: B018 (validates the sampler options, naming calibration.sampler.<key>)

    @property
    def spec(self) -> PosteriorSpec:
        """The posterior spec of every observation: ``method``, ``num_samples``, ``sampler``."""
        return PosteriorSpec.from_options(self.method, self.num_samples, where="calibration.sampler",
                                          **self.sampler)


@dataclass(frozen=True)
class Campaign:
    """A validated calibration config file.

    Attributes:
        name, simulator, output_dir: as in :class:`~mfinfer.config.RunConfig`.
        device, threads: where and with how many torch threads the models are trained; the
            workers evaluate them on the CPU, one thread each.
        seed: the campaign's seed, the first of ``seeds``; trained models are those of the run
            directory ``seed_<seed>``.
        calibration: the ``calibration`` section.
        run: the run config whose models are calibrated (None for a ``truth``-only campaign
            without ``models``).
    """

    name: str
    simulator: dict[str, Any]
    seed: int
    calibration: CalibrationConfig
    run: RunConfig | None = None
    output_dir: str = "runs"
    device: str = "cpu"
    threads: int = 1

    @property
    def directory(self) -> Path:
        """``<output_dir>/<name>/calibration``."""
        return Path(self.output_dir) / self.name / "calibration"

    @property
    def trained(self) -> list[ModelConfig]:
        """The config's models that the campaign calibrates, in ``calibration.models`` order."""
        by_name = {m.name: m for m in self.run.models} if self.run else {}
        return [by_name[n] for n in self.calibration.models if n != TRUTH]

    @classmethod
    def from_dict(cls, data: Any) -> Campaign:
        if not isinstance(data, dict):
            raise ConfigError(f"config: expected a mapping of fields (name:, simulator:, "
                              f"calibration:, ...), got {type(data).__name__}")
        data = dict(data)
        if "calibration" not in data:
            raise ConfigError("calibration: missing; add a section such as calibration: "
                              "{n_observations: 200, models: [truth]}")
        cal = build(CalibrationConfig, data.pop("calibration"), "calibration")
        if any(key in data for key in _RUN_FIELDS):
            run: RunConfig | None = RunConfig.from_dict(data)
            base = {key: getattr(run, key) for key in _TRUTH_ONLY_FIELDS}
        else:
            run, base = None, _truth_only(data)
        names = [m.name for m in run.models] if run else []
        for i, name in enumerate(cal.models):
            if name == TRUTH or name in names:
                continue
            if run is None:
                raise ConfigError(f"calibration.models[{i}]: {short(name)} is a trained model, which "
                                  "needs the config's models, n_train and observed sections (as for "
                                  "`mfinfer run`); add them, or calibrate only 'truth'")
            near = nearest(name, [TRUTH, *names])
            raise ConfigError(f"calibration.models[{i}]: no model named {short(name)}; expected "
                              f"'truth' or a name of models (nearest first): {near}")
        if base["simulator"] is None:  # a run whose training data are its `simulations:` files
            raise ConfigError("simulator: a calibration campaign simulates each observation at a θ "
                              "drawn from the prior, and this run reads files (simulations:) with no "
                              "simulator; add simulator: {name: ...} (the one that wrote the files: "
                              "training still reads them), or calibrate a simulator-based config")
        sim = build_simulator(base["simulator"])
        _check_simulator(sim, base["simulator"]["name"], TRUTH in cal.models)
        return cls(name=base["name"], simulator=base["simulator"], seed=base["seeds"][0],
                   calibration=cal, run=run, output_dir=base["output_dir"], device=base["device"],
                   threads=base["threads"])


def _truth_only(data: dict[str, Any]) -> dict[str, Any]:
    """The top-level fields of a truth-only campaign, checked as RunConfig checks them."""
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    hints = get_type_hints(RunConfig)
    for key in data:
        if key in fields and key not in _TRUTH_ONLY_FIELDS:
            raise ConfigError(f"{key}: used with trained models only (the models, n_train and observed "
                              "sections of `mfinfer run`); remove it, or add those sections")
        if key not in fields:
            unknown(key, [*_TRUTH_ONLY_FIELDS, "calibration"], "config")
    for key in ("name", "simulator"):
        if key not in data:
            raise ConfigError(f"config: missing required field {key!r}; add it (e.g. name: power-"
                              "calibration, simulator: {name: power})")
    out = {}
    for key in _TRUTH_ONLY_FIELDS:
        f = fields[key]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out[key] = data.get(key, default)
        if key != "simulator":
            check(out[key], hints[key], key, f.metadata)
    check_name(out["name"], "name", error=ConfigError)
    if len(set(out["seeds"])) != len(out["seeds"]):
        raise ConfigError(f"seeds: expected distinct seeds, got {out['seeds']}")
    check_device(out["device"])
    return out


def _check_simulator(sim: Any, name: str, truth: bool) -> None:
    """A simulator with parameters under a prior and, for ``truth``, an exact likelihood."""
    if getattr(sim, "param_dim", 0) < 1 or getattr(sim, "prior", None) is None:
        raise ConfigError(f"simulator: calibration draws θ from the prior, but {name!r} has no "
                          "parameters (param_dim 0); choose a simulator with parameters, e.g. power")
    if not truth:
        return
    rng = np.random.default_rng(0)
    theta = sim.prior.sample(1, rng)
    try:
        sim.log_likelihood(sim.sample(theta, rng), theta)
    except (NotImplementedError, AttributeError):
        raise ConfigError(f"calibration.models: 'truth' needs the simulator's exact likelihood, and "
                          f"{name!r} has none; remove 'truth', or choose a simulator with "
                          "log_likelihood (e.g. power, conditional_sphere)") from None


def load_campaign(path: str | Path, overrides: dict[str, Any] | None = None,
                  settings: Mapping[str, Any] | None = None) -> Campaign:
    """Read and validate a calibration config (a run config with a ``calibration`` section).

    Arguments:
        path: the YAML file.
        overrides: top-level fields that replace the file's (the CLI's ``--seeds``, ``--device``,
            ``--output-dir``), validated with the rest.
        settings: fields set by dotted path before anything is checked (the CLI's ``--set``,
            :func:`mfinfer.overrides.apply_overrides`).

    Raises:
        OSError: the file cannot be read.
        ConfigError: invalid YAML or any invalid field (the message names the file and field).
    """
    path = Path(path)
    data = apply_overrides(read_yaml(path, "calibration configuration"), settings or {})
    if overrides and isinstance(data, dict | None):
        data = {**(data or {}), **overrides}
    try:
        return Campaign.from_dict({} if data is None else data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
