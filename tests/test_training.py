"""Training: it learns the circle, resumes exactly after SIGKILL, and refuses bad data and NaN losses."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mfinfer import get_simulator
from mfinfer.models import AmbientFlow, ManifoldFlow, load_model
from mfinfer.training import NonFiniteLossError, TrainConfig, train
from mfinfer.training.phases import SCHEDULES, segments

SMALL = dict(hidden_features=16, num_blocks=1)
JOB = Path(__file__).with_name("resume_job.py")


def test_mflow_learns_the_circle():
    sim = get_simulator("circle")
    _, x = sim.simulate(4000, rng=0)
    model = ManifoldFlow(2, 1, outer_layers=3, inner_layers=2, hidden_features=32)
    train(model, x, config=TrainConfig(epochs=30, lr=3e-3, progress=False))
    xt = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        reconstruction = (model.project(xt) - xt).norm(dim=1).mean().item()
        samples = model.sample(2000).double().numpy()
    assert reconstruction < 0.05
    assert sim.distance_to_manifold(samples).mean() < 0.05


@pytest.mark.parametrize("schedule", ["alternating", "simultaneous", "pie", "nll"])
def test_every_schedule_lowers_its_loss(schedule):
    _, x = get_simulator("circle").simulate(600, rng=0)
    model = ManifoldFlow(2, 1, outer_layers=2, inner_layers=1, pie_epsilon=0.1, **SMALL)
    if schedule == "nll":
        model = AmbientFlow(2, num_layers=2, **SMALL)
    hist = train(model, x, config=TrainConfig(schedule=schedule, epochs=4, progress=False, patience=None))
    assert len(hist) == 4
    assert hist[-1]["val"] < hist[0]["val"]


def test_sequential_schedule_splits_epochs():
    assert segments("sequential", 10) == [(("M",), 5), (("D",), 5)]
    assert all(sum(n for _, n in segments(s, 4)) == 4 for s in SCHEDULES)  # every schedule has phases
    with pytest.raises(ValueError, match="schedule: must be one of"):  # the one check: TrainConfig's
        TrainConfig(schedule="bogus")


def _job(run_dir, *flags):
    return subprocess.Popen([sys.executable, str(JOB), str(run_dir), *flags])


def test_resume_after_sigkill_gives_identical_weights(tmp_path):
    full = _job(tmp_path / "full")
    killed = _job(tmp_path / "killed")
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until at least 3 epochs are checkpointed, then SIGKILL
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["epoch"] >= 3:
            break
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    epoch_at_kill = torch.load(ckpt, weights_only=True)["epoch"]
    assert 3 <= epoch_at_kill < 12, "the job was not killed mid-training"
    assert not (tmp_path / "killed" / "final").exists()
    assert _job(tmp_path / "killed", "--resume").wait() == 0
    assert full.wait() == 0
    a = load_model(tmp_path / "full" / "final").state_dict()
    b = load_model(tmp_path / "killed" / "final").state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_rows_raise_with_count_or_drop_with_warning():
    _, x = get_simulator("circle").simulate(200, rng=0)
    x[[3, 7, 11]] = np.nan
    x[20, 1] = np.inf
    model = ManifoldFlow(2, 1, outer_layers=1, inner_layers=1, **SMALL)
    cfg = TrainConfig(epochs=1, progress=False)
    with pytest.raises(ValueError, match="4 of 200 rows contain NaN or inf"):
        train(model, x, config=cfg)
    with pytest.warns(UserWarning, match="dropping 4 of 200 rows"):
        train(model, x, config=cfg, drop_invalid=True)


def test_shape_errors():
    model = ManifoldFlow(3, 2, param_dim=2, outer_layers=1, inner_layers=1, **SMALL)
    cfg = TrainConfig(epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"x: expected shape \(n, 3\), got \(10, 4\)"):
        train(model, np.zeros((10, 4)), np.zeros((10, 2)), config=cfg)
    with pytest.raises(ValueError, match=r"theta: expected shape \(10, 2\) to match x, got \(10, 1\)"):
        train(model, np.zeros((10, 3)), np.zeros((10, 1)), config=cfg)


def test_nan_loss_stops_with_location(tmp_path):
    _, x = get_simulator("circle").simulate(200, rng=0)
    model = AmbientFlow(2, num_layers=1, **SMALL)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"phase nll, epoch 0, batch 0"):
        train(model, x, config=TrainConfig(epochs=2, progress=False), run_dir=tmp_path)


def test_standardisation_is_fitted_on_a_fresh_resumable_run(tmp_path):
    """`mfinfer run` always trains with resume=True: a fresh run must still fit the standardisation."""
    _, x = get_simulator("circle").simulate(300, rng=0)
    x = 100.0 * x + 50.0  # GeV-like scale
    model = ManifoldFlow(2, 1, outer_layers=1, inner_layers=1, **SMALL)
    train(model, x, config=TrainConfig(epochs=1, progress=False), run_dir=tmp_path, resume=True)
    mean, std = torch.as_tensor(x.mean(0)), torch.as_tensor(x.std(0))
    assert torch.allclose(model.standardize.shift.double(), mean, rtol=0.1)  # fitted on the 75 % train split
    assert torch.allclose(model.standardize.scale.double(), std, rtol=0.1)
    plain = ManifoldFlow(2, 1, outer_layers=1, inner_layers=1, **SMALL)
    with pytest.raises(ValueError, match="tail bound"):  # GeV-scale data without standardisation
        train(plain, x, config=TrainConfig(epochs=1, progress=False, standardize=False))
    train(plain, (x - 50.0) / 100.0, config=TrainConfig(epochs=1, progress=False, standardize=False))
    assert torch.equal(plain.standardize.scale, torch.ones(2))


def test_resume_starts_from_the_saved_epoch_and_ends_bit_identical(tmp_path, monkeypatch):
    """A crash in epoch 3 of 4; the resumed run must run only epochs 3-4 (it cannot pass by
    silently retraining from scratch, which would also end bit-identical) and match an
    uninterrupted run exactly."""
    from mfinfer.training.phases import PHASES, Phase

    _, x = get_simulator("circle").simulate(400, rng=2)
    cfg = TrainConfig(epochs=4, batch_size=100, patience=None, validation_fraction=0.25, progress=False)
    n_batches = 3  # 300 training rows / 100

    def fresh() -> AmbientFlow:
        torch.manual_seed(5)
        return AmbientFlow(2, num_layers=1, **SMALL).double()

    reference = fresh()
    train(reference, x, config=cfg)

    calls = {"n": 0}
    nll = PHASES["nll"]

    def counting(crash_at: int | None):
        def density(m, xb, tb):
            calls["n"] += 1
            if crash_at is not None and calls["n"] > crash_at:
                raise KeyboardInterrupt("simulated crash")
            return nll.density(m, xb, tb)
        return Phase("nll", "all", density)

    # each epoch: n_batches training calls + 1 validation call; crash in the first batch of epoch 3
    monkeypatch.setitem(PHASES, "nll", counting(crash_at=2 * (n_batches + 1)))
    with pytest.raises(KeyboardInterrupt):
        train(fresh(), x, config=cfg, run_dir=tmp_path, resume=True)

    calls["n"] = 0
    monkeypatch.setitem(PHASES, "nll", counting(crash_at=None))
    resumed = fresh()
    history = train(resumed, x, config=cfg, run_dir=tmp_path, resume=True)
    assert calls["n"] == 2 * (n_batches + 1), "the resumed run did not start from the saved epoch"
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
