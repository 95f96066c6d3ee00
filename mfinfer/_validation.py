"""The one checker of inputs: shapes, dtypes, finiteness, empty inputs, θ broadcasting, and the
names that become paths.

Every public boundary (models, training data, observed events, simulators, priors, metrics) calls
these, so the same mistake gives the same message everywhere:
``"x: expected shape (n, 3), got (5, 4)"``. Errors are :class:`~mfinfer.errors.InputError`
(a ``ValueError``).
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mfinfer.errors import InputError

__all__ = ["NAME_RULE", "as_matrix", "as_model_input", "broadcast_rows", "check_count",
           "check_finite_parameters", "check_name",
           "check_names", "nonfinite_rows", "path_name", "safe_label"]

#: The one rule for every name that becomes a file or folder name (run names, model names, labels):
#: a letter or digit, then up to 99 letters, digits, spaces and ``. _ + - ( )``; so never ``.``,
#: ``..``, empty, hidden or absolute. Model names may also hold ``/`` (table labels such as
#: ``M-flow (M/D sequential)``), which becomes ``-`` in their paths (:func:`path_name`).
NAME_RULE = r"[A-Za-z0-9][A-Za-z0-9 ,._+()-]{0,99}"
_NAME = re.compile(NAME_RULE)
_LABEL = re.compile(NAME_RULE.replace("()-]", "()/-]"))


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(a.shape)


def _to_numpy(a: Any, name: str) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name}: expected an array of numbers, got {type(a).__name__} "
                         f"({' '.join(str(err).split())[:200]})") from None


def nonfinite_rows(a: np.ndarray | Tensor) -> np.ndarray:
    """Indices of the rows of a (n, k) array that hold NaN or inf."""
    if isinstance(a, Tensor):
        finite = torch.isfinite(a).all(1)
        if bool(finite.all()):  # the common case; also works on torch.func's wrapped tensors
            return np.empty(0, dtype=np.int64)
        return torch.nonzero(~finite).flatten().cpu().numpy()
    return np.flatnonzero(~np.isfinite(a).all(1))


def _check_finite(a: np.ndarray | Tensor, name: str) -> None:
    bad = nonfinite_rows(a)
    if bad.size:
        raise InputError(f"{name}: {bad.size} of {len(a)} row(s) contain NaN or inf (first: row "
                         f"{int(bad[0])}); remove or fix them")


def _check_2d(shape: tuple[int, ...], dim: int | None, name: str, min_rows: int) -> None:
    want = f"(n, {dim})" if dim is not None else "(n, k)"
    if len(shape) != 2 or (dim is not None and shape[1] != dim):
        raise InputError(f"{name}: expected shape {want}, got {shape}")
    if shape[0] < min_rows:
        raise InputError(f"{name}: expected at least {min_rows} row(s), got {shape[0]}")


def as_matrix(
    a: Any,
    dim: int | None,
    name: str,
    *,
    finite: bool = True,
    min_rows: int = 1,
    allow_row: bool = True,
) -> np.ndarray:
    """Validate a (n, dim) array of numbers (numpy, torch or nested lists) and return it as float64.

    Args:
        a: the input; a single (dim,) row becomes (1, dim) when ``allow_row``.
        dim: the required number of columns (None: any).
        name: the argument's name, used in the message.
        finite: reject rows with NaN or inf.
        min_rows: the fewest rows accepted.

    Raises:
        InputError: naming ``name``, what was expected and what was got.
    """
    arr = _to_numpy(a, name)
    if allow_row and arr.ndim == 1 and (dim is None or arr.shape[0] == dim) and arr.shape[0] > 0:
        arr = arr[None, :]
    _check_2d(arr.shape, dim, name, min_rows)
    if finite:
        _check_finite(arr, name)
    return arr


def as_model_input(
    a: Any, dim: int, name: str, like: Tensor, *, finite: bool = False, min_rows: int = 0
) -> Tensor:
    """A (n, dim) model input as a tensor with the dtype and device of ``like``.

    numpy, lists and tensors of any float dtype are accepted; autograd history is kept for tensors.
    """
    if isinstance(a, Tensor):
        t = a.to(dtype=like.dtype, device=like.device)
    else:
        t = torch.as_tensor(_to_numpy(a, name), dtype=like.dtype, device=like.device)
    _check_2d(_shape(t), dim, name, min_rows)
    if finite:
        _check_finite(t, name)
    return t


def broadcast_rows(a: np.ndarray | Tensor, n: int, name: str) -> Any:
    """Repeat a single row to n rows; any other row count must equal n."""
    if len(a) == 1 and n != 1:
        return a.expand(n, -1) if isinstance(a, Tensor) else np.repeat(a, n, axis=0)
    if len(a) != n:
        raise InputError(f"{name}: expected 1 or {n} rows to match x, got {len(a)}")
    return a


def check_finite_parameters(module: torch.nn.Module, name: str) -> None:
    """Raise ``InputError`` naming ``name`` if any parameter or buffer of ``module`` holds NaN or
    inf (weights damaged in memory or saved after a diverged training: every output would be NaN)."""
    bad = [key for key, t in [*module.named_parameters(), *module.named_buffers()]
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise InputError(f"{name}: {len(bad)} weight tensor(s) hold NaN or inf (first: {bad[0]!r}); "
                         "its outputs would be NaN: retrain it, or load weights saved before the "
                         "problem")


def check_count(n: Any, name: str, minimum: int = 1) -> int:
    """A whole number ≥ ``minimum`` (sample counts, sizes); numpy integers are accepted."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {reprlib.repr(n)}")
    return int(n)


def check_name(name: Any, where: str, *, slash: bool = False,
               error: type[ValueError] = InputError) -> str:
    """``name`` if it follows :data:`NAME_RULE` (``slash``: ``/`` allowed too), else ``error``
    naming ``where``, the rule and the name (bounded)."""
    pattern = _LABEL if slash else _NAME
    if not isinstance(name, str) or not pattern.fullmatch(name) or name != name.rstrip(" ."):
        extra = ", '/' (becomes '-')" if slash else ""
        raise error(f"{where}: names a file or folder, so it must start with a letter or digit, hold "
                    f"only letters, digits, spaces and , . _ + - ( ){extra}, not end with a space or "
                    f"'.', and have at most 100 characters; got {reprlib.repr(name)}")
    return name


def path_name(name: str, where: str = "name") -> str:
    """A checked name (:func:`check_name` with ``slash``) as a file or folder name: '/' -> '-'."""
    return check_name(name, where, slash=True).replace("/", "-")


def safe_label(text: str) -> str:
    """``text`` (e.g. a file's stem) made to follow :data:`NAME_RULE`: other characters become
    '_', and a label that does not start with a letter or digit gets the prefix ``x``."""
    label = re.sub(r"[^A-Za-z0-9 ,._+()-]", "_", text)[:99].rstrip(" .")
    return label if _NAME.fullmatch(label) else check_name("x" + label, "label")


def check_names(names: Iterable[str], where: str, suffix: str = "", *, slash: bool = False,
                error: type[ValueError] = InputError) -> list[str]:
    """Check each name (at ``{where}[i]{suffix}``) and that no two share a path (after '/' -> '-',
    ignoring case, as on case-insensitive file systems)."""
    names = [check_name(n, f"{where}[{i}]{suffix}", slash=slash, error=error)
             for i, n in enumerate(names)]
    seen: dict[str, str] = {}
    for n in names:
        folded = n.replace("/", "-").casefold()
        if folded in seen:
            raise error(f"{where}: {seen[folded]!r} and {n!r} would share a folder ('/' becomes '-', "
                        "case is ignored); rename one")
        seen[folded] = n
    return names
