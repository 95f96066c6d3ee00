"""Bridges to other inference libraries.

- :mod:`~mfinfer.interop.sbi`: a trained mfinfer model as an sbi likelihood estimator
  (:func:`~mfinfer.interop.sbi.to_sbi`), for sbi's MCMC posteriors and diagnostics.

The names below load their library on first use (importing sbi takes seconds), not on import.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["SbiDensityEstimator", "to_sbi"]

_LAZY = {"SbiDensityEstimator": "mfinfer.interop.sbi", "to_sbi": "mfinfer.interop.sbi"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
