"""A small training job for the resume test: ``python resume_job.py RUN_DIR [--resume]``.

Run as a subprocess so the test can SIGKILL it mid-training.
"""

import sys

import torch

from mfinfer import get_simulator
from mfinfer.models import ManifoldFlow, save_model
from mfinfer.training import TrainConfig, train


def main(run_dir: str, resume: bool) -> None:
    torch.set_num_threads(1)
    _, x = get_simulator("circle").simulate(1500, rng=1)
    torch.manual_seed(0)
    model = ManifoldFlow(2, 1, outer_layers=2, inner_layers=2, hidden_features=16, num_blocks=1).double()
    cfg = TrainConfig(schedule="alternating", epochs=12, batch_size=50, seed=3, patience=None, progress=False)
    train(model, x, config=cfg, run_dir=run_dir, resume=resume)
    save_model(model, f"{run_dir}/final")


if __name__ == "__main__":  # not on import (pytest --doctest-modules imports every module)
    main(sys.argv[1], "--resume" in sys.argv)
