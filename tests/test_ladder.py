"""The H→4ℓ flagship comparison (python -m analyses.higgs4l.ladder) in its tiny version: the new
estimators (score, ensemble, true chart + score) and the NLE under both budgets end to end, with
coverage, and posteriors recomputed from the kept models are bit-identical."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# in the table's order; the M-flow is trained too (for the coverage) but not asked for
ESTIMATORS = ["true chart + score", "AF + score", "M-flow + score", "M-flow + score, 3 members", "NLE"]
WALL = 2.0


def _run(out: Path, *budgets: str, coverage: int = 0, estimators: list[str] = ESTIMATORS,
         extra: tuple[str, ...] = ()) -> str:
    cmd = [sys.executable, "-m", "analyses.higgs4l.ladder", "--smoke", "--out", str(out), "--budget",
           *budgets, "--estimators", *estimators, "--coverage", str(coverage), *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_ladder_smoke(tmp_path):
    stdout = _run(tmp_path, f"wall={WALL:g}", "converge", coverage=2)
    summaries = json.loads((tmp_path / "ladder.json").read_text())
    assert sorted(summaries) == ["converge", f"wall={WALL:g}"]
    ladder = tmp_path / "runs" / "higgs4l" / "seed_0" / "ladder"
    for key, summary in summaries.items():
        folder = "converge" if key == "converge" else f"wall-{WALL:g}s"
        assert sorted(summary["estimators"]) == sorted(ESTIMATORS) and summary["seeds"] == [0]
        assert summary["device"] == "cpu" and summary["seconds"] == (WALL if key != "converge" else None)
        for name, entry in summary["estimators"].items():
            assert len(entry["c2st"]) == 2  # the smoke's two θ*
            assert all(0.3 <= c["median"] <= 1.0 for c in entry["c2st"]), name
            assert entry["train_seconds"]["median"] > 0 and entry["epochs"]["median"] >= 1
        fits = {n: json.loads((ladder / folder / "cpu" / n / "fit.json").read_text())
                for n in ESTIMATORS}
        assert len(fits["M-flow + score, 3 members"]["member_epochs"]) == 3
        assert summary["estimators"]["M-flow + score, 3 members"]["reconstruction_error"]["median"] > 0
        assert fits["M-flow + score"]["spec"]["train"]["score_weight"] == 1.0
        if key == "converge":  # the smoke caps the epochs; sbi's NLE stops at the cap too
            assert fits["NLE"]["stopped"] == "max_epochs" and fits["NLE"]["epochs"] == 2
            assert all(e == 2 for f in fits.values() for e in f["member_epochs"])
        else:  # the clock's ledger holds the seconds the record reports
            assert fits["NLE"]["stopped"] in ("wall", "converged")
            ledger = json.loads((ladder / folder / "cpu" / "M-flow + score" / "ledger.json")
                                .read_text())
            assert ledger["members"]["0"]["seconds"] == fits["M-flow + score"]["seconds"]
            assert ledger["pilot_seconds_per_epoch"] > 0
        cov = summary["coverage"]
        assert cov["n_observations"] == 2 and sorted(cov["coverage"]) == sorted(
            ["truth", "M-flow", "M-flow + score", "M-flow + score, 3 members", "NLE"])
        assert all(0 <= v <= 1 for vs in cov["coverage"].values() for v in vs)
    table = (tmp_path / "table.md").read_text()
    assert table in stdout
    assert f"**Budget `wall={WALL:g}`**" in table and f"{WALL:g} s per estimator" in table
    assert "device cpu" in table and "HPD coverage over 2 observations" in table
    rows = [ln.split(" | ")[0][2:].rstrip(" †") for ln in table.splitlines() if ln.startswith("| ")]
    assert rows[1:len(ESTIMATORS) + 1] == ESTIMATORS  # the first budget's rows, in the table's order

    record = json.loads((tmp_path / "converge" / "seed_0.json").read_text())
    some = ["M-flow + score, 3 members", "NLE"]  # recomputed from the kept models, not retrained
    _run(tmp_path, "converge", estimators=some)
    again = json.loads((tmp_path / "converge" / "seed_0.json").read_text())
    assert again["fits"] == {n: record["fits"][n] for n in some}  # the same training records
    for p, q in zip(record["points"], again["points"], strict=True):
        for name in some:
            assert p["posteriors"][name]["c2st"] == q["posteriors"][name]["c2st"]
            assert p["posteriors"][name]["mean"] == q["posteriors"][name]["mean"]

    # --trained-only trains nothing: the chart flow (never trained here) is listed as still training,
    # and the NLE's coverage ranks are reused while the truth's and the NLE's stay in coverage.json
    ranks = json.loads((tmp_path / "converge" / "coverage.json").read_text())["estimators"]
    stdout = _run(tmp_path, "converge", coverage=2, estimators=["NLE", "true chart (FOM)"],
                  extra=("--trained-only", "--covered", "NLE", "true chart (FOM)"))
    assert not (ladder / "converge" / "cpu" / "true chart (FOM)").exists()
    summary = json.loads((tmp_path / "ladder.json").read_text())["converge"]
    assert list(summary["estimators"]) == ["NLE"] and summary["pending"] == {"true chart (FOM)": [0]}
    assert "Still training under this budget" in stdout and "true chart (FOM) (seeds 0)" in stdout
    assert sorted(summary["coverage"]["coverage"]) == ["NLE", "truth"]
    assert summary["coverage"]["coverage"]["NLE"] == summaries["converge"]["coverage"]["coverage"]["NLE"]
    again = json.loads((tmp_path / "converge" / "coverage.json").read_text())["estimators"]
    assert again == ranks  # nothing recomputed, the M-flows' ranks kept
