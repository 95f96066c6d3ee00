"""Training an ensemble: K members built alike, each with its own seeds (see
:mod:`mfinfer.models.ensemble` for the combination)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfinfer._validation import check_count
from mfinfer.models import Ensemble, Flow
from mfinfer.training.trainer import TrainConfig, train

__all__ = ["member_seeds", "train_ensemble"]

#: TrainConfig.seed of member k is ``seed + SEED_STRIDE * k`` (its own split and batch order).
SEED_STRIDE = 10_007


def member_seeds(init_seed: int, train_seed: int, k: int) -> tuple[int, int]:
    """(torch initialisation seed, ``TrainConfig.seed``) of member k; member 0 has the given ones,
    so an ensemble's first member is the model that ``ensemble: 1`` trains."""
    if k == 0:
        return init_seed, train_seed
    init = int(np.random.SeedSequence([init_seed, k]).generate_state(1, np.uint64)[0] >> 1)
    return init, train_seed + SEED_STRIDE * k


def train_ensemble(
    build: Callable[[], Flow],
    size: int,
    x: Any,
    theta: Any = None,
    config: TrainConfig | None = None,
    *,
    init_seed: int = 0,
    run_dir: str | Path | None = None,
    resume: bool = False,
    **data: Any,
) -> tuple[Flow, list[dict]]:
    """Build and train ``size`` members on the same data; returns (model, history).

    Args:
        build: makes one untrained member (called after seeding torch with the member's seed).
        size: K ≥ 1. K = 1 returns the single trained model itself (no ``Ensemble`` wrapper).
        x, theta: training data, as for :func:`~mfinfer.training.train`.
        config: the members' settings; member k trains with ``TrainConfig.seed`` shifted (see
            :func:`member_seeds`).
        init_seed: torch seed of member 0's initialisation.
        run_dir: checkpoints: ``run_dir`` itself for K = 1, ``run_dir/member_<k>`` otherwise.
        resume: continue each member from its checkpoint.
        **data: ``weights``, ``score``, ``drop_invalid`` for ``train``.

    Returns:
        The model (an :class:`~mfinfer.models.Ensemble` for K > 1) and the members' histories
        concatenated, each record with its ``member`` index.
    """
    size = check_count(size, "ensemble", minimum=1)
    config = config or TrainConfig()
    members, history = [], []
    for k in range(size):
        init, seed = member_seeds(init_seed, config.seed, k)
        torch.manual_seed(init)
        model = build()
        directory = None if run_dir is None else Path(run_dir) if size == 1 else Path(run_dir) / f"member_{k}"
        records = train(model, x, theta, dataclasses.replace(config, seed=seed), run_dir=directory,
                        resume=resume, **data)
        history += [{**r, "member": k} for r in records]
        members.append(model)
    return (members[0] if size == 1 else Ensemble(members)), history
