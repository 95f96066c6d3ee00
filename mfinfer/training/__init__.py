"""Training: phases and schedules (sequential / alternating M/D, S, NLL, PIE, FOM), the loop and
checkpoints."""

from mfinfer.errors import NonFiniteLossError
from mfinfer.training.phases import PHASES, SCHEDULES, Phase, segments
from mfinfer.training.trainer import TrainConfig, train

__all__ = ["PHASES", "SCHEDULES", "NonFiniteLossError", "Phase", "TrainConfig", "segments", "train"]
