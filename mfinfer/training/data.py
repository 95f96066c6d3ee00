"""Training data checks and the train/validation split."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from mfinfer._validation import as_matrix, nonfinite_rows
from mfinfer.errors import InputError

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
        InputError: wrong shapes, or NaN/inf rows (with their number) when ``drop_invalid`` is False.
    """
    x = as_matrix(x, data_dim, "x", finite=False, allow_row=False)
    if param_dim == 0:
        if theta is not None and np.asarray(theta).size > 0:
            raise InputError("theta: the model is unconditional (param_dim=0) but theta was given")
        theta = None
    else:
        if theta is None:
            raise InputError(f"theta: the model is conditional, expected shape ({len(x)}, {param_dim})")
        if param_dim == 1 and np.ndim(theta) == 1:  # a flat (n,) column of a 1-d θ
            theta = np.asarray(theta)[:, None]
        theta = as_matrix(theta, None, "theta", finite=False, allow_row=False, min_rows=0)
        if theta.shape != (len(x), param_dim):
            raise InputError(f"theta: expected shape ({len(x)}, {param_dim}) to match x, got {theta.shape}")
    bad = np.union1d(nonfinite_rows(x), nonfinite_rows(theta) if theta is not None else [])
    if bad.size:
        if not drop_invalid:
            raise InputError(
                f"training data: {bad.size} of {len(x)} rows contain NaN or inf; clean them, or pass "
                "drop_invalid=True to drop them"
            )
        warnings.warn(f"training data: dropping {bad.size} of {len(x)} rows with NaN or inf", stacklevel=2)
        keep = np.setdiff1d(np.arange(len(x)), bad)
        x = x[keep]
        theta = theta[keep] if theta is not None else None
    if len(x) < 2:
        raise InputError(f"training data: need at least 2 valid rows, got {len(x)}")
    return torch.as_tensor(x), None if theta is None else torch.as_tensor(theta)


def split(n: int, validation_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random split of range(n) into (train, validation) index tensors."""
    if not 0 <= validation_fraction < 1:
        raise InputError(f"validation_fraction: expected in [0, 1), got {validation_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(validation_fraction * n)
    return perm[n_val:], perm[:n_val]
