"""The flagship's training budgets: the trainer's stop hook, the epoch-by-epoch NLE against sbi's own
training, its checkpoint/resume and wall-clock stop, and the --budget parser."""

import argparse

import numpy as np
import pytest
import torch

from analyses.higgs4l.budgets import Budget, Clock, parse_budget, planned_epochs
from analyses.higgs4l.nle_budget import train_nle_budget
from mfinfer.interop.nle import train_nle
from mfinfer.models import AmbientFlow
from mfinfer.priors import BoxUniform
from mfinfer.training import TrainConfig, train
from simulators.higgs4l import Higgs4l


def _flow() -> AmbientFlow:
    torch.manual_seed(0)
    return AmbientFlow(2, param_dim=1, num_layers=1, hidden_features=16, num_blocks=1)


def _data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, (n, 1))
    return theta, np.hstack([theta + 0.3 * rng.normal(size=(n, 1)), rng.normal(size=(n, 1))])


def test_stop_ends_training_and_resume_continues_as_uninterrupted(tmp_path):
    theta, x = _data()
    config = TrainConfig(epochs=4, batch_size=50, patience=None, progress=False)
    whole = _flow()
    assert len(train(whole, x, theta, config)) == 4
    cut = _flow()
    history = train(cut, x, theta, config, run_dir=tmp_path, resume=True, stop=lambda h: len(h) >= 2)
    assert len(history) == 2  # stopped after its second epoch, the checkpoint mid-segment
    resumed = _flow()
    assert len(train(resumed, x, theta, config, run_dir=tmp_path, resume=True)) == 4
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_clock_keeps_seconds_and_stops_before_an_epoch_past_the_share(tmp_path):
    clock = Clock(tmp_path / "ledger.json", 0, share=1e-6)
    assert clock([{}]) is True  # any epoch takes longer than a microsecond
    again = Clock(tmp_path / "ledger.json", 0, share=None)  # a resumed run starts from the ledger
    assert again.used0 > 0 and again([{}, {}]) is False
    assert again.read()["members"]["0"]["epochs"] == 2


def test_nle_epoch_loop_is_sbi_training_bit_for_bit(tmp_path):
    theta, x = _data()
    prior = BoxUniform((-1.0,), (1.0,))
    ours, info = train_nle_budget(theta, x, prior, seed=3, directory=tmp_path / "a", max_epochs=3)
    theirs, their_info = train_nle(theta, x, prior, seed=3, max_epochs=2)  # sbi runs max + 1
    assert info["epochs"] == their_info["epochs"] == 3 and info["stopped"] == "max_epochs"
    for key, value in theirs.state_dict().items():
        assert torch.equal(value, ours.state_dict()[key]), key
    # interrupted after 2 epochs and resumed from its checkpoint: the same weights
    _, first = train_nle_budget(theta, x, prior, seed=3, directory=tmp_path / "b", max_epochs=2)
    resumed, again = train_nle_budget(theta, x, prior, seed=3, directory=tmp_path / "b", max_epochs=3)
    assert again["epochs"] == 3 and again["seconds"] > first["seconds"]  # the first call's time counts
    for key, value in ours.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_nle_wall_budget_stops_after_the_epoch_that_spends_it(tmp_path):
    theta, x = _data()
    _, info = train_nle_budget(theta, x, BoxUniform((-1.0,), (1.0,)), seed=0, directory=tmp_path,
                               seconds=1e-6)
    assert info["stopped"] == "wall" and info["epochs"] == 1


def test_budget_parser_and_plan():
    assert parse_budget("wall=90").seconds == 90 and parse_budget("converge").key == "converge"
    for bad in ("wall=0", "wall=x", "walls=3", "3600", "wall=inf"):
        with pytest.raises(argparse.ArgumentTypeError, match="wall=SECONDS"):
            parse_budget(bad)
    assert planned_epochs(Budget("wall", 60.0), 2.0, members=3, segments=2) == 10
    assert planned_epochs(Budget("wall", 1.0), 2.0, members=1, segments=2) == 2  # one per phase
    assert planned_epochs(Budget("converge", max_epochs=3), 2.0, members=1, segments=1) == 3


def test_training_scores_of_the_flagship_are_the_simulators_joint_scores():
    sim = Higgs4l()
    theta, x, t = sim.simulate(50, rng=0, score=True)
    np.testing.assert_allclose(sim.score(sim.true_chart(x), theta), t, rtol=1e-6, atol=1e-8)


def test_sbi_single_epoch_resume_calls_are_not_its_training():
    """Why nle_budget.py runs its own epoch loop: in sbi 0.27 a loop of single-epoch
    train(resume_training=True) calls counts each call's last epoch again as a fruitless one, so it
    stops after 20 calls while the validation loss is still improving."""
    import warnings

    from sbi.inference import NLE
    from sbi.utils import BoxUniform as SbiBox

    theta, x = _data(1000)
    torch.manual_seed(0)
    inference = NLE(SbiBox(torch.tensor([-1.0]), torch.tensor([1.0])), show_progress_bars=False)
    inference.append_simulations(torch.as_tensor(theta, dtype=torch.float32),
                                 torch.as_tensor(x, dtype=torch.float32))
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for call in range(40):
            before = inference.epoch if call else 0
            inference.train(max_num_epochs=call + 1, resume_training=call > 0)
            if inference.epoch == before:
                break
            losses.append(inference._val_loss)
    assert inference.epoch == 21  # 2 epochs in the first call, then one per call for 19 calls
    improving = sum(v < min(losses[:i], default=np.inf) for i, v in enumerate(losses))
    assert improving > 5  # far from 20 fruitless epochs in a row


def test_uncapped_nle_loop_is_sbi_training_to_its_own_convergence(tmp_path):
    theta, x = _data()
    prior = BoxUniform((-1.0,), (1.0,))
    ours, info = train_nle_budget(theta, x, prior, seed=1, directory=tmp_path)
    theirs, their_info = train_nle(theta, x, prior, seed=1)
    assert info["stopped"] == "converged" and info["epochs"] == their_info["epochs"] > 20
    for key, value in theirs.state_dict().items():
        assert torch.equal(value, ours.state_dict()[key]), key
