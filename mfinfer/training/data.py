"""Training data checks (events, parameters, event weights, joint scores) and the train/validation
split."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mfinfer._validation import as_matrix, nonfinite_rows
from mfinfer.errors import InputError
from mfinfer.training.disk_rows import check_on_disk, is_on_disk, nonfinite_on_disk

__all__ = ["check_training_data", "normalised_weights", "split"]


def check_training_data(
    x: np.ndarray | Tensor,
    theta: np.ndarray | Tensor | None,
    data_dim: int,
    param_dim: int,
    drop_invalid: bool = False,
    weights: np.ndarray | Tensor | None = None,
    score: np.ndarray | Tensor | None = None,
) -> tuple[Tensor | np.ndarray, Tensor | np.ndarray | None, Tensor | None, Tensor | np.ndarray | None]:
    """Validate training events, parameters and event weights; return them as float64 tensors.

    Memory-mapped x, θ or score (``np.memmap``) are checked in chunks and come back as they are
    (:mod:`mfinfer.training.disk_rows`), except that dropped rows leave the kept ones in memory.

    Args:
        x: events, (n, D).
        theta: parameters, (n, p), or None for an unconditional model.
        data_dim, param_dim: what the model expects.
        drop_invalid: drop rows with NaN/inf (in x, θ or the weight; with a warning giving the
            count) instead of raising.
        weights: event weights, (n,), or None. Negative weights are allowed; the total must be > 0.
        score: joint scores ∇θ log p(x, z|θ), (n, p) like θ, or None (NaN/inf rows are dropped
            or refused like those of x).

    Returns:
        ``(x, theta, weights, score)``.

    Raises:
        InputError: wrong shapes, NaN/inf rows (with their number) when ``drop_invalid`` is False,
            or weights whose total is not positive.
    """
    x = check_on_disk(x, data_dim, "x") if is_on_disk(x) else as_matrix(x, data_dim, "x", finite=False,
                                                                        allow_row=False)
    if param_dim == 0:
        if theta is not None and np.asarray(theta).size > 0:
            raise InputError("theta: the model is unconditional (param_dim=0) but theta was given")
        theta = None
    else:
        if theta is None:
            raise InputError(f"theta: the model is conditional, expected shape ({len(x)}, {param_dim})")
        if is_on_disk(theta):
            theta = check_on_disk(theta, param_dim, "theta")
        elif param_dim == 1 and np.ndim(theta) == 1:  # a flat (n,) column of a 1-d θ
            theta = np.asarray(theta)[:, None]
        if not is_on_disk(theta):
            theta = as_matrix(theta, None, "theta", finite=False, allow_row=False, min_rows=0)
        if theta.shape != (len(x), param_dim):
            raise InputError(f"theta: expected shape ({len(x)}, {param_dim}) to match x, got {theta.shape}")
    if weights is not None:
        w = weights.detach().cpu().numpy() if isinstance(weights, Tensor) else np.asarray(weights)
        if w.ndim == 2 and w.shape[1] == 1:
            w = w[:, 0]
        if w.shape != (len(x),) or not np.issubdtype(w.dtype, np.number) or np.iscomplexobj(w):
            raise InputError(f"weights: expected one real number per event, shape ({len(x)},), got "
                             f"{w.dtype} of shape {w.shape}")
        weights = w.astype(np.float64)
        bad_w = np.flatnonzero(~np.isfinite(weights))
        if bad_w.size and not drop_invalid:
            raise InputError(f"weights: {bad_w.size} of {len(x)} weights are NaN or inf (rows "
                             f"{bad_w[:5].tolist()}); fix them, or pass drop_invalid=True to drop those rows")
    if score is not None:
        if theta is None:
            raise InputError("score: the model is unconditional (param_dim=0): there is no θ to "
                             "differentiate; drop the score")
        score = (check_on_disk(score, None, "score") if is_on_disk(score)
                 else as_matrix(score, None, "score", finite=False, allow_row=False, min_rows=0))
        if score.shape != theta.shape:
            raise InputError(f"score: expected shape {theta.shape}, one ∇θ log p row per θ row, got "
                             f"{score.shape}")
    bad = np.union1d(_nonfinite(x), _nonfinite(theta) if theta is not None else [])
    if score is not None:
        bad = np.union1d(bad, _nonfinite(score))
    if weights is not None:
        bad = np.union1d(bad, np.flatnonzero(~np.isfinite(weights)))
    if bad.size:
        if not drop_invalid:
            raise InputError(
                f"training data: {bad.size} of {len(x)} rows contain NaN or inf; clean them, or pass "
                "drop_invalid=True to drop them"
            )
        warnings.warn(f"training data: dropping {bad.size} of {len(x)} rows with NaN or inf", stacklevel=2)
        keep = np.setdiff1d(np.arange(len(x)), bad)
        x = _take(x, keep)
        theta = _take(theta, keep) if theta is not None else None
        weights = weights[keep] if weights is not None else None
        score = _take(score, keep) if score is not None else None
    if len(x) < 2:
        raise InputError(f"training data: need at least 2 valid rows, got {len(x)}")
    if weights is not None and not weights.sum() > 0:
        raise InputError(f"weights: the total weight must be positive, got {weights.sum():.6g} "
                         f"({int((weights < 0).sum())} of {len(weights)} weights negative); check the "
                         "weight branch and its sign convention")
    return (_tensor(x), None if theta is None else _tensor(theta),
            None if weights is None else torch.as_tensor(weights),
            None if score is None else _tensor(score))


def _nonfinite(a: Any) -> np.ndarray:
    return nonfinite_on_disk(a) if is_on_disk(a) else nonfinite_rows(a)


def _take(a: Any, keep: np.ndarray) -> np.ndarray:
    """The rows ``keep`` of a float64 array, or of an on-disk one (then in memory, as float64)."""
    return np.asarray(a[keep], dtype=np.float64)


def _tensor(a: Any) -> Tensor | np.ndarray:
    return a if is_on_disk(a) else torch.as_tensor(a)


def normalised_weights(weights: Tensor | None, idx: Tensor, part: str) -> Tensor | None:
    """The weights of the rows ``idx`` divided by their mean (so they average to one), or None.

    A part whose weights sum to zero or less (possible with negative weights) cannot define a
    weighted mean: ``InputError`` naming the part (``training`` or ``validation``) and the fix.
    """
    if weights is None or len(idx) == 0:
        return None
    w = weights[idx]
    total = float(w.sum())
    if not total > 0:
        raise InputError(f"weights: the {part} split's weights sum to {total:.6g} (<= 0), so its weighted "
                         "mean loss is undefined; use more events, fewer negative weights, or another "
                         "validation_fraction/seed")
    return w * (len(w) / total)


def split(n: int, validation_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random split of range(n) into (train, validation) index tensors."""
    if not 0 <= validation_fraction < 1:
        raise InputError(f"validation_fraction: expected in [0, 1), got {validation_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(validation_fraction * n)
    return perm[n_val:], perm[:n_val]
