"""Simulators for mfinfer: toy manifolds and particle-physics generators.

``get_simulator(name, **options)`` builds one by name.
"""

from __future__ import annotations

from simulators.base import Simulator

__all__ = ["Simulator", "get_simulator", "SIMULATORS"]

#: name -> "module:Class"; imported lazily so optional dependencies (pythia8mc) load only when used.
SIMULATORS = {
    "circle": "simulators.sphere:Circle",
    "sphere": "simulators.sphere:SphericalGaussian",
    "conditional_sphere": "simulators.sphere:ConditionalSphere",
    "power": "simulators.power:PowerSimulator",
    "higgs4l": "simulators.higgs4l:Higgs4l",
    "pythia": "simulators.pythia:PythiaHiggs4l",
}


def get_simulator(name: str, **options) -> Simulator:
    """Build the simulator registered under ``name`` with keyword ``options``."""
    import importlib

    if name not in SIMULATORS:
        raise ValueError(f"simulator: must be one of {tuple(SIMULATORS)}, got {name!r}")
    module, cls = SIMULATORS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)
