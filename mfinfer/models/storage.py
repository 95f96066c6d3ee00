"""Saving and loading models: ``weights.pt`` (tensors only) plus ``model.json`` (class + config).

``weights.pt`` is read with ``torch.load(weights_only=True)``, so loading a model never unpickles
arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mfinfer.errors import ConfigError
from mfinfer.models.ambient import AmbientFlow
from mfinfer.models.base import Flow
from mfinfer.models.fom import FOMFlow
from mfinfer.models.manifold import ManifoldFlow
from mfinfer.utils import atomic_torch_save, atomic_write_json, read_json

__all__ = ["MODELS", "build_model", "load_model", "save_model"]

#: The model registry: the ``kind`` names of configs and ``model.json``.
MODELS: dict[str, type[Flow]] = {"AmbientFlow": AmbientFlow, "ManifoldFlow": ManifoldFlow, "FOMFlow": FOMFlow}


def _model_class(kind: str) -> type[Flow]:
    if kind not in MODELS:
        raise ConfigError(f"model kind: must be one of {tuple(MODELS)}, got {kind!r}")
    return MODELS[kind]


def build_model(kind: str, simulator: Any, **options: Any) -> Flow:
    """Build a model of class ``kind`` with the dimensions ``simulator`` declares, plus ``options``."""
    return _model_class(kind).for_simulator(simulator, **options)


def save_model(model: Flow, directory: str | Path) -> Path:
    """Write ``weights.pt`` and ``model.json`` into ``directory`` (atomically); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(model.state_dict(), directory / "weights.pt")
    atomic_write_json({"kind": type(model).__name__, "config": model.config}, directory / "model.json")
    return directory


def load_model(directory: str | Path, map_location: str | torch.device = "cpu", **extra: Any) -> Flow:
    """Rebuild a model saved by ``save_model``. Only tensors are unpickled (``weights_only=True``).

    ``extra`` goes to the class's ``from_config`` (e.g. ``chart=`` for a FOM flow whose chart was
    not built by ``get_simulator``).
    """
    directory = Path(directory)
    for name in ("model.json", "weights.pt"):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory / name}: missing; expected a directory written by save_model"
            )
    meta = read_json(directory / "model.json")
    model = _model_class(meta["kind"]).from_config(meta["config"], **extra)
    state = torch.load(directory / "weights.pt", map_location=map_location, weights_only=True)
    dtype = next(iter(state.values())).dtype
    model.to(dtype).load_state_dict(state)
    return model.eval()
