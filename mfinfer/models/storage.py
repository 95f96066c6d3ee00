"""Saving and loading models: ``weights.pt`` (tensors only) plus ``model.json`` (class + config).

``weights.pt`` is read with ``torch.load(weights_only=True)``, so loading a model never unpickles
arbitrary objects. The two files are written as a pair (:func:`mfinfer.files.atomic_write_pair`):
``model.json`` is renamed into place last and records the SHA-256 of ``weights.pt``, which
``load_model`` checks, so a damaged or changed ``weights.pt`` is refused instead of loading
silently with other weights. A ``model.json`` without the digest (older saves) loads unchecked.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfinfer.errors import ConfigError, CorruptFileError
from mfinfer.files import atomic_write_pair, open_pair, torch_load_tensors
from mfinfer.models.ambient import AmbientFlow
from mfinfer.models.base import Flow
from mfinfer.models.ensemble import Ensemble
from mfinfer.models.fom import FOMFlow
from mfinfer.models.manifold import ManifoldFlow

__all__ = ["MODELS", "build_model", "load_model", "model_options", "prior_theta_map", "save_model"]

#: The model registry: the ``kind`` names of configs and ``model.json``.
MODELS: dict[str, type[Flow]] = {"AmbientFlow": AmbientFlow, "ManifoldFlow": ManifoldFlow, "FOMFlow": FOMFlow,
                                 "Ensemble": Ensemble}


def _model_class(kind: str) -> type[Flow]:
    if kind not in MODELS:
        raise ConfigError(f"model kind: must be one of {tuple(MODELS)}, got {kind!r}")
    return MODELS[kind]


def prior_theta_map(prior: Any) -> dict[str, list[float]]:
    """``{"theta_loc", "theta_scale"}`` from ``prior.scaling()`` (a box's centre and half-width, a
    Gaussian's mean and std), as sbi z-scores θ by default; ``{}`` where that map is the identity
    (e.g. a box [-1, 1]), which changes nothing."""
    loc, scale = (np.asarray(v, dtype=float) for v in prior.scaling())
    if np.all(loc == 0.0) and np.all(scale == 1.0):
        return {}
    return {"theta_loc": loc.tolist(), "theta_scale": scale.tolist()}


def model_options(simulator: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a model is built with for ``simulator``: ``options`` plus, for a conditional
    model given neither ``theta_loc`` nor ``theta_scale``, the map from the simulator's prior
    (:func:`prior_theta_map`). Explicit values win.

    Example:
        >>> from mfinfer.registry import get_simulator
        >>> model_options(get_simulator("higgs4l"), {"num_layers": 2})["theta_scale"]
        [2.0, 3.0]
    """
    out = dict(options)
    prior = getattr(simulator, "prior", None)
    if simulator.param_dim > 0 and prior is not None and not {"theta_loc", "theta_scale"} & set(out):
        out |= prior_theta_map(prior)
    return out


def build_model(kind: str, simulator: Any, **options: Any) -> Flow:
    """Build a model of class ``kind`` with the dimensions ``simulator`` declares, plus ``options``
    (θ scaled by the simulator's prior unless they say otherwise: :func:`model_options`)."""
    return _model_class(kind).for_simulator(simulator, **model_options(simulator, options))


WEIGHTS = "weights.pt"
META = "model.json"
_FIX = "re-train the model or restore the directory from a backup"


def save_model(model: Flow, directory: str | Path) -> Path:
    """Write ``weights.pt`` and ``model.json`` into ``directory`` (atomically, as a pair whose
    ``model.json`` holds the SHA-256 of ``weights.pt``); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    atomic_write_pair({directory / WEIGHTS: lambda f: torch.save(state, f)}, directory / META,
                      {"kind": type(model).__name__, "config": model.config})
    return directory


def load_model(directory: str | Path, map_location: str | torch.device = "cpu", **extra: Any) -> Flow:
    """Rebuild a model saved by ``save_model``. Only tensors are unpickled (``weights_only=True``).

    ``extra`` goes to the class's ``from_config`` (e.g. ``chart=`` for a FOM flow whose chart was
    not built by ``get_simulator``).

    Raises:
        FileNotFoundError: ``model.json`` or ``weights.pt`` is missing.
        CorruptFileError: ``weights.pt`` does not match the SHA-256 in ``model.json``, either file
            cannot be read, ``model.json`` lacks a key, or ``weights.pt`` holds anything but tensors.
    """
    directory = Path(directory)
    meta_path, weights_path = directory / META, directory / WEIGHTS
    with open_pair(meta_path, [WEIGHTS], fix=_FIX, hint="a directory written by save_model") as (meta, files):
        for key, kind in (("kind", str), ("config", dict)):
            if key not in meta:
                raise CorruptFileError(f"{meta_path}: missing key {key!r}; expected the keys 'kind' and "
                                       f"'config' written by save_model, got {sorted(meta)}; {_FIX}")
            if not isinstance(meta[key], kind):
                raise CorruptFileError(f"{meta_path}: key {key!r}: expected a JSON "
                                       f"{'string' if kind is str else 'object'}, got {meta[key]!r}; {_FIX}")
        model = _model_class(meta["kind"]).from_config(meta["config"], **extra)
        state = torch_load_tensors(files[WEIGHTS], weights_path, map_location=map_location, fix=_FIX)
    if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
        got = type(state).__name__ if not isinstance(state, dict) else (
            "an empty dict" if not state else "a dict holding non-tensors")
        raise CorruptFileError(f"{weights_path}: expected a state_dict (a non-empty dict of tensors) "
                               f"as save_model writes, got {got}; {_FIX}")
    dtype = next(iter(state.values())).dtype
    try:
        model.to(dtype).load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        raise CorruptFileError(f"{weights_path}: its tensors do not fit the model that {META} describes "
                               f"({detail[:300]}); {_FIX}") from None
    return model.eval()
