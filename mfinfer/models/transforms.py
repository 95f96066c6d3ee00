"""Building blocks from nflows: RQ-spline couplings, LU linear layers, fixed standardisation.

Every transform follows nflows' contract: ``forward(x, context) -> (z, log|det ∂z/∂x|)`` and
``inverse(z, context) -> (x, log|det ∂x/∂z|)``, with shapes (n, D) and (n,).
"""

from __future__ import annotations

import difflib
import math
import warnings
from typing import Any

import torch
from nflows import transforms as nt
from nflows.nn.nets import ResidualNet
from nflows.utils.torchutils import create_alternating_binary_mask
from torch import Tensor

from mfinfer._validation import check_count
from mfinfer.errors import InputError
from mfinfer.models.spline import RQSplineCoupling

__all__ = ["ARCH_OPTIONS", "LULinear", "Standardize", "check_arch", "flow_transform"]

#: The architecture options every model passes on to ``flow_transform``.
ARCH_OPTIONS = ("hidden_features", "num_blocks", "num_bins", "tail_bound", "linear")


class LULinear(nt.LULinear):
    """nflows' LU-decomposed linear layer with an inverse that runs on current torch.

    nflows 0.14 solves with the deprecated ``torch.triangular_solve``; this uses
    ``torch.linalg.solve_triangular``, which also supports forward-mode AD.
    """

    def inverse_no_cache(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        lower, upper = self._create_lower_upper()
        y = (inputs - self.bias).T
        y = torch.linalg.solve_triangular(lower, y, upper=False, unitriangular=True)
        y = torch.linalg.solve_triangular(upper, y, upper=True)
        return y.T, -self.logabsdet() * inputs.new_ones(inputs.shape[0])

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.inverse_no_cache(inputs)

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.forward_no_cache(inputs)


#: Rows this many robust standard deviations from the median are left out of the standardisation fit.
OUTLIER_SIGMAS = 100.0


class Standardize(nt.Transform):
    """Fixed elementwise affine map z = (x - shift) / scale, fitted to data once before training.

    The shift and scale are buffers, so they travel with ``state_dict`` and ``.to(device)``.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        """Set shift and scale to the mean and std of ``x`` (n, D); constant columns keep scale 1.

        Gross outliers (rows more than ``OUTLIER_SIGMAS`` robust standard deviations, 1.4826 × MAD,
        from the median in some column) are left out of the fit with a warning giving their count:
        one row at 1e30 would otherwise map every clean row to the same point.
        """
        median = x.median(0).values
        robust = 1.4826 * (x - median).abs().median(0).values
        far = ((x - median).abs() > OUTLIER_SIGMAS * robust) & (robust > 0)
        outliers = far.any(1)
        n_out = int(outliers.sum())
        if n_out:
            warnings.warn(f"standardisation: {n_out} of {len(x)} training rows lie more than "
                          f"{OUTLIER_SIGMAS:g} robust standard deviations from the median; they are "
                          "left out of the mean/std fit (check the data for corrupt rows)", stacklevel=3)
            x = x[~outliers]
        std = x.std(0)
        self.shift.copy_(x.mean(0))
        self.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)))

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ladj = -torch.log(self.scale).sum() * inputs.new_ones(inputs.shape[0])
        return (inputs - self.shift) / self.scale, ladj

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ladj = torch.log(self.scale).sum() * inputs.new_ones(inputs.shape[0])
        return inputs * self.scale + self.shift, ladj


#: The smallest value of each count a model takes (sizes of layers and of the data).
_MIN_COUNT = {"data_dim": 1, "param_dim": 0, "manifold_dim": 1, "num_layers": 1, "outer_layers": 1,
              "inner_layers": 1, "hidden_features": 1, "num_blocks": 1, "num_bins": 1}


def check_arch(owner: str, arch: dict, other: tuple[str, ...] = (), **counts: Any) -> None:
    """Refuse unknown model options with an error that names the model and its options, and bad
    values: each count in ``arch`` and ``counts`` (``num_layers=...``, ``data_dim=...``) must be an
    integer of at least its minimum (1; 0 for ``param_dim``), ``tail_bound`` a
    finite number > 0 and ``linear`` a boolean."""
    unknown = [k for k in arch if k not in ARCH_OPTIONS]
    if unknown:
        allowed = sorted((*other, *ARCH_OPTIONS))
        near = difflib.get_close_matches(unknown[0], allowed, n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(near)}?)" if near else ""
        raise InputError(f"{owner}: unknown option {unknown[0]!r}{hint}; its options are {allowed}")
    for key, value in {**counts, **arch}.items():
        if key in _MIN_COUNT:
            check_count(value, f"{owner}: {key}", _MIN_COUNT[key])
    bound = arch.get("tail_bound", 1.0)
    if isinstance(bound, bool) or not isinstance(bound, int | float) or not 0 < bound < math.inf:
        raise InputError(f"{owner}: tail_bound: expected a finite number > 0, got {bound!r}")
    if not isinstance(arch.get("linear", True), bool):
        raise InputError(f"{owner}: linear: expected true or false, got {arch['linear']!r}")


def flow_transform(
    features: int,
    num_layers: int,
    context_features: int = 0,
    *,
    hidden_features: int = 100,
    num_blocks: int = 2,
    num_bins: int = 10,
    tail_bound: float = 5.0,
    linear: bool = True,
) -> nt.CompositeTransform:
    """A stack of RQ-spline layers (10 bins, linear tails) with mixing layers in between.

    For ``features >= 2`` each layer is an affine-coupling-free RQ-spline coupling on alternating
    halves, preceded by an LU linear layer (``linear=True``) or a reverse permutation. For one
    feature the layers are masked autoregressive splines, whose parameters depend on the context only.

    Args:
        features: dimension of the transformed variable.
        num_layers: number of spline layers.
        context_features: dimension of the conditioning variable θ (0: unconditional).
        hidden_features, num_blocks: size of the ResidualNet inside each layer.
        num_bins, tail_bound: spline resolution and the interval [-B, B] outside which it is the identity.
        linear: mix coordinates with LU linear layers rather than permutations.

    Returns:
        An nflows ``CompositeTransform`` mapping data -> latent.
    """
    ctx = context_features or None
    layers: list[nt.Transform] = []
    for i in range(num_layers):
        if features == 1:
            layers.append(
                nt.MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    features=1, hidden_features=hidden_features, context_features=ctx,
                    num_bins=num_bins, tails="linear", tail_bound=tail_bound, num_blocks=num_blocks,
                )
            )
            continue
        layers.append(LULinear(features, identity_init=True) if linear else nt.ReversePermutation(features))
        layers.append(
            RQSplineCoupling(
                mask=create_alternating_binary_mask(features, even=(i % 2 == 0)),
                transform_net_create_fn=lambda n_in, n_out: ResidualNet(
                    n_in, n_out, hidden_features, context_features=ctx, num_blocks=num_blocks
                ),
                num_bins=num_bins, tails="linear", tail_bound=tail_bound,
            )
        )
    return nt.CompositeTransform(layers)
