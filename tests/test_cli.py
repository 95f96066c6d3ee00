"""End to end: `mfinfer run` on a tiny config writes every artefact, reproduces metrics.json,
resumes, and fails clearly on bad configs, missing checkpoints and bad event files."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mfinfer.cli import main
from mfinfer.config import ConfigError, load_config

TINY = Path(__file__).parent / "configs" / "tiny.yaml"


def _config(tmp_path, **changes) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    cfg["output_dir"] = str(tmp_path / "runs")
    cfg.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


_TINY: dict = {}


def run_tiny(tmp_path_factory) -> tuple[Path, Path, float]:
    """`mfinfer run` on the tiny config, once per test session (tests/test_evaluation.py reuses it):
    (config path, run root, seconds)."""
    if "run" not in _TINY:
        tmp = tmp_path_factory.mktemp("tiny")
        cfg = _config(tmp)
        start = time.perf_counter()
        assert main(["run", str(cfg), "--quiet"]) == 0
        _TINY["run"] = (cfg, tmp / "runs" / "tiny", time.perf_counter() - start)
    return _TINY["run"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_tiny(tmp_path_factory)


def test_run_writes_every_artefact_quickly(tiny_run):
    _, base, _ = tiny_run
    run = base / "seed_0"
    for rel in ["config.yaml", "seeds.json", "log.txt", "timings.json", "data/train.npz",
                "data/observed_0.npz", "models/AF/checkpoint.pt", "models/AF/final/weights.pt",
                "models/MF-seq/final/model.json", "posteriors/point_0/truth.npz",
                "posteriors/point_0/AF.json", "posteriors/point_0/MF-seq.npz",
                "plots/corner_point_0.png", "metrics.json"]:
        assert (run / rel).is_file(), rel
    assert (base / "summary.json").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    point = metrics["points"][0]["models"]
    assert {"mmd2", "c2st", "log_p_true", "bias", "std"} <= set(point["MF-seq"])
    assert metrics["models"]["MF-seq"]["manifold_distance"] >= 0


def test_same_config_and_seed_reproduce_metrics(tiny_run, tmp_path):
    _, base, _ = tiny_run
    again = _config(tmp_path)
    assert main(["run", str(again), "--quiet"]) == 0
    a = json.loads((base / "seed_0" / "metrics.json").read_text())
    b = json.loads((tmp_path / "runs" / "tiny" / "seed_0" / "metrics.json").read_text())
    assert a == b


def test_interrupted_run_resumes_at_the_missing_stage(tiny_run, tmp_path):
    _, base, _ = tiny_run
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(base, copy)
    (copy / "seed_0" / "metrics.json").unlink()
    shutil.rmtree(copy / "seed_0" / "posteriors" / "point_0")
    trained = (copy / "seed_0" / "models" / "AF" / "final" / "weights.pt").stat().st_mtime_ns
    assert main(["run", str(_config(tmp_path)), "--quiet"]) == 0
    weights = copy / "seed_0" / "models" / "AF" / "final" / "weights.pt"
    assert weights.stat().st_mtime_ns == trained
    assert json.loads((copy / "seed_0" / "metrics.json").read_text()) == \
        json.loads((base / "seed_0" / "metrics.json").read_text())
    # timings.json merges the passes: training from the first, MCMC and evaluate from the second
    first = json.loads((base / "seed_0" / "timings.json").read_text())
    merged = json.loads((copy / "seed_0" / "timings.json").read_text())
    assert merged["train"] == first["train"] and merged["simulate"] == first["simulate"]
    assert set(merged["infer"]) == set(first["infer"]) and merged["evaluate"] > 0


def test_sampler_method_from_config_reruns_only_infer(tiny_run, tmp_path):
    """posterior.method is part of the infer key: switching to the grid re-samples, keeps the models."""
    _, base, _ = tiny_run
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(base, copy)
    weights = copy / "seed_0" / "models" / "AF" / "final" / "weights.pt"
    trained = weights.stat().st_mtime_ns
    cfg = _config(tmp_path, posterior={"num_samples": 200, "method": "grid"})
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert weights.stat().st_mtime_ns == trained
    for name in ("truth", "AF", "MF-seq"):
        summary = json.loads((copy / "seed_0" / "posteriors" / "point_0" / f"{name}.json").read_text())
        assert summary["grid"]["converged"] and "mcmc" not in summary, name


def test_infer_on_a_root_file(tiny_run, tmp_path, capsys):
    cfg, base, _ = tiny_run
    events = tmp_path / "data.root"
    assert main(["simulate", str(cfg), "--out", str(events), "--n", "5", "--theta", "0.2"]) == 0
    assert main(["infer", str(cfg), "--events", str(events), "--quiet"]) == 0
    assert (base / "seed_0" / "posteriors" / "point_data" / "MF-seq.npz").is_file()
    assert "MF-seq: mean" in capsys.readouterr().out


def test_bad_config_field_names_field_and_choices(tmp_path):
    path = _config(tmp_path, simulatr={"name": "power"})
    with pytest.raises(ConfigError,
                       match=r"config.simulatr: unknown field; allowed: \['simulator'"):
        load_config(path)
    cfg = yaml.safe_load(TINY.read_text())
    cfg["models"][0]["train"]["schedule"] = "fast"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"schedule: must be one of \('nll'"):
        load_config(tmp_path / "bad.yaml")
    assert main(["run", str(tmp_path / "bad.yaml")]) == 2


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    cfg = _config(tmp_path)
    assert main(["simulate", str(cfg)]) == 0
    assert main(["infer", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "trained models ['AF'" in err and "mfinfer train" in err, err
    assert len(err.strip().splitlines()) == 1


def test_theta_outside_prior_is_rejected(tmp_path, capsys):
    cfg = _config(tmp_path, observed={"theta": [[3.0]], "n_events": 5})
    assert main(["simulate", str(cfg)]) == 2
    assert "outside the prior" in capsys.readouterr().err


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "mfinfer.cli", "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "simulate" in out.stdout and "evaluate" in out.stdout
