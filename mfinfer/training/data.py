"""Training data checks and the train/validation split."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

__all__ = ["check_training_data", "split"]


def check_training_data(
    x: np.ndarray | Tensor,
    theta: np.ndarray | Tensor | None,
    data_dim: int,
    param_dim: int,
    drop_invalid: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Validate training events and parameters; return them as float64 tensors.

    Args:
        x: events, (n, D).
        theta: parameters, (n, p), or None for an unconditional model.
        data_dim, param_dim: what the model expects.
        drop_invalid: drop rows with NaN/inf (with a warning giving the count) instead of raising.

    Raises:
        ValueError: wrong shapes, or NaN/inf rows (with their number) when ``drop_invalid`` is False.
    """
    x = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if x.ndim != 2 or x.shape[1] != data_dim:
        raise ValueError(f"x: expected shape (n, {data_dim}), got {tuple(x.shape)}")
    if param_dim == 0:
        if theta is not None and np.asarray(theta).size > 0:
            raise ValueError("theta: the model is unconditional (param_dim=0) but theta was given")
        theta = None
    else:
        if theta is None:
            raise ValueError(f"theta: the model is conditional, expected shape ({len(x)}, {param_dim})")
        theta = torch.as_tensor(np.asarray(theta, dtype=np.float64))
        if theta.ndim == 1 and param_dim == 1:
            theta = theta[:, None]
        if theta.shape != (len(x), param_dim):
            raise ValueError(f"theta: expected shape ({len(x)}, {param_dim}) to match x, got {tuple(theta.shape)}")
    finite = torch.isfinite(x).all(1)
    if theta is not None:
        finite &= torch.isfinite(theta).all(1)
    n_bad = int((~finite).sum())
    if n_bad:
        if not drop_invalid:
            raise ValueError(
                f"training data: {n_bad} of {len(x)} rows contain NaN or inf; clean them, or pass "
                "drop_invalid=True to drop them"
            )
        warnings.warn(f"training data: dropping {n_bad} of {len(x)} rows with NaN or inf", stacklevel=2)
        x = x[finite]
        theta = theta[finite] if theta is not None else None
    if len(x) < 2:
        raise ValueError(f"training data: need at least 2 valid rows, got {len(x)}")
    return x, theta


def split(n: int, validation_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random split of range(n) into (train, validation) index tensors."""
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction: expected in [0, 1), got {validation_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(validation_fraction * n))
    return perm[n_val:], perm[:n_val]
