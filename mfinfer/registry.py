"""Simulator plug-ins, found through the ``mfinfer.simulators`` entry-point group.

A package adds a simulator without touching mfinfer by declaring, in its ``pyproject.toml``::

    [project.entry-points."mfinfer.simulators"]
    my_sim = "my_package.module:MySimulator"

``get_simulator("my_sim", **options)`` then imports the class and builds it. The bundled simulators
(``simulators/``) register themselves the same way. mfinfer never imports them directly.

A config names its simulator as ``{name: ..., options: {...}}``: :class:`SimulatorSpec` reads
and checks that mapping, and builds the simulator (the one place that does).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from mfinfer.errors import ConfigError, MfinferError
from mfinfer.schema import check, unknown

__all__ = ["GROUP", "SimulatorSpec", "available_simulators", "get_simulator"]

GROUP = "mfinfer.simulators"


def available_simulators() -> dict[str, EntryPoint]:
    """Registered simulators: name -> entry point (not yet imported)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def get_simulator(name: str, **options: Any) -> Any:
    """Build the simulator registered under ``name`` with keyword ``options``.

    The returned object records how it was built in ``registry_spec`` (``{"name", "options"}``), so
    that a model that uses it as its chart (``FOMFlow``) can be saved and rebuilt.

    Raises:
        ConfigError: no simulator of that name is registered (the message lists those that are).
    """
    found = available_simulators()
    if name not in found:
        near = difflib.get_close_matches(str(name), list(found), n=len(found), cutoff=0.0)
        hint = ("; is the package that provides it installed (pip install -e .)?" if not found
                else "")
        raise ConfigError(f"simulator: no simulator named {name!r} is registered under the "
                          f"{GROUP!r} entry points; available (nearest first): {near}{hint}")
    cls = found[name].load()
    try:
        simulator = cls(**options)
    except TypeError as err:
        raise ConfigError(f"simulator {name!r}: bad options {sorted(options)}: {err}") from None
    simulator.registry_spec = SimulatorSpec(name, options).to_dict()
    return simulator


@dataclass(frozen=True)
class SimulatorSpec:
    """A registered simulator and its keyword options: a config's ``simulator:`` section.

    Attributes:
        name: the name it is registered under (``mfinfer.simulators`` entry points).
        options: its constructor's keyword options.

    Example:
        >>> spec = SimulatorSpec.from_dict({"name": "power"})
        >>> spec.build().param_dim
        1
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, spec: Any, where: str = "simulator") -> SimulatorSpec:
        """Read ``{"name": ..., "options": {...}}`` (``options`` optional), checking its keys and
        types; ``ConfigError`` at ``where`` otherwise."""
        if isinstance(spec, SimulatorSpec):
            return spec
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a mapping {{name: ..., options: {{...}}}}, got "
                              f"{type(spec).__name__} {spec!r:.80}")
        for key in spec:
            if key not in ("name", "options"):
                unknown(key, ["name", "options"], where)
        if "name" not in spec:
            raise ConfigError(f"{where}.name: missing; name a registered simulator, e.g. "
                              "simulator: {name: power}")
        check(spec["name"], str, f"{where}.name")
        options = spec.get("options", {})
        check(options, dict[str, Any], f"{where}.options")
        return cls(spec["name"], dict(options))

    def build(self, where: str = "simulator") -> Any:
        """The simulator, built with the options (checked by its constructor); ``ConfigError``
        naming ``where`` when it cannot be built."""
        try:
            return get_simulator(self.name, **self.options)
        except ConfigError:
            raise
        except (MfinferError, ValueError, TypeError, ImportError) as err:
            raise ConfigError(f"{where}.options: {self.name!r} cannot be built with "
                              f"{dict(self.options)}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "options": {...}}``, as a config or a saved model records it."""
        return {"name": self.name, "options": dict(self.options)}
