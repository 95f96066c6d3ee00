"""Training: phases and schedules (sequential / alternating M/D, S, NLL, PIE, FOM), the loop and
checkpoints, the score term (``TrainConfig.score_weight``) and ensembles (``train_ensemble``)."""

from mfinfer.errors import NonFiniteLossError
from mfinfer.training.ensemble import train_ensemble
from mfinfer.training.phases import PHASES, SCHEDULES, Phase, segments
from mfinfer.training.trainer import TrainConfig, train

__all__ = ["PHASES", "SCHEDULES", "NonFiniteLossError", "Phase", "TrainConfig", "segments", "train",
           "train_ensemble"]
