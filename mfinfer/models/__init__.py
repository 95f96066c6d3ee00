"""Models: ambient flow (AF), M-flow / Mₑ-flow / PIE (``ManifoldFlow``) and FOM (``FOMFlow``).

``save_model``/``load_model`` store a model as ``weights.pt`` (loaded with ``weights_only=True``)
plus ``model.json`` (its class and constructor arguments).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mfinfer.models.ambient import AmbientFlow
from mfinfer.models.base import Flow
from mfinfer.models.manifold import FOMFlow, InjectiveFlow, ManifoldFlow
from mfinfer.utils import atomic_torch_save, atomic_write_json, read_json

__all__ = ["AmbientFlow", "ManifoldFlow", "FOMFlow", "InjectiveFlow", "Flow", "MODELS",
           "build_model", "save_model", "load_model"]

MODELS: dict[str, type[Flow]] = {"AmbientFlow": AmbientFlow, "ManifoldFlow": ManifoldFlow, "FOMFlow": FOMFlow}


def build_model(kind: str, **config) -> Flow:
    """Build a model from its class name and constructor arguments."""
    if kind not in MODELS:
        raise ValueError(f"model kind: must be one of {tuple(MODELS)}, got {kind!r}")
    return MODELS[kind](**config)


def save_model(model: Flow, directory: str | Path) -> Path:
    """Write ``weights.pt`` and ``model.json`` into ``directory`` (atomically); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(model.state_dict(), directory / "weights.pt")
    atomic_write_json({"kind": type(model).__name__, "config": model.config}, directory / "model.json")
    return directory


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> Flow:
    """Rebuild a model saved by ``save_model``. Only tensors are unpickled (``weights_only=True``)."""
    directory = Path(directory)
    for name in ("model.json", "weights.pt"):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name}: missing; expected a directory written by save_model")
    meta = read_json(directory / "model.json")
    model = build_model(meta["kind"], **meta["config"])
    state = torch.load(directory / "weights.pt", map_location=map_location, weights_only=True)
    dtype = next(iter(state.values())).dtype
    model.to(dtype).load_state_dict(state)
    return model
