"""Training on your own simulations through the CLI alone: ``simulate --out`` writes the schema a
``simulations:`` section reads; training from the written files reproduces the simulator's
``metrics.json``; a config with ``simulations:`` and ``prior:`` and no simulator trains and infers
``--events``; a misspelled branch is a one-line error; a calibration campaign trains from the files
and simulates its observations with the config's simulator (without one, a one-line error)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from mfinfer.cli import main

TINY = Path(__file__).parent / "configs" / "tiny.yaml"
AF = {"name": "AF", "kind": "AmbientFlow", "train": {"epochs": 1, "batch_size": 100},
      "options": {"num_layers": 1, "hidden_features": 8, "num_blocks": 1}}


def _write(tmp: Path, name: str, cfg: dict) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "output_dir": str(tmp / "runs"), **cfg}))
    return path


def _simulator_config(tmp: Path, name: str = "from-simulator", **extra) -> Path:
    base = yaml.safe_load(TINY.read_text())
    base.update(n_train=300, models=[AF], observed={"theta": [[0.2]], "n_events": 5},
                metrics={"n_model_samples": 100, "c2st": False}, **extra)
    for key in ("name", "mcmc", "posterior"):
        base.pop(key, None)
    base.update(_sampler())
    return _write(tmp, name, base)


def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_training_from_written_files_reproduces_the_simulators_metrics(tmp_path: Path) -> None:
    sim_cfg = _simulator_config(tmp_path)
    code, out, err = _main(["simulate", str(sim_cfg), "--out", "sims/train.root", "--training",
                            "--parts", "3"])
    assert code == 0, err
    section = yaml.safe_load(out[out.index("\n") + 1:])["simulations"]
    assert section == {"files": "sims/train_*.root", "tree": "events", "theta": ["theta_0"],
                       "observables": ["x_0", "x_1", "x_2"], "weight": "weight", "score": ["score_0"]}
    files_cfg = _simulator_config(tmp_path, "from-files", simulations=section)
    for cfg in (sim_cfg, files_cfg):
        code, _, err = _main(["run", str(cfg), "--quiet"])
        assert code == 0, err
    a, b = (json.loads((tmp_path / "runs" / n / "seed_0" / "metrics.json").read_text())
            for n in ("from-simulator", "from-files"))
    assert a == b
    assert (tmp_path / "runs" / "from-files" / "simulations").is_dir()
    assert not (tmp_path / "runs" / "from-files" / "seed_0" / "data" / "train.npz").exists()


def test_no_simulator_trains_from_files_and_infers_events(tmp_path: Path) -> None:
    sim_cfg = _simulator_config(tmp_path)
    assert _main(["simulate", str(sim_cfg), "--out", "sims/s.root", "--n", "400", "--parts", "2"])[0] == 0
    assert _main(["simulate", str(sim_cfg), "--out", "obs.root", "--n", "20", "--theta", "0.2",
                  "--seed", "1"])[0] == 0
    mflow = {"name": "MF", "kind": "ManifoldFlow", "options": {"outer_layers": 1, "inner_layers": 1,
             "hidden_features": 8, "num_blocks": 1}, "train": {"schedule": "sequential", "epochs": 2}}
    cfg = _write(tmp_path, "files-only", {
        "simulations": {"files": ["sims/s_*.root"], "theta": "theta_0",
                        "observables": {"a": "x_0", "b": "x_1", "c": "x_2"}, "weight": "weight",
                        "score": ["score_0"], "manifold_dim": 2},
        "prior": {"box": {"low": [-1.0], "high": [1.0]}},
        "models": [{**AF, "train": {**AF["train"], "score_weight": 0.1}}, mflow], **_sampler()})
    code, _, err = _main(["train", str(cfg), "--quiet"])
    assert code == 0, err
    run = tmp_path / "runs" / "files-only" / "seed_0"
    assert (run / "models" / "MF" / "final" / "weights.pt").is_file()
    no_score = yaml.safe_load(cfg.read_text())
    del no_score["simulations"]["score"]
    no_score["name"] = "files-no-score"
    code, _, err = _main(["train", str(_write(tmp_path, "files-no-score", no_score)), "--quiet"])
    assert code == 2 and "score_weight" in err, "without score: the score term has nothing to fit"
    code, out, err = _main(["infer", str(cfg), "--events", "obs.root", "--quiet"])
    assert code == 0, err
    assert "AF: mean" in out and "MF: gate:" in out
    mean = float(out.split("MF: mean [")[1].split("]")[0])
    assert -1.0 <= mean <= 1.0


def test_a_misspelled_branch_is_a_one_line_error(tmp_path: Path) -> None:
    sim_cfg = _simulator_config(tmp_path)
    assert _main(["simulate", str(sim_cfg), "--out", "s.root", "--n", "50"])[0] == 0
    cfg = _write(tmp_path, "bad", {
        "simulations": {"files": "s.root", "theta": ["theta_0"], "observables": ["x_0", "x_1", "x2"]},
        "prior": {"box": {"low": [-1.0], "high": [1.0]}}, "models": [AF]})
    code, _, err = _main(["train", str(cfg), "--quiet"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no branch 'x2'" in err and "nearest first): 'x_2'" in err


def _sampler() -> dict:
    from mfinfer.config import RunConfig

    if "posterior" in RunConfig.__dataclass_fields__:
        return {"posterior": {"num_samples": 200}}
    return {"mcmc": {"num_samples": 200, "num_walkers": 8, "max_steps": 300}}


def test_simulate_on_a_files_only_run_says_it_reads_the_files(tmp_path: Path) -> None:
    assert _main(["simulate", str(_simulator_config(tmp_path)), "--out", "s.root", "--n", "50"])[0] == 0
    cfg = _write(tmp_path, "files-only", {
        "simulations": {"files": "s.root", "theta": ["theta_0"], "observables": ["x_0", "x_1", "x_2"]},
        "prior": {"box": {"low": [-1.0], "high": [1.0]}}, "models": [AF], "seeds": [0, 1]})
    code, out, err = _main(["simulate", str(cfg), "--quiet"])
    assert code == 0, err
    line = out.strip().splitlines()[-1]
    assert "read from the simulations: files" in line and "nothing to simulate" in line, line
    assert "wrote" not in line, line
    assert (tmp_path / "runs" / "files-only" / "simulations").is_dir()  # read and cached once


def test_calibrating_a_files_run_needs_the_simulator_and_then_trains_from_the_files(tmp_path: Path) -> None:
    assert _main(["simulate", str(_simulator_config(tmp_path)), "--out", "s.root", "--training"])[0] == 0
    section = {"files": "s.root", "theta": ["theta_0"], "observables": ["x_0", "x_1", "x_2"]}
    calibration = {"n_observations": 4, "num_samples": 100, "models": ["truth", "AF"]}
    files_only = _write(tmp_path, "files-only", {
        "simulations": section, "prior": {"box": {"low": [-1.0], "high": [1.0]}}, "models": [AF],
        "calibration": calibration})
    code, _, err = _main(["calibrate", str(files_only), "--quiet"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "simulator:" in err and "add simulator: {name: ...}" in err, err
    with_simulator = _write(tmp_path, "files-sim", {
        "simulations": section, "simulator": {"name": "power"}, "models": [AF],
        "observed": {"n_events": 5}, "calibration": calibration})
    code, _, err = _main(["calibrate", str(with_simulator), "--quiet"])
    assert code == 0, err
    run = tmp_path / "runs" / "files-sim"
    assert (run / "simulations").is_dir(), "the AF trains from the files"
    assert not (run / "seed_0" / "data" / "train.npz").exists()
    coverage = json.loads((run / "calibration" / "coverage.json").read_text())
    assert set(coverage) == {"truth", "AF"} and all(0.0 <= c <= 1.0 for c in coverage["AF"].values())
