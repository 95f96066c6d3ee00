"""Small shared helpers: seeding, device selection, progress bars.

File writing and reading (atomic writes, SHA-256-checked pairs, safe loading) live in
:mod:`mfinfer.files`.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["progress_bar", "resolve_device", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str | None = None) -> torch.device:
    """``"auto"``/None -> CUDA if available else CPU; otherwise ``torch.device(device)``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def progress_bar(iterable: Any = None, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar that shows only when ``enabled`` and stderr is a terminal (quiet in CI logs,
    ``nohup`` and redirected output)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=None if enabled else True, **kwargs)