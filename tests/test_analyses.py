"""The analyses: the power results table, the notebooks' format and the configs."""

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

from mfinfer.config import load_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("analyses/*/notebook.ipynb"))
CONFIGS = sorted(ROOT.glob("analyses/*/config.yaml"))


def _power_run_module():
    path = ROOT / "analyses" / "power" / "run.py"
    spec = importlib.util.spec_from_file_location("power_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metrics(seed, af_mmd, mflow_mmd, af_dist, mflow_rec):
    """A metrics.json like the pipeline's, with two true points (MMD² averaged within a seed)."""
    def point(shift):
        return {"theta_true": [0.0], "models": {
            "truth": {"log_p_true": -0.1},
            "AF": {"mmd2": af_mmd + shift, "c2st": 0.6, "log_p_true": -0.2},
            "M-flow (M/D sequential)": {"mmd2": mflow_mmd + shift, "c2st": 0.52,
                                        "log_p_true": -0.1},
        }}

    return {"seed": seed,
            "models": {"AF": {"manifold_distance": af_dist, "reconstruction_error": 0.0},
                       "M-flow (M/D sequential)": {"manifold_distance": 0.01,
                                                   "reconstruction_error": mflow_rec}},
            "points": [point(-0.001), point(0.001)]}


def test_power_results_table(tmp_path):
    run = _power_run_module()
    rows = [(0, 0.10, 0.010, 0.004, 0.02), (1, 0.07, 0.030, 0.006, 0.05),
            (2, 0.09, 0.015, 0.009, 0.03)]
    for seed, *vals in rows:
        (tmp_path / f"seed_{seed}").mkdir()
        (tmp_path / f"seed_{seed}" / "metrics.json").write_text(json.dumps(_metrics(seed, *vals)))
    (tmp_path / "seed_3").mkdir()  # an unfinished seed: no metrics.json, left out

    values = run.collect(tmp_path)
    assert values["AF"]["mmd2"] == pytest.approx({0: 0.10, 1: 0.07, 2: 0.09})
    assert "truth" not in values

    table = run.results_table(tmp_path, command="python analyses/power/run.py --workers 2")
    lines = table.splitlines()
    af = next(ln for ln in lines if ln.startswith("| AF | AF |"))
    # medians (min–max) over seeds, then the paper's numbers
    assert "0.0060 (0.0040–0.0090) | 0.005" in af
    assert "0.0900 (0.0700–0.1000) | 0.071" in af
    assert "0.6000 (0.6000–0.6000) | –" in af
    mflow = next(ln for ln in lines
                 if ln.startswith("| M-flow (M/D sequential) | M-flow M/D sequential |"))
    assert "0.0300 (0.0200–0.0500) | 0.013" in mflow
    assert "0.0150 (0.0100–0.0300) | 0.017" in mflow
    assert any(ln.startswith("| (not run) | M-flow S |") for ln in lines)
    assert "3 seed(s) [0, 1, 2]" in table
    assert "0.0100 / 0.0300 / 0.0150" in table  # per-seed MMD² of the M-flow
    assert "**met**" in table and "lower than the AF in 3 of 3 seeds" in table
    assert "`python analyses/power/run.py --workers 2`" in table

    # median MMD² above 0.02: the target is not met
    for seed, *vals in rows:
        vals[1] += 0.01
        (tmp_path / f"seed_{seed}" / "metrics.json").write_text(json.dumps(_metrics(seed, *vals)))
    assert "**not met**" in run.results_table(tmp_path)


def test_power_results_table_without_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no seed_"):
        _power_run_module().results_table(tmp_path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.parent.name)
def test_notebook_is_valid(path):
    nbformat.validate(nbformat.read(path, as_version=4))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_config_loads(path):
    cfg = load_config(path)
    assert cfg.models and cfg.seeds


@pytest.mark.parametrize("path", sorted(ROOT.glob("analyses/*/*calibration.yaml")), ids=lambda p: p.stem)
def test_calibration_config_loads(path):
    from mfinfer.calibration import load_campaign

    campaign = load_campaign(path)
    assert campaign.calibration.n_observations >= 1
