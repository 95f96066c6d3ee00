"""Training data that stay on disk: memory-mapped arrays read batch by batch.

A sample larger than memory reaches :func:`mfinfer.training.train` as ``np.memmap`` arrays (the
``simulations:`` reader, :mod:`mfinfer.io.sample_store`, returns them; ``np.load(path,
mmap_mode="r")`` gives them). Training then never holds a full copy of such an array:

- the checks (shape, dtype, NaN/inf rows) read it ``CHUNK_ROWS`` rows at a time;
- its SHA-256 for the run's identity is taken chunk by chunk (:func:`mfinfer.caching.array_digest`);
- each batch reads its rows only (:class:`DiskRows`: the batch's indices sorted for a sequential
  read, the rows put back in the batch's order, converted to the model's dtype);
- the input standardisation is fitted to at most ``STANDARDIZE_ROWS`` rows of the training split
  (its first rows in the seeded random order, so a random subset; all of them when fewer);
- the validation loss is summed over chunks of the validation split.

What stays in memory is O(n) small: the split's and the epoch's index permutations (int64, 8 bytes
per row each), and the event weights when given. A sample of at most ``STANDARDIZE_ROWS`` training
rows trains to exactly the weights of the same arrays in memory (the same rows in the same order,
converted through float64 as in-memory data are).
"""

from __future__ import annotations

from typing import TypeGuard

import numpy as np
import torch
from torch import Tensor

from mfinfer.errors import InputError

__all__ = ["CHUNK_ROWS", "STANDARDIZE_ROWS", "DiskRows", "check_on_disk", "is_on_disk", "nonfinite_on_disk"]

#: Rows read at a time by the checks.
CHUNK_ROWS = 65_536
#: The most training rows the input standardisation of an on-disk sample is fitted to.
STANDARDIZE_ROWS = 200_000


def is_on_disk(a: object) -> TypeGuard[np.memmap]:
    """Whether ``a`` is a memory-mapped array (trained on batch by batch, never copied whole)."""
    return isinstance(a, np.memmap)


def check_on_disk(a: np.ndarray, dim: int | None, name: str) -> np.ndarray:
    """A memory-mapped (n, dim) array of real numbers, checked without reading it; a flat (n,)
    array with ``dim`` 1 becomes an (n, 1) view.

    Raises:
        InputError: naming ``name``, what was expected and what was got.
    """
    if a.ndim == 1 and dim == 1:
        a = a[:, None]
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise InputError(f"{name}: expected an array of real numbers, got an on-disk array of {a.dtype}")
    want = f"(n, {dim})" if dim is not None else "(n, k)"
    if a.ndim != 2 or (dim is not None and a.shape[1] != dim):
        raise InputError(f"{name}: expected shape {want}, got {a.shape}")
    return a


def nonfinite_on_disk(a: np.ndarray) -> np.ndarray:
    """Indices of the rows of an on-disk (n, k) array that hold NaN or inf, read in chunks."""
    bad = [start + np.flatnonzero(~np.isfinite(a[start:start + CHUNK_ROWS]).all(1))
           for start in range(0, len(a), CHUNK_ROWS)]
    return np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)


class DiskRows:
    """Rows of an on-disk (n, k) array, read as the model's tensors one batch at a time.

    ``rows[idx]`` (idx an index tensor) reads those rows only, in idx's order, as a (len(idx), k)
    tensor of ``dtype`` on ``device``; the values are those ``torch.as_tensor(float64 array)
    .to(device, dtype)`` gives in memory.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.npy"
        >>> np.save(path, np.arange(6.0).reshape(3, 2))
        >>> rows = DiskRows(np.load(path, mmap_mode="r"), torch.float32, torch.device("cpu"))
        >>> rows[torch.tensor([2, 0])]
        tensor([[4., 5.],
                [0., 1.]])
    """

    def __init__(self, array: np.ndarray, dtype: torch.dtype, device: torch.device) -> None:
        self.array, self.dtype, self.device = array, dtype, device
        self.shape = tuple(array.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Tensor) -> Tensor:
        i = idx.cpu().numpy()
        order = np.argsort(i, kind="stable")
        rows = np.empty((len(i), *self.shape[1:]), dtype=np.float64)
        rows[order] = self.array[i[order]]  # one forward pass over the file
        return torch.from_numpy(rows).to(self.device, self.dtype)

    def to(self, device: torch.device, dtype: torch.dtype) -> DiskRows:
        """The same rows, read as ``dtype`` on ``device``."""
        return DiskRows(self.array, dtype, device)
