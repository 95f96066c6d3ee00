"""Simulator plug-ins, found through the ``mfinfer.simulators`` entry-point group.

A package adds a simulator without touching mfinfer by declaring, in its ``pyproject.toml``::

    [project.entry-points."mfinfer.simulators"]
    my_sim = "my_package.module:MySimulator"

``get_simulator("my_sim", **options)`` then imports the class and builds it. The bundled simulators
(``simulators/``) register themselves the same way. mfinfer never imports them directly.
"""

from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from mfinfer.errors import ConfigError

__all__ = ["GROUP", "available_simulators", "get_simulator"]

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
    simulator.registry_spec = {"name": name, "options": dict(options)}
    return simulator
