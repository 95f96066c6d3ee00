"""The H→4ℓ report: the sampler section flags every posterior whose sampler did not converge, whatever
the sampler (the config moved from emcee to the grid); the flagship tables come in budget order, take
each estimator over the seeds it was trained on and list the pending ones; coverage ranks are kept per
estimator."""

import json

from analyses.higgs4l.budgets import parse_budget
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
