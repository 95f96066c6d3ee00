"""The H→4ℓ report: the sampler section flags every posterior whose sampler did not converge, whatever
the sampler (the config moved from emcee to the grid); the flagship tables come in budget order, take
each estimator over the seeds it was trained on and list the pending ones; coverage ranks are kept per
estimator; head-to-head counts take the (seed, θ*) pairs both estimators have."""

import argparse
import json

import pytest

from analyses.higgs4l.budgets import parse_budget
from analyses.higgs4l.compare import head_to_head, parse_spec
from analyses.higgs4l.compare import main as compare_main
from analyses.higgs4l.coverage import stored_ranks
from analyses.higgs4l.ladder import in_budget_order, summarise, table
from analyses.higgs4l.run import _convergence
from mfinfer.caching import content_key


def _write(root, seed, point, name, record):
    path = root / f"seed_{seed}" / "posteriors" / f"point_{point}" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_convergence_flags_unconverged_grid_and_emcee_posteriors(tmp_path):
    _write(tmp_path, 0, 0, "AF", {"metadata": {"sampler": {"method": "grid", "converged": True}}})
    assert _convergence(tmp_path, [0]) == [
        "- every posterior's sampler converged (emcee: ≥ 50 autocorrelation times)."]
    _write(tmp_path, 0, 1, "M-flow", {"metadata": {"sampler": {"method": "grid", "converged": False}}})
    _write(tmp_path, 0, 2, "AF", {"mcmc": {"converged": False, "tau": [30.0, 40.0], "n_steps": 400},
                                  "metadata": {"sampler": {"method": "emcee", "converged": False}}})
    lines = _convergence(tmp_path, [0])
    assert len(lines) == 2
    assert "point_1, M-flow: the grid sampler did not converge" in lines[0]
    assert "point_2, AF: stopped at max_steps (400 steps = 10 τ" in lines[1]


def test_budgets_in_order_wall_by_seconds_then_converge():
    summaries = {"converge": {"seconds": None}, "wall=1500": {"seconds": 1500.0},
                 "wall=300": {"seconds": 300.0}}  # ladder.json's sorted keys
    assert [s["seconds"] for s in in_budget_order(summaries)] == [300.0, 1500.0, None]


def _record(seed, c2st):
    fit = {"seconds": 10.0 * (seed + 1), "seconds_per_epoch": 1.0, "epochs": 10, "device": "cpu"}
    return {"seed": seed, "fits": {n: fit for n in c2st}, "reconstruction_error": {},
            "points": [{"theta": [0.0, 0.0], "posteriors": {n: {"c2st": v} for n, v in c2st.items()}}]}


def test_summary_takes_each_estimator_over_its_own_seeds_and_lists_the_pending():
    records = [_record(0, {"NLE": 0.9, "M-flow": 0.7}), _record(1, {"NLE": 0.8}),
               _record(2, {"NLE": 0.6})]
    summary = summarise(records, parse_budget("converge"), "cpu", {"M-flow": [1, 2]})
    nle, mflow = summary["estimators"]["NLE"], summary["estimators"]["M-flow"]
    assert nle["seeds"] == [0, 1, 2] and nle["c2st"][0] == {"median": 0.8, "min": 0.6, "max": 0.9}
    assert mflow["seeds"] == [0] and mflow["c2st"][0]["median"] == 0.7
    assert mflow["train_seconds"]["median"] == 10.0 and nle["train_seconds"]["median"] == 20.0
    text = table(summary)
    rows = {ln.split(" | ")[0][2:]: ln.split(" | ")[1] for ln in text.splitlines()
            if ln.startswith("| ") and "---" not in ln}
    assert rows["NLE"] == "0, 1, 2" and rows["M-flow"] == "0"
    assert "M-flow (seeds 1, 2)." in text


def test_coverage_ranks_are_kept_per_estimator_and_read_from_the_earlier_format(tmp_path):
    path = tmp_path / "coverage.json"
    keys = {"truth": "t", "NLE": "k1", "M-flow": "k2"}
    old = {"key": content_key("ladder-coverage", {"NLE": "k1", "M-flow": "k2"}, 100, 50),
           "num_samples": 100, "ranks": {"0": {"NLE": 3, "M-flow": 4, "truth": 5}}}
    path.write_text(json.dumps(old))
    stored = stored_ranks(path, keys, 100, 50)
    assert stored == {"truth": {"key": "t", "ranks": {"0": 5}}, "NLE": {"key": "k1", "ranks": {"0": 3}},
                      "M-flow": {"key": "k2", "ranks": {"0": 4}}}
    assert stored_ranks(path, {**keys, "NLE": "retrained"}, 100, 50) == {}  # the old key no longer holds
    assert stored_ranks(path, keys, 200, 50) == {}  # other sample counts
    path.write_text(json.dumps({"num_samples": 100, "n_events": 50, "estimators": stored}))
    assert stored_ranks(path, {"truth": "t", "NLE": "k1"}, 100, 50) == stored  # the others kept


def test_head_to_head_counts_only_the_pairs_both_have(tmp_path, capsys):
    def write(folder, seed, c2st):  # c2st: {name: [per θ*]}
        (tmp_path / folder).mkdir(exist_ok=True)
        points = [{"posteriors": {n: {"c2st": v[k]} for n, v in c2st.items()}} for k in range(2)]
        (tmp_path / folder / f"seed_{seed}.json").write_text(json.dumps({"seed": seed, "points": points}))

    write("wall-300s", 0, {"M-flow": [0.6, 0.9], "NLE": [0.7, 0.8]})
    write("wall-300s", 1, {"M-flow": [0.6, 0.6], "NLE": [0.9, 0.9]})
    write("converge", 0, {"NLE": [0.65, 0.95]})  # seed 1 still training
    assert head_to_head(tmp_path, parse_spec("M-flow@wall=300"), parse_spec("NLE@wall=300")) == (3, 4)
    assert head_to_head(tmp_path, parse_spec("M-flow@wall=300"), parse_spec("NLE@converge")) == (2, 2)
    compare_main(["M-flow@wall=300", "NLE@converge", "--out", str(tmp_path)])
    assert "M-flow (wall=300) closer than NLE (converge): 2 of 2 (seed, θ*) pairs" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # no such budget run: a usage error naming the folder
        compare_main(["M-flow@wall=30", "NLE@converge", "--out", str(tmp_path)])
    assert "wall-30s: no posteriors under budget wall=30" in capsys.readouterr().err
    with pytest.raises(argparse.ArgumentTypeError, match="NAME one of"):
        parse_spec("Mflow@converge")
