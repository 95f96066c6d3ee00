"""The posterior spec: which sampler, how many samples, and each sampler's own typed options.

One frozen dataclass, :class:`PosteriorSpec`, carries every posterior-sampling setting. It is
validated once, when it is built, whether it comes from the Python API (``sample_posterior``,
``build_posterior``), a run config's ``posterior:`` section, a calibration config or the CLI
(``--method``, ``--num-samples``); those pass it on and never re-check it.

- ``method="auto"`` (the default): the adaptive grid for p ≤ 3 when its own checks pass, tempered
  SMC otherwise (the fallback is logged with its reason and recorded in the posterior);
- ``"grid"``, ``"smc"``, ``"emcee"``: that sampler only.

Options belong to one sampler (:class:`GridOptions`, :class:`SMCOptions`, :class:`EmceeOptions`). An
option of a sampler that the method never runs is an error naming the sampler it belongs to
(``max_steps`` with ``method="grid"``); ``"auto"`` runs the grid and SMC, so it takes both of theirs.

Example:
    >>> spec = PosteriorSpec.from_options(method="smc", num_samples=1000, max_moves=80)
    >>> spec.smc.max_moves, spec.options("smc").ess_fraction
    (80, 0.5)
    >>> try:
    ...     PosteriorSpec.from_options(method="grid", max_steps=100)
    ... except ValueError as err:
    ...     print(err)
    max_steps: an option of method 'emcee', but method is 'grid'; remove it, or set method='emcee'
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_type_hints

import numpy as np

from mfinfer.errors import ConfigError
from mfinfer.schema import check, check_fields, unknown

__all__ = ["METHODS", "EmceeOptions", "GridOptions", "Method", "PosteriorSpec", "SMCOptions",
           "num_samples_of", "posterior_section"]

Method = Literal["auto", "grid", "smc", "emcee"]
"""The samplers: ``auto`` (grid for p ≤ 3 when it converges, else SMC), ``grid``, ``smc``,
``emcee``."""
METHODS: tuple[str, ...] = get_args(Method)
#: The range of ``num_samples`` (field metadata; :func:`num_samples_of` for samplers called directly).
NUM_SAMPLES = {"min": 1}


def num_samples_of(value: Any, where: str = "num_samples") -> int:
    """``value`` as a number of samples (an integer >= 1; numpy integers accepted).

    Raises:
        ConfigError: not an integer, or < 1 (naming ``where``).
    """
    value = int(value) if isinstance(value, np.integer) else value
    check(value, int, where, NUM_SAMPLES)
    return value


@dataclass(frozen=True)
class GridOptions:
    """Options of the adaptive grid (:func:`mfinfer.inference.grid.sample_grid`, p ≤ 3).

    Attributes:
        initial_cells: Cells per dimension of the first grid (None: 64 / 32 / 16 for p = 1 / 2 / 3).
        tol: Target for the estimated L1 error of the cell masses, in (0, 1).
        resolution: Target for posterior std / cell width in every dimension.
        tail_mass: Posterior mass left in unrefined (lightest) cells, in [0, 0.1).
        check_points: Draws of the importance-sampling check (``check_ess``).
        max_evaluations: Budget of likelihood evaluations.
    """

    initial_cells: int | None = field(default=None, metadata={"min": 2})
    tol: float = field(default=0.01, metadata={"gt": 0, "lt": 1})
    resolution: float = field(default=8.0, metadata={"gt": 0})
    tail_mass: float = field(default=1e-4, metadata={"min": 0, "lt": 0.1})
    check_points: int = field(default=256, metadata={"min": 2})
    max_evaluations: int = field(default=200_000, metadata={"min": 1})

    def __post_init__(self) -> None:
        check_fields(self, "grid")


@dataclass(frozen=True)
class SMCOptions:
    """Options of adaptive tempered SMC (:func:`mfinfer.inference.smc.sample_smc`).

    Attributes:
        num_particles: N (None: ``num_samples``); at least ``num_samples``.
        ess_fraction: Target ESS / N of each tempering step, in (0, 1).
        min_moved: Fraction of the particles that must have moved in each stage, in (0, 1].
        max_correlation: Largest |correlation| between a stage's resampled and moved particles
            (per parameter) for the stage's moves to count as mixed, in (0, 1).
        max_moves: Cap on the MH sweeps of one tempering stage (the sweeps stop earlier once the
            stage's diagnostics pass).
        max_stages: Cap on the number of temperatures.
    """

    num_particles: int | None = field(default=None, metadata={"min": 1})
    ess_fraction: float = field(default=0.5, metadata={"gt": 0, "lt": 1})
    min_moved: float = field(default=0.95, metadata={"gt": 0})
    max_correlation: float = field(default=0.1, metadata={"gt": 0, "lt": 1})
    max_moves: int = field(default=100, metadata={"min": 1})
    max_stages: int = field(default=200, metadata={"min": 1})

    def __post_init__(self) -> None:
        check_fields(self, "smc")
        if self.min_moved > 1:
            raise ConfigError(f"smc.min_moved: expected a fraction in (0, 1], got {self.min_moved}")


@dataclass(frozen=True)
class EmceeOptions:
    """Options of emcee's ensemble sampler (:func:`mfinfer.inference.emcee_sampler.sample_emcee`).

    Attributes:
        num_walkers: Ensemble size, even and at least 2 p.
        max_steps: Cap on steps per walker.
        target_tau: Required chain length in autocorrelation times.
    """

    num_walkers: int = field(default=32, metadata={"min": 2})
    max_steps: int = field(default=20_000, metadata={"min": 10})
    target_tau: float = field(default=50.0, metadata={"gt": 0})

    def __post_init__(self) -> None:
        check_fields(self, "emcee")
        if self.num_walkers % 2:
            raise ConfigError(f"emcee.num_walkers: emcee's stretch move needs an even number, got "
                              f"{self.num_walkers}; use {self.num_walkers + 1}")


#: Each sampler's options class, and the methods that run that sampler.
OPTIONS: dict[str, type] = {"grid": GridOptions, "smc": SMCOptions, "emcee": EmceeOptions}
RUNS: dict[str, tuple[str, ...]] = {"grid": ("grid", "auto"), "smc": ("smc", "auto"),
                                    "emcee": ("emcee",)}
#: option name -> the sampler it belongs to (the names are distinct across samplers).
OWNER: dict[str, str] = {f.name: s for s, c in OPTIONS.items() for f in dataclasses.fields(c)}


@dataclass(frozen=True)
class PosteriorSpec:
    """How a posterior is sampled: the method, the number of samples, each sampler's options.

    Attributes:
        method: ``auto`` (default), ``grid``, ``smc`` or ``emcee``.
        num_samples: Posterior samples to draw.
        grid: Options of the grid (None: its defaults); only with method ``grid`` or ``auto``.
        smc: Options of SMC (None: its defaults); only with method ``smc`` or ``auto``.
        emcee: Options of emcee (None: its defaults); only with method ``emcee``.

    Raises:
        ConfigError: an unknown method, ``num_samples < 1``, an option out of range, or options of
            a sampler the method never runs (naming the option and its sampler).
    """

    method: Method = "auto"
    num_samples: int = field(default=5000, metadata=NUM_SAMPLES)
    grid: GridOptions | None = None
    smc: SMCOptions | None = None
    emcee: EmceeOptions | None = None

    def __post_init__(self) -> None:
        check_fields(self, "")
        for sampler, methods in RUNS.items():
            if getattr(self, sampler) is not None and self.method not in methods:
                raise ConfigError(f"{sampler}: options of method {sampler!r}, but method is "
                                  f"{self.method!r}; remove them, or set method={sampler!r}")

    def options(self, sampler: str) -> Any:
        """The options of ``sampler`` (``grid``, ``smc`` or ``emcee``): as given, or its defaults."""
        given = getattr(self, sampler)
        return OPTIONS[sampler]() if given is None else given

    def flat(self) -> dict[str, Any]:
        """``method``, ``num_samples`` and every given option, as flat keywords (for
        :meth:`from_options`)."""
        out: dict[str, Any] = {"method": self.method, "num_samples": self.num_samples}
        for sampler in OPTIONS:
            given = getattr(self, sampler)
            if given is not None:
                out.update(dataclasses.asdict(given))
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping, read back by :meth:`from_dict` (omitted options: defaults)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def replace(self, **options: Any) -> PosteriorSpec:
        """A new spec with ``method``, ``num_samples`` or flat options replaced (validated).

        A new ``method`` drops the given options that the new method never runs.
        """
        flat = self.flat()
        if "method" in options and options["method"] != self.method:
            method = options["method"]
            flat = {k: v for k, v in flat.items()
                    if k not in OWNER or method in RUNS[OWNER[k]]}
        return PosteriorSpec.from_options(**{**flat, **options})

    @classmethod
    def from_options(cls, method: str = "auto", num_samples: int = 5000, *,
                     where: str = "", **options: Any) -> PosteriorSpec:
        """Build a spec from flat keywords: ``method``, ``num_samples`` and options of any sampler.

        Arguments:
            method: ``auto``, ``grid``, ``smc`` or ``emcee``.
            num_samples: Posterior samples to draw.
            where: Prefix of the field paths in error messages (``"mcmc"`` -> ``mcmc.max_steps``).
            **options: Options of the samplers (``tol``, ``max_moves``, ``num_walkers``, ...).

        Raises:
            ConfigError: an unknown option (the known ones listed, nearest first), an option of a
                sampler the method never runs (naming it), or a value out of range.
        """
        at = f"{where}." if where else ""
        return cls._assemble(method, num_samples, options, {k: f"{at}{k}" for k in options}, where)

    @classmethod
    def from_dict(cls, data: Any, where: str = "posterior") -> PosteriorSpec:
        """Build a spec from a config mapping: ``method``, ``num_samples``, and per-sampler mappings
        ``grid: {...}``, ``smc: {...}``, ``emcee: {...}`` (flat option keys are accepted too).

        Raises:
            ConfigError: as :meth:`from_options`, naming ``<where>.<field>`` (``posterior.smc.max_moves``).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping of fields (method:, num_samples:, grid:, "
                              f"smc:, emcee:), got {type(data).__name__} {data!r:.80}")
        flat = {k: v for k, v in data.items() if k not in OPTIONS}
        method = flat.pop("method", "auto")
        check(method, Method, f"{where}.method")
        num_samples = flat.pop("num_samples", 5000)
        paths = {k: f"{where}.{k}" for k in flat}
        for sampler in OPTIONS:
            section = data.get(sampler)
            if section is None:
                continue
            if not isinstance(section, Mapping):
                raise ConfigError(f"{where}.{sampler}: expected a mapping of {sampler} options, got "
                                  f"{type(section).__name__} {section!r:.80}")
            if method not in RUNS[sampler]:
                raise ConfigError(f"{where}.{sampler}: options of method {sampler!r}, but method is "
                                  f"{method!r}; remove them, or set method: {sampler}")
            for key, value in section.items():
                if OWNER.get(key) != sampler:
                    fields = [f.name for f in dataclasses.fields(OPTIONS[sampler])]
                    unknown(key, fields, f"{where}.{sampler}", f"unknown {sampler} option")
                flat[key], paths[key] = value, f"{where}.{sampler}.{key}"
        return cls._assemble(method, num_samples, flat, paths, where)

    @classmethod
    def _assemble(cls, method: Any, num_samples: Any, options: Mapping[str, Any],
                  paths: Mapping[str, str], where: str) -> PosteriorSpec:
        """The spec of flat ``options``, each checked and named by its ``paths`` entry."""
        at = f"{where}." if where else ""
        check(method, Method, f"{at}method")
        num_samples = num_samples_of(num_samples, f"{at}num_samples")
        grouped: dict[str, dict[str, Any]] = {}
        for key, value in options.items():
            if key not in OWNER:
                unknown(key, ["method", "num_samples", *OWNER], where or "posterior",
                        "unknown option")
            sampler = OWNER[key]
            if method not in RUNS[sampler]:
                raise ConfigError(f"{paths[key]}: an option of method {sampler!r}, but method is "
                                  f"{method!r}; remove it, or set method={sampler!r}")
            grouped.setdefault(sampler, {})[key] = value
        if not where:  # API keywords: name the sampler in range errors (``grid.tol: ...``)
            paths = {k: f"{OWNER[k]}.{k}" for k in options}
        parts = {s: _options(OPTIONS[s], kw, paths) for s, kw in grouped.items()}
        return cls(method=method, num_samples=num_samples, **parts)


def _options(cls: type, values: dict[str, Any], paths: Mapping[str, str]) -> Any:
    """An options dataclass from ``values``, each value checked at its ``paths`` entry first."""
    hints = get_type_hints(cls)
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}
    for key, value in values.items():
        check(value, hints[key], paths[key], meta[key])
    try:
        return cls(**values)
    except ConfigError as err:  # a cross-field check names ``<sampler>.<key>``: give the caller's path
        text = str(err)
        for key in values:
            prefix = f"{cls.__name__.removesuffix('Options').lower()}.{key}:"
            if text.startswith(prefix):
                raise ConfigError(paths[key] + text[len(prefix) - 1:]) from None
        raise


#: The fields of the old ``mcmc:`` section, read into a :class:`PosteriorSpec` with a warning.
_MCMC_FIELDS = ("method", "num_samples", "num_walkers", "max_steps")


def posterior_section(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its ``posterior:`` section built as a :class:`PosteriorSpec`; an old ``mcmc:``
    section (method default ``emcee``, as it was) is mapped to one with a ``DeprecationWarning`` and
    a logged warning that show the new section."""
    data = dict(data)
    if "mcmc" in data:
        new = data.pop("posterior", None) or {}  # e.g. --method grid on an old file
        new = {k: v for k, v in new.items() if v is not None} if isinstance(new, dict) else new
        if not isinstance(new, dict) or any(k in ("grid", "smc", "emcee") for k in new):
            raise ConfigError("mcmc: the old name of the posterior: section, and both are given; "
                              "keep posterior: only")
        old = data.pop("mcmc")
        if not isinstance(old, dict):
            raise ConfigError(f"mcmc: expected a mapping of fields (rename it posterior:), got "
                              f"{type(old).__name__} {old!r:.80}")
        for key in old:
            if key not in _MCMC_FIELDS:
                unknown(key, list(_MCMC_FIELDS), "mcmc")
        spec = PosteriorSpec.from_options(**{"method": "emcee", **old}, where="mcmc")
        spec = spec.replace(**new) if new else spec
        message = (f"the config's mcmc: section is deprecated; read as posterior: {spec.to_dict()}; "
                   "rename it posterior: (its default method is auto: the grid for p <= 3, else SMC)")
        warnings.warn(message, DeprecationWarning, stacklevel=3)
        logging.getLogger("mfinfer").warning(message)
        data["posterior"] = spec
    elif "posterior" in data and not isinstance(data["posterior"], PosteriorSpec):
        data["posterior"] = PosteriorSpec.from_dict(data["posterior"], "posterior")
    return data
