"""Flow on a known manifold (FOM): a fixed chart, a learned density on it."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from mfinfer.errors import InputError
from mfinfer.models.manifold import InjectiveFlow
from mfinfer.models.transforms import check_arch

__all__ = ["Chart", "FOMFlow"]


@runtime_checkable
class Chart(Protocol):
    """A known manifold: ``chart(x) -> u`` (n, D) -> (n, d) and its inverse ``embed(u) -> x``,
    both written with torch ops so that forward-mode AD goes through them (every simulator with a
    known manifold is one)."""

    data_dim: int
    manifold_dim: int

    def chart(self, x: Tensor) -> Tensor: ...

    def embed(self, u: Tensor) -> Tensor: ...


class FOMFlow(InjectiveFlow):
    """The FOM flow: the chart is given and fixed; only the inner flow is learned. It uses the same
    likelihood formula as the M-flow, so it is the best an M-flow's density can do on that manifold.

    Args:
        chart: the known manifold (a :class:`Chart`, e.g. ``mfinfer.get_simulator("circle")``).
        param_dim: dimension of θ.
        inner_layers: spline layers of the inner flow.
        theta_loc, theta_scale: the inner flow sees (θ − loc) / scale instead of θ; default: θ as
            given here, ``prior.scaling()`` where the model meets its prior (``build_model``,
            ``LikelihoodEstimator.train``).
        **arch: hidden_features, num_blocks, num_bins, tail_bound of the inner flow.

    A chart built by ``mfinfer.get_simulator`` records its name and options, so ``save_model`` /
    ``load_model`` can rebuild the model; with any other chart pass ``chart=`` to ``load_model``.
    """

    default_schedule = "fom"

    def __init__(self, chart: Chart, *, param_dim: int = 0, inner_layers: int = 5,
                 theta_loc: list[float] | None = None, theta_scale: list[float] | None = None,
                 **arch: Any) -> None:
        super().__init__()
        check_arch("FOMFlow", arch, ("param_dim", "inner_layers", "theta_loc", "theta_scale"),
                   param_dim=param_dim, inner_layers=inner_layers)
        if not isinstance(chart, Chart):
            raise InputError(f"chart: expected an object with chart(), embed(), data_dim and "
                             f"manifold_dim (e.g. mfinfer.get_simulator('circle')), got "
                             f"{type(chart).__name__}")
        self.chart = chart
        self.data_dim, self.manifold_dim = chart.data_dim, chart.manifold_dim
        self.param_dim = param_dim
        self.config = {"chart": getattr(chart, "registry_spec", None), "param_dim": param_dim,
                       "inner_layers": inner_layers, **arch, **self._set_theta_map(theta_loc, theta_scale)}
        self._build_inner(inner_layers, arch)
        self.eval()

    @classmethod
    def for_simulator(cls, simulator: Any, **options: Any) -> FOMFlow:
        return cls(simulator, param_dim=simulator.param_dim, **options)

    @classmethod
    def from_config(cls, config: dict, chart: Chart | None = None) -> FOMFlow:
        """Rebuild from a stored config; the chart comes from the registry by its recorded name."""
        config = dict(config)
        spec = config.pop("chart", None)
        if chart is None:
            if not spec:
                raise InputError("chart: this FOMFlow was saved with a chart that was not built by "
                                 "mfinfer.get_simulator; pass chart=... to load_model")
            from mfinfer.registry import SimulatorSpec

            chart = SimulatorSpec.from_dict(spec, "chart").build("chart")
        return cls(chart, **config)

    def _encode(self, x: Tensor, theta: Tensor | None) -> Tensor:
        return self.chart.chart(x)

    def _decode(self, u: Tensor, theta: Tensor | None) -> Tensor:
        return self.chart.embed(u)
