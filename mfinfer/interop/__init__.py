"""Bridges to other inference libraries.

- :mod:`~mfinfer.interop.sbi`: a trained mfinfer model as an sbi likelihood estimator
  (:func:`~mfinfer.interop.sbi.to_sbi`), for sbi's MCMC posteriors and diagnostics.
- :mod:`~mfinfer.interop.nle`: sbi's NLE with its defaults, the baseline to compare with
  (:func:`~mfinfer.interop.nle.train_nle`, :class:`~mfinfer.interop.nle.NLELikelihood`).

The names below load their library on first use (importing sbi takes seconds), not on import.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["NLELikelihood", "SbiDensityEstimator", "load_nle", "save_nle", "sbi_prior", "to_sbi",
           "train_nle"]

_LAZY = {"SbiDensityEstimator": "mfinfer.interop.sbi", "to_sbi": "mfinfer.interop.sbi",
         **{name: "mfinfer.interop.nle" for name in ("NLELikelihood", "load_nle", "save_nle",
                                                     "sbi_prior", "train_nle")}}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
