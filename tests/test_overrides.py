"""``--set key=value``: parsing, models addressed by name, validation like the file, content keys;
and the one-line summaries the commands end with."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from mfinfer.cli import main
from mfinfer.config import load_config
from mfinfer.errors import ConfigError
from mfinfer.overrides import apply_overrides, parse_assignment
from mfinfer.pipeline import Run

TINY = Path(__file__).parent / "configs" / "tiny.yaml"


@pytest.fixture
def config(tmp_path) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    cfg["output_dir"] = str(tmp_path / "runs")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(("text", "key", "value"), [
    ("n_train=5000", "n_train", 5000),
    ("models.AF.train.lr=1e-3", "models.AF.train.lr", 1e-3),
    ("models.AF.train.lr=2.0", "models.AF.train.lr", 2.0),
    ("truth=false", "truth", False),
    ("models.AF.train.patience=null", "models.AF.train.patience", None),
    ("seeds=[0, 1]", "seeds", [0, 1]),
    ("device=cpu", "device", "cpu"),
    ("name='007'", "name", "007"),
    ("name=a=b", "name", "a=b"),  # only the first '=' splits
    (" n_train =12", "n_train", 12),
])
def test_values_are_read_as_yaml(text, key, value):
    got = parse_assignment(text)
    assert got == (key, value) and type(got[1]) is type(value)


@pytest.mark.parametrize(("text", "message"), [
    ("n_train", "expected KEY=VALUE"),
    ("=5", "expected KEY=VALUE"),
    ("models..epochs=2", "has an empty part"),
    ("models.AF.=2", "has an empty part"),
    ("seeds=[0, 1", "is not valid YAML"),
])
def test_malformed_assignments_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_assignment(text)


def test_models_are_addressed_by_name_and_missing_sections_created():
    cfg = {"n_train": 10, "models": [{"name": "AF", "kind": "AmbientFlow"},
                                     {"name": "M-flow v1.2", "kind": "ManifoldFlow", "train": {"lr": 1.0}}],
           "observed": {"theta": [[0.1], [0.2]]}}
    out = apply_overrides(cfg, {"models.AF.train.epochs": 2, "models.M-flow v1.2.train.lr": 0.5,
                                "observed.theta.1": [0.3], "posterior.method": "grid"})
    assert out["models"][0]["train"] == {"epochs": 2}
    assert out["models"][1]["train"] == {"lr": 0.5}  # a name with dots, matched whole
    assert out["observed"]["theta"] == [[0.1], [0.3]]
    assert out["posterior"] == {"method": "grid"}
    assert cfg["models"][0] == {"name": "AF", "kind": "AmbientFlow"}  # the input is not changed


@pytest.mark.parametrize(("overrides", "message"), [
    ({"models.AX.train.epochs": 2}, r"no entry of models named 'AX'; its names are \(nearest first\) \['AF'"),
    ({"n_train.x": 2}, r"n_train is 10 \(int\), not a section with fields"),
    ({"observed.theta.5": [0.0]}, r"observed.theta has 1 item\(s\); index 5 is out of range"),
    ({"observed.theta.first": [0.0]}, r"observed.theta is a list; address its items by index 0 to 0"),
])
def test_bad_paths_are_named(overrides, message):
    cfg = {"n_train": 10, "models": [{"name": "AF"}, {"name": "MF"}], "observed": {"theta": [[0.1]]}}
    with pytest.raises(ConfigError, match=message):
        apply_overrides(cfg, overrides)


@pytest.mark.parametrize(("settings", "message"), [
    ({"n_trian": 5}, r"config\.n_trian: unknown field; allowed: \['n_train'"),
    ({"models.AF.train.epoch": 2}, r"models\[AF\]\.train\.epoch: unknown field; allowed: \['epochs'"),
    ({"models.AF.train.epochs": "two"}, r"models\[AF\]\.train\.epochs: expected an integer >= 1, got 'two'"),
    ({"models.AF.train.mse_weight": -1}, r"models\[AF\]\.train\.mse_weight: expected a finite number >= 0"),
    ({"n_train": 1}, r"n_train: expected an integer >= 2"),
    ({"models.MF-seq.options.num_blocks": 0}, r"models\[MF-seq\]\.options\.num_blocks"),
])
def test_overrides_are_validated_like_the_file(config, settings, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config, settings=settings)


def _keys(cfg) -> dict[str, str]:
    run = Run(cfg, cfg.seeds[0], progress=False)
    keys = {m.name: run._identity(m, "data-sha")["key"] for m in cfg.models}
    return {**keys, "data": run._data_key(None)}


def test_overrides_enter_the_content_keys(config):
    base = _keys(load_config(config))
    same = _keys(load_config(config, settings={"models.AF.train.epochs": 2}))  # the file's value
    epochs = _keys(load_config(config, settings={"models.AF.train.epochs": 3}))
    n_train = _keys(load_config(config, settings={"n_train": 300}))
    assert same == base
    assert epochs["AF"] != base["AF"] and epochs["MF-seq"] == base["MF-seq"]  # only that model retrains
    assert epochs["data"] == base["data"]
    assert n_train["data"] != base["data"]


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("argv", "message"), [
    (["--set", "models.NOPE.train.epochs=1"], "no entry of models named 'NOPE'"),
    (["--set", "models.AF.train.epochs=0"], "models[AF].train.epochs: expected an integer >= 1, got 0"),
    (["--set", "n_train"], "expected KEY=VALUE"),
])
def test_cli_set_errors_are_one_line(config, argv, message):
    code, _, err = _cli(["train", str(config), "--quiet", *argv])
    assert code == 2 and message in err and "Traceback" not in err, err


def test_every_command_ends_with_a_summary_line(config, capsys):
    fast = ["--quiet", "--set", "n_train=200", "--set", "models.AF.train.epochs=1",
            "--set", "models.MF-seq.train.epochs=1", "--set", "observed.n_events=3"]
    for command, extra in (("simulate", []), ("train", ["--model", "AF"]), ("train", ["--model", "AF"])):
        assert main([command, str(config), *fast, *extra]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("mfinfer simulate: wrote 2 of 2 data file(s)")
    assert lines[1].startswith("AF (seed 0): trained 1 epoch in ") and "best validation loss" in lines[1]
    weights = Path(lines[1].split("weights: ")[1])
    assert weights.is_file() and weights.name == "weights.pt"
    assert lines[2].startswith("mfinfer train: trained 1 of 1 model(s)")
    assert lines[3].startswith("AF (seed 0): current, not retrained") and f"weights: {weights}" in lines[3]
    assert lines[4].startswith("mfinfer train: trained 0 of 1 model(s)") and lines[4].endswith(" s)")


def test_calibrate_draws_no_progress_bar_into_redirected_output(tmp_path, capfd):
    """Not --quiet, but stderr is not a terminal: messages yes, bar no; a summary line at the end."""
    config = Path(__file__).parent / "configs" / "calibration_truth.yaml"
    assert main(["calibrate", str(config), "--workers", "1", "--output-dir", str(tmp_path),
                 "--set", "calibration.n_observations=4", "--set", "calibration.num_samples=100"]) == 0
    out, err = capfd.readouterr()
    assert "calibrate: 4 observation(s) to compute" in err
    assert "%|" not in err and "obs/s" not in err and "\r" not in err, err
    last = out.strip().splitlines()[-1]
    assert last.startswith("mfinfer calibrate: 4 observations of ['truth'] (4 records computed, 0 current)")


def test_run_infer_and_evaluate_end_with_a_summary_line(tmp_path_factory, capsys):
    from test_cli import run_tiny  # the tiny pipeline run, shared with tests/test_cli.py

    cfg, base, _ = run_tiny(tmp_path_factory)
    capsys.readouterr()
    for command in ("run", "infer", "evaluate"):  # all current: nothing is redone
        assert main([command, str(cfg), "--quiet"]) == 0
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert last.startswith(f"mfinfer {command}: ") and last.endswith(" s)"), last
        assert str(base) in last
        if command == "infer":
            assert "sampled 0 of 3 posterior(s)" in last
