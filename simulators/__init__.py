"""Simulators for mfinfer: toy manifolds (``sphere``, ``power``) and particle physics (``higgs4l``).

They are plug-ins: each registers under the ``mfinfer.simulators`` entry points in
``pyproject.toml``, and ``mfinfer.get_simulator(name, **options)`` builds one by name. This package
imports mfinfer, never the reverse. A new simulator is one module here (a :class:`Simulator`
subclass) plus one entry-point line.
"""

from __future__ import annotations

from simulators.base import Simulator

__all__ = ["Simulator"]
