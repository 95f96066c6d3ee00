"""The analyses: the power results table, ``--table-only`` on a fresh clone (never writes less than
the committed results), the choice of the notebooks' run, the notebooks' format and the configs.
The notebooks' executions are in ``test_notebooks.py``."""

import hashlib
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from analyses.common import MissingRuns, choose_run, lost_parts
from mfinfer.config import load_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("analyses/*/notebook.ipynb"))
CONFIGS = sorted([*ROOT.glob("analyses/*/config.yaml"), *ROOT.glob("analyses/*/quick.yaml")])
#: what each analysis' --table-only would rewrite (committed): the files under analyses/<name>/
COMMITTED = {"power": ["results.md"], "higgs4l": ["results.md"],
             "lorenz": ["results.json", "results.md", "calibration.png", "corner_points_0.png"]}


def _power_run_module():
    return importlib.import_module("analyses.power.run")


def _digest(paths):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """A working directory like a fresh clone's root: the analyses, no runs/ directory."""
    (tmp_path / "analyses").symlink_to(ROOT / "analyses")
    monkeypatch.chdir(tmp_path)
    return tmp_path


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


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_table_only_on_a_fresh_clone_writes_nothing(name, fresh_clone, capsys):
    """No run directories: exit 2, one line naming what is missing and the commands (the full run
    and the quick one), and the results it would have replaced keep their bytes."""
    committed = [ROOT / "analyses" / name / f for f in COMMITTED[name]]
    before = _digest(committed)
    out = fresh_clone / "out"
    out.mkdir()
    for f in committed:  # the committed results, where --out points
        shutil.copy(f, out / f.name)
    target = out if name == "lorenz" else out / "results.md"
    module = importlib.import_module(f"analyses.{name}.run")
    assert module.main(["--table-only", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: analyses/{name}: --table-only wrote nothing")
    assert f"`python -m analyses.{name}.run" in err and f"`python -m analyses.{name}.run --quick`" in err
    assert "runs/" in err  # the missing run directories
    assert _digest([out / f.name for f in committed]) == before
    assert _digest(committed) == before
    assert not (fresh_clone / "runs").exists() or not any((fresh_clone / "runs").rglob("*.md"))


def test_table_only_as_a_script(fresh_clone):
    """``python analyses/power/run.py`` reruns itself as ``python -m analyses.power.run``."""
    out = fresh_clone / "results.md"
    done = subprocess.run([sys.executable, "analyses/power/run.py", "--table-only", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr  # (other lines: config warnings)
    assert "python -m analyses.power.run --quick" in errors[0]
    assert not out.exists()


def test_lorenz_table_only_names_the_stages_it_would_lose():
    run = importlib.import_module("analyses.lorenz.run")
    cfg = load_config(ROOT / run.DEFAULT_CONFIG)
    old = {"unconditional": {"floor": 0.1},
           "variants": {"points": {"extras": {}, "calibration": {}}, "snippets": {"nle": {}}}}
    new = {"variants": {"points": {"extras": {}}}}
    assert lost_parts(old, new) == ["unconditional", "variants/points/calibration",
                                    "variants/snippets"]
    err = run.missing_runs(old, new, cfg, list(run.VARIANTS), Path("runs/lorenz-unconditional"),
                           ["points"])
    assert isinstance(err, MissingRuns)
    assert err.missing == ["runs/lorenz-unconditional/summary.json",
                           str(run.extras_dir(cfg) / "calibration/summary.json"),
                           "runs/lorenz-snippets/seed_0/metrics.json"]
    assert err.command == ("python -m analyses.lorenz.run --stage unconditional --stage pipeline "
                           "--stage sbi --stage extras --stage calibrate --stage ablation "
                           "--stage table --variants points snippets")
    assert err.quick is None  # a partial rebuild: the quick run is no alternative
    assert run.missing_runs(old, old, cfg, list(run.VARIANTS), Path("u"), ["points"]) is None


def test_notebooks_choose_the_full_run_else_the_quick_one(tmp_path):
    full, quick = tmp_path / "full", tmp_path / "quick"
    run, is_quick, message = choose_run(full, quick, "make-full", "make-quick")
    assert (run, is_quick) == (quick, True)
    assert "QUICK run" in message and "`make-full`" in message and "runs now (`make-quick`" in message
    (quick / "seed_0").mkdir(parents=True)
    (quick / "seed_0" / "metrics.json").write_text("{}")
    run, is_quick, message = choose_run(full, quick, "make-full", "make-quick")
    assert is_quick and "runs now" not in message
    (full / "seed_2").mkdir(parents=True)
    (full / "seed_2" / "metrics.json").write_text("{}")
    run, is_quick, message = choose_run(full, quick, "make-full", "make-quick")
    assert (run, is_quick) == (full, False) and "full run" in message and "[2]" in message


def test_analyses_have_no_sys_path_edits():
    sources = [*ROOT.glob("analyses/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in sources
                 if "sys.path." + "insert" in p.read_text() or "sys.path." + "append" in p.read_text()]
    offenders += [str(p.relative_to(ROOT)) for p in NOTEBOOKS if "sys.path" in p.read_text()]
    assert offenders == []


def test_infer_on_a_fresh_clone_names_what_is_missing(tmp_path, capsys):
    """``mfinfer infer`` with no run: one line naming the simulations AND the trained models, the
    commands that make them and the analysis' quick alternative."""
    import numpy as np

    from mfinfer.cli import main

    events = tmp_path / "events.npz"
    np.savez(events, x=np.random.default_rng(0).normal(size=(5, 38)))
    config = "analyses/higgs4l/config.yaml"
    rc = main(["infer", str(ROOT / config), "--events", str(events), "--output-dir", str(tmp_path)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert rc == 2 and len(err) == 1
    for part in ("simulations (data/train.npz)", "trained models ['AF', 'M-flow']",
                 "mfinfer simulate", "mfinfer train", f"mfinfer run {ROOT / 'analyses/higgs4l/quick.yaml'}"):
        assert part in err[0], part


def test_power_table_only_writes_when_every_seed_finished(tmp_path, capsys):
    import yaml

    cfg = yaml.safe_load((ROOT / "analyses/power/config.yaml").read_text())
    cfg["output_dir"] = str(tmp_path / "runs")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "results.md"
    run = _power_run_module()
    for seed in cfg["seeds"][:-1]:  # the last seed unfinished: refused, nothing written
        (tmp_path / "runs" / "power" / f"seed_{seed}").mkdir(parents=True)
        (tmp_path / "runs" / "power" / f"seed_{seed}" / "metrics.json").write_text(
            json.dumps(_metrics(seed, 0.1, 0.01, 0.005, 0.02)))
    assert run.main(["--config", str(config), "--table-only", "--out", str(out)]) == 2
    assert f"seed_{cfg['seeds'][-1]}/metrics.json" in capsys.readouterr().err and not out.exists()
    last = tmp_path / "runs" / "power" / f"seed_{cfg['seeds'][-1]}"
    last.mkdir()
    (last / "metrics.json").write_text(json.dumps(_metrics(2, 0.1, 0.01, 0.005, 0.02)))
    assert run.main(["--config", str(config), "--table-only", "--out", str(out)]) == 0
    text = out.read_text()
    assert "3 seed(s) [0, 1, 2]" in text and "Partial results" not in text
    assert f"python -m analyses.power.run --config {config} --table-only" in text
