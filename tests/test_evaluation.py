"""The evaluate stage's registry and reports: medians over seeds, the metrics Run.evaluate writes,
labelled density columns per base measure, timings.json."""

import json

import numpy as np
import pytest
from test_cli import run_tiny  # the tiny pipeline run, shared with tests/test_cli.py

from mfinfer.cli import format_summary
from mfinfer.config import ConfigError, load_config
from mfinfer.errors import MissingKeyError
from mfinfer.evaluation import METRICS, metric, report, summarize
from mfinfer.evaluation.registry import (
    NEEDS,
    PosteriorInputs,
    compute,
    option_defaults,
    resolve_options,
    select,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cfg, base, _ = run_tiny(tmp_path_factory)
    return load_config(cfg), base / "seed_0"


def _result(seed: int, value: float, point_values: list[float]) -> dict:
    """A metrics.json with a model metric and a per-point metric over len(point_values) points."""
    return {"seed": seed,
            "models": {"M": {"reconstruction_error": value}},
            "points": [{"theta_true": [0.0], "models": {"M": {"mmd2": v}}} for v in point_values]}


def test_summarize_is_the_median_over_seeds_of_the_mean_over_points():
    # 3 seeds with 0, 0, 3: median 0, mean 1; within a seed, points 0, 0, 3: mean 1, median 0
    results = [_result(0, 0.0, [0.0, 0.0, 0.0]), _result(1, 0.0, [0.0, 0.0, 0.0]),
               _result(2, 3.0, [0.0, 0.0, 3.0])]
    summary = summarize(results)
    assert summary["M"]["reconstruction_error"] == 0.0
    assert summary["M"]["n_seeds"] == 3
    # per seed: 0, 0, mean(0, 0, 3) = 1 -> median 0; and per seed the mean over points is 1
    assert summary["M"]["mmd2"] == 0.0
    assert report.seed_values({2: results[2]})["M"]["mmd2"] == {2: 1.0}
    assert summarize([_result(0, 1.0, [0.0]), _result(1, 2.0, [0.0]), _result(2, 6.0, [0.0])]) \
        ["M"]["reconstruction_error"] == 2.0
    assert summarize([]) == {}


def test_registry_lists_what_run_evaluate_writes(tiny):
    _, run = tiny
    res = json.loads((run / "metrics.json").read_text())
    model_keys = {k for vals in res["models"].values() for k in vals}
    point_keys = {k for p in res["points"] for vals in p["models"].values() for k in vals}
    assert model_keys == {name for name, mt in METRICS.items() if not mt.per_point}
    assert point_keys == {name for name, mt in METRICS.items() if mt.per_point}
    # the truth gets exactly the metrics registered for it
    assert set(res["models"]["truth"]) == \
        {n for n, mt in METRICS.items() if mt.needs == "model" and mt.truth}
    assert set(res["points"][0]["models"]["truth"]) == \
        {n for n, mt in METRICS.items() if mt.needs == "posterior_vs_theta" and mt.truth}
    assert all(mt.needs in NEEDS for mt in METRICS.values())


def test_summary_json_holds_the_summary_metrics(tiny):
    _, run = tiny
    summary = json.loads((run.parent / "summary.json").read_text())
    wanted = {mt.name for mt in select(summary=True)}
    assert set(summary["MF-seq"]) == wanted | {"n_seeds"}
    assert set(summary["AF"]) == wanted | {"n_seeds"}


def test_report_table_separates_densities_by_base_measure(tiny):
    cfg, _ = tiny
    measures = report.base_measures(cfg.models)
    assert measures == {"AF": "ambient", "MF-seq": "manifold", "truth": "manifold"}
    summary = {"AF": {"test_log_likelihood": -0.64, "mmd2": 0.1, "n_seeds": 1},
               "MF-seq": {"test_log_likelihood": -3.72, "mmd2": 0.01, "n_seeds": 1},
               "truth": {"test_log_likelihood": -3.65, "log_p_true": -0.4, "n_seeds": 1}}
    text = format_summary(summary, cfg)
    head, _, *rows = text.splitlines()[1:]
    titles = [c.strip() for c in head.strip("|").split("|")]
    manifold = titles.index("test log p̂ on the manifold ↑")
    ambient = titles.index("test log p̂ in R^D (AF) ↑")
    assert "test_log_likelihood" not in text
    cells = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in rows}
    assert cells["AF"][ambient] == "-0.6400" and cells["AF"][manifold] == "–"
    assert cells["MF-seq"][manifold] == "-3.7200" and cells["MF-seq"][ambient] == "–"
    assert cells["truth"][manifold] == "-3.6500" and cells["truth"][ambient] == "–"
    # one model kind only: one density column
    only_mf = report.summary_table({"MF-seq": summary["MF-seq"]}, measures)
    assert "on the manifold" in only_mf and "in R^D" not in only_mf


def test_base_measure_comes_from_the_model_class_attribute(monkeypatch):
    from types import SimpleNamespace

    from mfinfer import models

    class Fake:  # not a Flow subclass: only the declared capability counts
        has_manifold = True

    monkeypatch.setitem(models.MODELS, "Fake", Fake)
    cfgs = [SimpleNamespace(name="a", kind="Fake"), SimpleNamespace(name="b", kind="AmbientFlow")]
    assert report.base_measures(cfgs) == {"a": "manifold", "b": "ambient", "truth": "manifold"}


def test_timings_json_has_every_stage(tiny):
    cfg, run = tiny
    timings = report.read_timings(run)
    assert set(timings) == {"simulate", "train", "infer", "evaluate"}
    assert set(timings["train"]) == {m.name for m in cfg.models}
    assert {"truth", *timings["train"]} <= set(timings["infer"])
    assert all("0" in points for points in timings["infer"].values())
    flat = report.stage_seconds(timings)
    assert {"simulate", "train AF", "train MF-seq", "infer truth", "infer AF", "infer MF-seq",
            "evaluate"} <= set(flat)
    assert all(s >= 0 for s in flat.values()) and flat["evaluate"] > 0


def test_record_time_merges_passes(tmp_path):
    report.record_time(tmp_path, 2.0, "train", "AF")
    report.record_time(tmp_path, 1.0, "simulate")
    report.record_time(tmp_path, 0.5, "simulate", add=True)  # a resumed stage adds
    report.record_time(tmp_path, 3.0, "train", "MF")
    report.record_time(tmp_path, 4.0, "train", "AF")  # redone: replaced
    report.record_time(tmp_path, 1.5, "infer", "AF", "0")
    report.record_time(tmp_path, 2.5, "infer", "AF", "1")
    assert report.read_timings(tmp_path) == {"simulate": 1.5, "train": {"AF": 4.0, "MF": 3.0},
                                             "infer": {"AF": {"0": 1.5, "1": 2.5}}}
    assert report.stage_seconds(report.read_timings(tmp_path))["infer AF"] == 4.0
    assert report.read_timings(tmp_path / "missing") == {}


def test_metric_options_and_switches(tmp_path):
    rng = np.random.default_rng(0)
    s, ref = rng.normal(size=(50, 1)), rng.normal(size=(50, 1))
    opts = option_defaults()
    on = compute(PosteriorInputs(s, np.zeros(1), ref, 0, opts))
    off = compute(PosteriorInputs(s, np.zeros(1), ref, 0, opts | {"c2st": False}))
    assert "c2st" in on and "c2st" not in off and "mmd2" in off
    truth = compute(PosteriorInputs(s, np.zeros(1), None, 0, opts, is_truth=True))
    assert "mmd2" not in truth and "log_p_true" in truth
    wider = compute(PosteriorInputs(s, np.zeros(1), None, 0, opts | {"kde_bandwidth": 1.0}))
    assert wider["log_p_true"] != truth["log_p_true"]
    with pytest.raises(ConfigError, match=r"unknown fields \['kde'\]; allowed: .*kde_bandwidth"):
        resolve_options({"kde": 0.1})


def test_unknown_metric_lists_the_registered_ones():
    assert metric("mmd2").over_seeds == "median" and metric("mmd2").within_seed == "mean"
    with pytest.raises(MissingKeyError,
                       match=r"no metric named 'mmd'; registered \(nearest first\): \['mmd2'"):
        metric("mmd")


def test_write_results_keeps_the_hand_written_tail(tmp_path):
    from mfinfer.evaluation.report import KEPT_MARKER, write_results

    path = tmp_path / "results.md"
    write_results(path, "# old table\n")
    path.write_text(path.read_text() + f"\n{KEPT_MARKER}\n## Notes\nkept\n")
    text = write_results(path, "# new table\n")
    assert text == path.read_text()
    assert text.startswith("# new table\n") and "old table" not in text
    assert text.endswith(f"{KEPT_MARKER}\n## Notes\nkept\n")
