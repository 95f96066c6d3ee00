"""The H→4ℓ flagship comparison (analyses/higgs4l/ladder.py) in its tiny version: every rung and
estimator runs end to end, and posteriors recomputed from the kept models are bit-identical."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ESTIMATORS = ["true chart (FOM)", "AF", "NLE", "M-flow, 16 momenta"]  # in the table's order


def _run(out: Path) -> str:
    cmd = [sys.executable, "analyses/higgs4l/ladder.py", "--smoke", "--out", str(out), "--estimators",
           *ESTIMATORS]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_ladder_smoke(tmp_path):
    stdout = _run(tmp_path)
    summary = json.loads((tmp_path / "ladder.json").read_text())
    assert sorted(summary["estimators"]) == sorted(ESTIMATORS) and summary["seeds"] == [0]
    for name, entry in summary["estimators"].items():
        assert len(entry["c2st"]) == 2  # the smoke's two θ*
        assert all(0.3 <= c["median"] <= 1.0 for c in entry["c2st"]), name
        assert entry["train_seconds"]["median"] > 0 and entry["epochs"]["median"] >= 1
    # only the learned manifold has a reconstruction error (GeV, over the 16 momentum components)
    assert {n for n, e in summary["estimators"].items() if "reconstruction_error" in e} == \
        {"M-flow, 16 momenta"}
    assert summary["estimators"]["M-flow, 16 momenta"]["reconstruction_error"]["median"] > 0
    # the config's AF is the pipeline's model (which run.py reuses), the others the ladder's own
    seed_dir = tmp_path / "runs" / "higgs4l" / "seed_0"
    assert (seed_dir / "models" / "AF" / "final" / "weights.pt").is_file()
    assert (seed_dir / "ladder" / "NLE" / "final" / "weights.pt").is_file()
    table = (tmp_path / "table.md").read_text()
    assert table in stdout
    assert [ln.split(" | ")[0][2:] for ln in table.splitlines()[2:]] == ESTIMATORS

    record = json.loads((tmp_path / "seed_0.json").read_text())
    (tmp_path / "seed_0.json").unlink()  # recomputed from the kept models, not retrained
    _run(tmp_path)
    again = json.loads((tmp_path / "seed_0.json").read_text())
    assert again["fits"] == record["fits"]  # same training records: nothing was retrained
    for p, q in zip(record["points"], again["points"], strict=True):
        for name in ESTIMATORS:
            assert p["posteriors"][name]["c2st"] == q["posteriors"][name]["c2st"]
            assert p["posteriors"][name]["mean"] == q["posteriors"][name]["mean"]
