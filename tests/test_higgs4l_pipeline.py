"""The higgs4l analysis reduced to a test: `mfinfer run` on H -> ZZ* -> 2e2mu with an AF and an
M-flow (tiny models, one true point, 10 events) writes every artefact, the metrics compare both
models with the exact posterior, and analyses/higgs4l/run.py turns them into its results table."""

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mfinfer.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "configs" / "higgs4l_tiny.yaml"
MODELS = ("AF", "M-flow")


def _run_module():
    return importlib.import_module("analyses.higgs4l.run")


# 300 MCMC steps: short on purpose
@pytest.mark.filterwarnings("ignore:sample_emcee:UserWarning")
def test_reduced_higgs4l_analysis(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["output_dir"] = str(tmp_path / "runs")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))

    assert main(["run", str(path), "--quiet"]) == 0

    base = tmp_path / "runs" / "higgs4l-tiny"
    run = base / "seed_0"
    for rel in ["config.yaml", "seeds.json", "log.txt", "timings.json", "data/train.npz",
                "data/observed_0.npz", "posteriors/point_0/truth.npz",
                "posteriors/point_0/truth.json", "plots/corner_point_0.png", "metrics.json"]:
        assert (run / rel).is_file(), rel
    for name in MODELS:
        for rel in ["checkpoint.pt", "train_config.json", "final/weights.pt", "final/model.json"]:
            assert (run / "models" / name / rel).is_file(), f"{name}/{rel}"
        for ext in ("npz", "json"):
            assert (run / "posteriors" / "point_0" / f"{name}.{ext}").is_file()
    assert (base / "summary.json").is_file()

    with np.load(run / "data" / "train.npz") as f:
        assert f["x"].shape == (1000, 38) and f["theta"].shape == (1000, 2)
    with np.load(run / "data" / "observed_0.npz") as f:
        assert f["x"].shape == (10, 38)
        np.testing.assert_allclose(f["theta"], [0.5, -1.0])

    metrics = json.loads((run / "metrics.json").read_text())
    point = metrics["points"][0]
    assert point["theta_true"] == [0.5, -1.0]
    assert np.isfinite(point["models"]["truth"]["log_p_true"])
    for name in MODELS:
        m = point["models"][name]
        assert {"c2st", "mmd2", "log_p_true", "bias", "std"} <= set(m), name
        assert 0.0 <= m["c2st"] <= 1.0 and np.isfinite(m["mmd2"])
        assert metrics["models"][name]["manifold_distance"] >= 0
    # the M-flow's samples lie on its learned manifold, the AF has no projection
    assert metrics["models"]["AF"]["reconstruction_error"] == 0.0
    assert metrics["models"]["M-flow"]["reconstruction_error"] > 0.0

    # the analysis script's table, from the same run directory
    out = tmp_path / "results.md"
    assert _run_module().main(["--config", str(path), "--table-only", "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Point 0: θ* = (a2, a3) = (0.5, -1)" in text
    for name in ("truth (exact likelihood)", *MODELS):
        assert f"| {name} |" in text
    assert "lower C2ST than the AF and agreeing with the exact posterior on" in text
    # stage wall times come from the pipeline's timings.json, one item per model and posterior
    timings = json.loads((run / "timings.json").read_text())
    assert set(timings) == {"simulate", "train", "infer", "evaluate"}
    assert set(timings["train"]) == set(MODELS) and set(timings["infer"]) == {"truth", *MODELS}
    line = next(ln for ln in text.splitlines()
                if ln.startswith("- seed 0 stage wall times: simulate "))
    for item in ("train AF ", "train M-flow ", "infer truth ", "infer AF ", "infer M-flow ",
                 "evaluate "):
        assert item in line, item
    assert "| manifold distance of samples [GeV] ↓ |" in text
