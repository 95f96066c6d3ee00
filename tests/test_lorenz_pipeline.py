"""The Lorenz analysis reduced to a test: `mfinfer run` on Lorenz points with a θ-dependent-manifold
M-flow, a θ-independent M-flow and an AF (tiny models, one true point, 10 events) writes every
artefact, analyses/lorenz/run.py turns the run directory into its tables, and the analysis' own
config and notebook are valid."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

from mfinfer.cli import main
from mfinfer.config import load_config
from mfinfer.models import load_model

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "configs" / "lorenz_tiny.yaml"
ANALYSIS = ROOT / "analyses" / "lorenz"
MODELS = ("M-flow-cond", "M-flow", "AF")


def _run_module():
    return importlib.import_module("analyses.lorenz.run")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("lorenz")
    cfg = yaml.safe_load(TINY.read_text())
    cfg["output_dir"] = str(tmp / "runs")
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--quiet"]) == 0
    return path


def test_tiny_lorenz_pipeline(tiny_run):
    run = Path(load_config(tiny_run).output_dir) / "lorenz-tiny" / "seed_0"
    for rel in ["config.yaml", "seeds.json", "timings.json", "data/train.npz", "data/observed_0.npz",
                "plots/corner_point_0.png", "metrics.json"]:
        assert (run / rel).is_file(), rel
    with np.load(run / "data" / "train.npz") as f:
        assert f["x"].shape == (400, 3) and f["theta"].shape == (400, 3)
    for name in MODELS:
        assert (run / "posteriors" / "point_0" / f"{name}.npz").is_file(), name
    cond = load_model(run / "models" / "M-flow-cond" / "final")
    assert cond.conditional_manifold and not cond.caches_projection
    assert cond.config["theta_loc"] == [10.0, 30.0, 2.4]

    metrics = json.loads((run / "metrics.json").read_text())
    assert "truth" not in metrics["points"][0]["models"]  # no exact likelihood
    for name in MODELS:
        m = metrics["models"][name]
        assert np.isfinite(m["test_log_likelihood"])
        # projections at each test event's own θ, also for the θ-dependent manifold
        assert (m["reconstruction_error"] > 0) == (name != "AF")
        assert "manifold_distance" not in m  # the attractor has no closed form (points)
        post = metrics["points"][0]["models"][name]
        assert len(post["bias"]) == 3 and all(s > 0 for s in post["std"])


def test_run_script_tables(tiny_run):
    module = _run_module()
    cfg = load_config(tiny_run)
    cfgs = module.variant_configs(cfg)
    assert list(cfgs) == list(module.VARIANTS) and cfgs["points"] is cfg
    for variant, c in cfgs.items():  # the variants change the simulator and event count only
        if variant != "points":
            assert c.models == cfg.models and c.n_train == cfg.n_train and c.mcmc == cfg.mcmc
            assert c.simulator["options"]["observation"] == "snippets"
            assert c.name == f"{cfg.name}-{variant}"
    results = module.collect({"points": cfg}, Path(cfg.output_dir) / "none")
    text = module.results_table(results, command="python analyses/lorenz/run.py")
    assert "### θ* = (10.000, 28.000, 2.667)" in text
    for name in MODELS:
        assert f"| {name} |" in text
    assert "**not met**" in text and "no calibration results" in text


def test_coverage_counts_ranks_below_the_level():
    module = _run_module()
    ranks = np.array([0.1, 0.5, 0.7, 0.96, 0.2])
    assert module.coverage(ranks, (0.68, 0.95)) == [0.6, 0.8]


def test_analysis_config_and_notebook():
    cfg = load_config(ANALYSIS / "config.yaml")
    assert cfg.simulator == {"name": "lorenz", "options": {"observation": "points"}}
    assert not cfg.truth and cfg.mcmc.method == "smc"
    kinds = {m.name: (m.kind, m.options.get("conditional_manifold", False)) for m in cfg.models}
    assert sorted(kinds.values()) == [("AmbientFlow", False), ("ManifoldFlow", False),
                                      ("ManifoldFlow", True)]
    centre, half = [10.0, 30.0, 2.4], [1.0, 3.0, 0.4]  # the prior box's centre and half-width
    assert all(m.options["theta_loc"] == centre and m.options["theta_scale"] == half
               for m in cfg.models)
    nbformat.validate(nbformat.read(ANALYSIS / "notebook.ipynb", as_version=4))
