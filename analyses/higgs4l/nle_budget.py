"""sbi's NLE trained under a budget, epoch by epoch, checkpointed after every epoch and resumable.

sbi 0.27 supports ``train(max_num_epochs=..., resume_training=True)``, but a loop of single-epoch
calls is not sbi's training: each call scores its last epoch in its ``epoch > max_num_epochs``
branch (reverting the network to the best weights when that epoch did not improve) and the next
call's early-stopping check scores the same epoch again as a fruitless one, so single-epoch calls
stop after 20 calls whatever the validation loss does (tests/test_ladder_budgets.py shows it). The
loop here therefore runs sbi's own epoch: its data loaders and train/validation split
(``get_dataloaders``), its network (``_initialize_neural_network``), Adam at its default learning
rate, its ``_train_epoch`` and ``_validate_epoch`` and its stopping rule (20 epochs without
improvement, the best weights kept).
Uncapped and without a wall budget it is ``NLE.train()`` with sbi's defaults, and capped at N epochs
it gives the weights of ``train(max_num_epochs=N - 1)`` bit for bit (tests/test_ladder_budgets.py).

After each epoch the whole state (network, Adam, best weights, counters, the split and torch's
random state) is written to ``checkpoint.pt`` (``torch.load(weights_only=True)``), so an
interrupted run resumes where it stopped and trains on as if uninterrupted; the result is saved
with :func:`mfinfer.interop.nle.save_nle`.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfinfer.caching import array_digest
from mfinfer.files import atomic_write
from mfinfer.interop.nle import DENSITY_ESTIMATOR, sbi_prior

#: sbi 0.27's NLE.train defaults
BATCH, LR, VALIDATION, PATIENCE, CLIP = 200, 5e-4, 0.1, 20, 5.0


def train_nle_budget(theta: np.ndarray, x: np.ndarray, prior: Any, *, seed: int, directory: str | Path,
                     seconds: float | None = None, max_epochs: int | None = None) -> tuple[Any, dict]:
    """Train sbi's NLE with its defaults on θ (n, p), x (n, D) until it converges, ``max_epochs``
    epochs have run, or (``seconds``) the next epoch would end past that much training time.

    Args:
        seed: torch's seed (the split, the initialisation and the batch order).
        directory: where ``checkpoint.pt`` is kept; an existing one is resumed.
        seconds: the wall-clock budget of the training (the time of earlier, interrupted calls
            counts); None: none.
        max_epochs: an epoch cap; None: none.

    Returns:
        The density estimator and a record as :func:`mfinfer.interop.nle.train_nle` gives
        (seconds, epochs, best validation loss, data digest) plus why it stopped.
    """
    from sbi.inference import NLE

    directory = Path(directory)
    ckpt = directory / "checkpoint.pt"
    torch.manual_seed(seed)
    inference = NLE(sbi_prior(prior), density_estimator=DENSITY_ESTIMATOR, show_progress_bars=False)
    saved = torch.load(ckpt, weights_only=True) if ckpt.is_file() else None
    with warnings.catch_warnings():  # e.g. sbi's note on constant columns (a mass shell)
        warnings.simplefilter("ignore")
        inference.append_simulations(torch.as_tensor(theta, dtype=torch.float32),
                                     torch.as_tensor(x, dtype=torch.float32))
        if saved is not None:
            inference.train_indices, inference.val_indices = saved["train_indices"], saved["val_indices"]
        train_loader, val_loader = inference.get_dataloaders(0, BATCH, VALIDATION, saved is not None)
        inference._initialize_neural_network(retrain_from_scratch=False, start_idx=0)
    net = inference._neural_net
    inference.optimizer = torch.optim.Adam(list(net.parameters()), lr=LR)
    state: dict[str, Any] = {"epoch": 0, "best_val": math.inf, "bad": 0, "seconds": 0.0, "last": 0.0,
                             "best": copy.deepcopy(net.state_dict())}
    if saved is not None:
        net.load_state_dict(saved["net"])
        inference.optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        state = {k: saved[k] for k in state}
    t0, used0 = time.perf_counter(), state["seconds"]
    stopped = "converged"
    while state["bad"] < PATIENCE:
        if max_epochs is not None and state["epoch"] >= max_epochs:
            stopped = "max_epochs"
            break
        if seconds is not None and state["seconds"] + state["last"] > seconds:
            stopped = "wall"
            break
        start = time.perf_counter()
        net.train()
        inference._train_epoch(train_loader, CLIP, None)
        net.eval()
        val = inference._validate_epoch(val_loader, None)
        if val < state["best_val"]:
            state.update(best_val=val, bad=0, best=copy.deepcopy(net.state_dict()))
        else:
            state["bad"] += 1
        state.update(epoch=state["epoch"] + 1, last=time.perf_counter() - start,
                     seconds=used0 + time.perf_counter() - t0)
        record = {**state, "net": net.state_dict(), "optimizer": inference.optimizer.state_dict(),
                  "rng": torch.get_rng_state(), "train_indices": inference.train_indices,
                  "val_indices": inference.val_indices}
        atomic_write(ckpt, lambda f, r=record: torch.save(r, f))
    net.load_state_dict(state["best"])
    info = {"density_estimator": DENSITY_ESTIMATOR, "seed": seed, "seconds": state["seconds"],
            "epochs": state["epoch"], "best_validation_loss": state["best_val"], "stopped": stopped,
            "data_sha256": array_digest(x, theta), "shape": [len(x), x.shape[1], theta.shape[1]]}
    return net.eval(), info
