"""Calibration campaigns (``mfinfer calibrate``): the exact-likelihood control covers nominally,
records do not depend on the number of workers, reruns skip current records and recompute stale
ones, a worker killed mid-campaign loses nothing, models are trained once, bad configs say what
to fix.

One local dask cluster of two worker processes is shared by the module (starting one costs
seconds); the CLI test starts its own one-worker cluster, and its records are the reference.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mfinfer.calibration import Campaign, calibrate, load_campaign
from mfinfer.calibration.ranks import binomial_band, coverage, rank_statistics
from mfinfer.cli import main
from mfinfer.errors import ConfigError, InputError
from mfinfer.parallel import local_cluster

CONFIGS = Path(__file__).parent / "configs"
TRUTH_CFG = CONFIGS / "calibration_truth.yaml"
MODELS_CFG = CONFIGS / "calibration_models.yaml"


def _campaign(path: Path, output_dir: Path, **changes) -> Campaign:
    """The config at ``path``, writing under ``output_dir``, with ``calibration`` fields changed."""
    campaign = load_campaign(path, {"output_dir": str(output_dir)})
    cal = dataclasses.replace(campaign.calibration, **changes)
    return dataclasses.replace(campaign, calibration=cal)


def _records(directory: Path) -> dict[str, bytes]:
    root = directory / "records"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2, quiet=True) as cluster:
        yield cluster
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)  # slow exits are killed


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory) -> tuple[Path, str]:
    """``mfinfer calibrate calibration_truth.yaml --workers 1 --quiet``: (its directory, stdout)."""
    out = tmp_path_factory.mktemp("one_worker")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["calibrate", str(TRUTH_CFG), "--workers", "1", "--quiet", "--output-dir", str(out)])
    assert code == 0
    return out / "calibration-truth" / "calibration", stdout.getvalue()


# ------------------------------------------------------------------ statistics
def test_rank_statistics_and_coverage():
    samples = np.array([[0.1, 5.0], [0.2, 6.0], [0.3, 7.0], [0.4, 8.0]])
    log_probs = np.array([-1.0, -2.0, -3.0, -4.0])
    stats = rank_statistics(samples, log_probs, np.array([0.25, 9.0]), -2.5,
                            reference=np.array([0.0, 5.0]), scale=np.array([1.0, 10.0]))
    assert stats["ranks"] == [2, 4]  # samples below θ, per parameter
    assert stats["hpd_rank"] == 2  # samples with a lower log posterior than θ
    # θ is denser than half the samples: outside the 0.25-HPD region, inside the 0.75 one
    assert coverage(np.array([stats["hpd_rank"]]), 4, [0.25, 0.75]).tolist() == [0.0, 1.0]
    low, high = binomial_band(100, [0.5])
    assert low[0] < 0.5 < high[0] and high[0] - low[0] == pytest.approx(0.2, abs=0.02)


# ------------------------------------------------------------------ campaigns
def test_cli_with_one_worker(one_worker):
    directory, stdout = one_worker
    assert "Empirical coverage" in stdout and "truth" in stdout and str(directory) in stdout
    for name in ("coverage.json", "summary.json", "coverage.png", "ranks_truth.png", "tarp_truth.png"):
        assert (directory / name).is_file(), name
    assert len(_records(directory)) == 40


def test_truth_coverage_is_nominal(one_worker):
    directory, _ = one_worker
    summary = yaml.safe_load((directory / "summary.json").read_text())
    cov = summary["models"]["truth"]["coverage"]
    levels = summary["levels"]
    low, high = binomial_band(40, levels, mass=0.99)
    for level, lo, hi in zip(levels, low, high, strict=True):
        assert lo <= cov[f"{level:g}"] <= hi, (level, cov)
    assert min(summary["models"]["truth"]["ks_pvalue"].values()) > 0.01


def test_records_do_not_depend_on_the_number_of_workers(one_worker, cluster, tmp_path):
    campaign = _campaign(TRUTH_CFG, tmp_path)
    calibrate(campaign, scheduler=cluster.scheduler_address, progress=False, plots=False)
    reference, _ = one_worker
    assert _records(campaign.directory) == _records(reference)
    assert (campaign.directory / "coverage.json").read_bytes() == (reference / "coverage.json").read_bytes()


def test_rerun_skips_current_records_and_recomputes_stale_ones(one_worker, cluster, tmp_path):
    reference, _ = one_worker
    campaign = _campaign(TRUTH_CFG, tmp_path)
    shutil.copytree(reference, campaign.directory)
    records = campaign.directory / "records" / "truth"
    (records / "obs_000003.json").unlink()
    (records / "obs_000007.json").write_text('{"key": "trunc')  # a damaged record
    edited = json.loads((records / "obs_000009.json").read_text())
    edited["hpd_rank"] = 0  # edited by hand, its key and digest kept: must not be trusted
    (records / "obs_000009.json").write_text(json.dumps(edited))
    before = {p.name: p.stat().st_mtime_ns for p in records.glob("*.json")}
    summary = calibrate(campaign, scheduler=cluster.scheduler_address, progress=False, plots=False)
    assert (summary["run"]["computed"], summary["run"]["reused"]) == (3, 37)
    assert _records(campaign.directory) == _records(reference)
    after = {p.name: p.stat().st_mtime_ns for p in records.glob("*.json")}
    assert {k for k in before if before[k] != after[k]} == {"obs_000007.json", "obs_000009.json"}
    # other settings: every record is stale (its key names its inputs), none is reused
    changed = _campaign(TRUTH_CFG, tmp_path, n_observations=3, num_samples=150)
    summary = calibrate(changed, scheduler=cluster.scheduler_address, progress=False, plots=False)
    assert (summary["run"]["computed"], summary["run"]["reused"]) == (3, 0)
    assert yaml.safe_load((records / "obs_000000.json").read_text())["num_samples"] == 150


def test_killed_worker_loses_nothing(one_worker, cluster, tmp_path):
    from dask.distributed import Client

    campaign = _campaign(TRUTH_CFG, tmp_path, n_observations=80)  # the first 40 are the reference's
    records = campaign.directory / "records" / "truth"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            calibrate(campaign, scheduler=cluster.scheduler_address, progress=False, plots=False)
        except BaseException as err:  # reported by the test thread
            errors.append(err)

    with Client(cluster.scheduler_address) as client:
        pids = client.run(os.getpid)
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while not list(records.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.005)
        done_at_kill = len(list(records.glob("*.json")))
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        thread.join(timeout=120)
        assert not thread.is_alive() and not errors, errors
        assert set(client.run(os.getpid).values()) != set(pids.values())  # the nanny restarted it
    assert 0 < done_at_kill < 80, "the worker was not killed mid-campaign"
    reference, _ = one_worker
    got = _records(campaign.directory)
    assert sorted(got) == [f"truth/obs_{j:06d}.json" for j in range(80)]  # complete, no duplicates
    assert {k: v for k, v in got.items() if k < "truth/obs_000040"} == _records(reference)  # same bytes
    assert not (records / ".tmp").exists()  # the killed writer's temp is gone


def test_trained_models_are_trained_once(cluster, tmp_path):
    campaign = _campaign(MODELS_CFG, tmp_path)
    summary = calibrate(campaign, scheduler=cluster.scheduler_address, progress=False, plots=False)
    assert set(summary["models"]) == {"truth", "AF"} and summary["run"]["computed"] == 8
    weights = tmp_path / "calibration-models" / "seed_0" / "models" / "AF" / "final" / "weights.pt"
    stamp = weights.stat().st_mtime_ns
    again = calibrate(campaign, scheduler=cluster.scheduler_address, progress=False, plots=False)
    assert again["run"]["computed"] == 0 and weights.stat().st_mtime_ns == stamp
    assert again["models"] == summary["models"]
    # other weights make the AF records stale; the truth's stay current
    retrained = dataclasses.replace(campaign, run=dataclasses.replace(
        campaign.run, models=[dataclasses.replace(campaign.run.models[0], train={"epochs": 1})]))
    third = calibrate(retrained, scheduler=cluster.scheduler_address, progress=False, plots=False)
    assert (third["run"]["computed"], third["run"]["reused"]) == (4, 4)


# ------------------------------------------------------------------ errors
def _write(tmp_path: Path, base: Path, **calibration) -> Path:
    data = yaml.safe_load(base.read_text())
    data["calibration"] = {**data["calibration"], **calibration}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("base", "change", "message"), [
    (TRUTH_CFG, {"n_observations": 0},
     r"calibration\.n_observations: expected an integer >= 1 and <= 1000000000, got 0"),
    (TRUTH_CFG, {"levels": [0.5, 1.2]}, r"calibration\.levels\[1\]: expected a finite number > 0 and < 1"),
    (TRUTH_CFG, {"method": "nuts"}, r"calibration\.method: must be one of \(.*'smc'.*\), got 'nuts'"),
    (TRUTH_CFG, {"n_obs": 3}, r"calibration\.n_obs: unknown field; allowed: \['n_observations', 'n_events'"),
    (TRUTH_CFG, {"models": ["truth", "AF"]}, r"calibration\.models\[1\]: 'AF' is a trained model, which "
                                             r"needs the config's models, n_train and observed"),
    (MODELS_CFG, {"models": ["AFF"]}, r"calibration\.models\[0\]: no model named 'AFF'; expected 'truth' "
                                      r"or a name of models \(nearest first\): \['AF'"),
    (TRUTH_CFG, {"sampler": {"rng": 3}}, r"calibration\.sampler\.rng: set by the campaign"),
    (TRUTH_CFG, {"sampler": {"num_particle": 10}}, r"calibration\.sampler\.num_particle: unknown option; "
                                                   r"allowed: \['num_particles'"),
    (TRUTH_CFG, {"sampler": {"max_steps": 10}}, r"calibration\.sampler\.max_steps: an option of method "
                                                r"'emcee', but method is 'auto'"),
])
def test_bad_calibration_fields(tmp_path, base, change, message):
    with pytest.raises(ConfigError, match=message):
        load_campaign(_write(tmp_path, base, **change))


def test_bad_files_and_simulators(tmp_path):
    data = yaml.safe_load(TRUTH_CFG.read_text())
    cases = [
        ({k: v for k, v in data.items() if k != "calibration"}, r"calibration: missing; add a section"),
        ({**data, "posterior": {"num_samples": 10}}, r"posterior: used with trained models only"),
        ({**data, "simulator": {"name": "sphere"}}, r"simulator: calibration draws θ from the prior, but "
                                                    r"'sphere' has no parameters"),
        ({**data, "simulator": {"name": "higgs4l", "options": {"smearing": 0.01}}},
         r"calibration\.models: 'truth' needs the simulator's exact likelihood, and 'higgs4l' has none"),
    ]
    for content, message in cases:
        path = tmp_path / "cfg.yaml"
        path.write_text(yaml.safe_dump(content))
        with pytest.raises(ConfigError, match=f"{path}: {message}"):
            load_campaign(path)
    with pytest.raises(InputError, match="--workers: sizes the local cluster; with --scheduler"):
        calibrate(load_campaign(TRUTH_CFG), workers=2, scheduler="tcp://127.0.0.1:1")


def test_cli_reports_a_bad_config_on_one_line(tmp_path, capsys):
    code = main(["calibrate", str(_write(tmp_path, TRUTH_CFG, num_samples="many")), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("mfinfer calibrate: error: ")
    assert "calibration.num_samples: expected an integer" in err


# ------------------------------------------------------------------ slow
@pytest.mark.slow
def test_truth_coverage_two_parameters_with_sbi_checks(cluster, tmp_path):
    """200 observations of the 2-parameter conditional sphere, sbi's C2ST checks included."""
    data = yaml.safe_load(TRUTH_CFG.read_text())
    data["simulator"] = {"name": "conditional_sphere"}
    data["calibration"] |= {"n_observations": 200, "num_samples": 500, "c2st": True}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    summary = calibrate(load_campaign(path, {"output_dir": str(tmp_path)}),
                        scheduler=cluster.scheduler_address, progress=False)
    truth = summary["models"]["truth"]
    low, high = binomial_band(200, summary["levels"], mass=0.99)
    for level, lo, hi in zip(summary["levels"], low, high, strict=True):
        assert lo <= truth["coverage"][f"{level:g}"] <= hi, (level, truth["coverage"])
    assert min(truth["ks_pvalue"].values()) > 0.01
    assert all(0.35 < v < 0.65 for v in [*truth["c2st_ranks"].values(), *truth["c2st_dap"].values()])
