"""Corner plots say what they show: parameter names, θ* and the event count, the exact posterior
apart from the true θ*, the contour levels (read from the SVG's text)."""

import matplotlib
import numpy as np
import pytest

from mfinfer.plotting import CONTOUR_LEVELS, corner_plot


def _svg_text(tmp_path, samples, **kwargs) -> str:
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text, not paths
        path = corner_plot(samples, tmp_path / "plot.svg", **kwargs)
    return path.read_text()


@pytest.mark.parametrize("p, names, shown", [(2, ["a2", "a3"], ["a2", "a3"]),
                                              (3, ["sigma", "rho", "beta"], ["σ", "ρ", "β"]),
                                              (1, ["theta"], ["θ"])])
def test_corner_plot_labels(tmp_path, p, names, shown):
    rng = np.random.default_rng(0)
    truth = np.arange(1.0, p + 1)
    sets = {"truth": rng.normal(truth, 1.0, (500, p)), "AF": rng.normal(truth, 2.0, (500, p))}
    svg = _svg_text(tmp_path, sets, truth=truth, labels=names, n_events=50)
    for label in shown:
        assert f">{label}<" in svg
    assert ">exact posterior<" in svg and ">true θ*<" in svg and ">truth<" not in svg
    values = ", ".join(f"{v:g}" for v in truth)
    if p == 1:
        assert f"θ* = {values}, 50 events" in svg
    else:
        assert f"θ* = ({', '.join(shown)}) = ({values}), 50 events" in svg
        assert "contours: " + ", ".join(f"{round(100 * lv)} %" for lv in CONTOUR_LEVELS) in svg
