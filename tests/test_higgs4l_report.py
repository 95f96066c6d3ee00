"""The H→4ℓ report's sampler section flags every posterior whose sampler did not converge, whatever
the sampler (the config moved from emcee to the grid), and the flagship tables come in budget order."""

import json

from analyses.higgs4l.ladder import in_budget_order
from analyses.higgs4l.run import _convergence


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
