"""The injective-Jacobian term of the manifold density: J = ∂g/∂u and log det(JᵀJ).

J is built by forward-mode AD: one Jacobian-vector product over the batch replicated d times
(row b·d + k carries u_b with tangent e_k). That costs about 2·d plain forward passes and works
through nflows' spline code, whose boolean masks defeat ``vmap``. The original implementation ran
one reverse pass per output element, event and layer (see ``benchmarks/bench_jacobian.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor

from mfinfer.errors import SingularJacobianError

__all__ = ["SingularJacobianError", "jacobian", "log_det_jtj"]


def jacobian(fn: Callable[[Tensor], Tensor], u: Tensor) -> tuple[Tensor, Tensor]:
    """Values and Jacobians of a batched map ``fn: (n, d) -> (n, D)``.

    Rows must be independent (``fn`` acts row by row), which holds for flows.

    Args:
        fn: the map, e.g. a decoder u -> x.
        u: points, (n, d).

    Returns:
        ``(fn(u), J)`` with shapes (n, D) and (n, D, d), J[b, i, k] = ∂fn_i/∂u_k at u_b.
        Differentiable with respect to the parameters of ``fn``.
    """
    n, d = u.shape
    u_rep = u.repeat_interleave(d, dim=0)
    tangents = torch.eye(d, dtype=u.dtype, device=u.device).repeat(n, 1)
    # without has_aux, jvp returns (outputs, jvp_out); its annotation also allows the has_aux triple
    x_rep, jv = cast(tuple[Tensor, Tensor], torch.func.jvp(fn, (u_rep,), (tangents,)))
    return x_rep[::d], jv.reshape(n, d, -1).transpose(1, 2)


def log_det_jtj(J: Tensor) -> Tensor:
    """log det(JᵀJ) for a batch of (D × d) Jacobians, (n, D, d) -> (n,).

    Uses a Cholesky factorisation of the d × d Gram matrix; rows where it fails fall back to
    the singular values of J. Exactly singular rows raise ``SingularJacobianError``.
    """
    gram = J.mT @ J
    chol, info = torch.linalg.cholesky_ex(gram)
    out = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    bad = info != 0
    if bad.any():
        sv = torch.linalg.svdvals(J[bad])
        if (sv <= 0).any():
            rows = torch.nonzero(bad).flatten()[(sv <= 0).any(-1)].tolist()
            raise SingularJacobianError(
                f"J^T J is singular at rows {rows[:10]}: the decoder is not injective there"
            )
        out = out.clone()
        out[bad] = 2 * torch.log(sv).sum(-1)
    return out
