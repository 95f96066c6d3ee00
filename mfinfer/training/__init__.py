"""Training: schedules (sequential / alternating M/D, S, NLL), the loop and checkpoints."""

from mfinfer.training.schedules import SCHEDULES, default_schedule, segments
from mfinfer.training.trainer import NonFiniteLossError, TrainConfig, train

__all__ = ["TrainConfig", "train", "NonFiniteLossError", "SCHEDULES", "default_schedule", "segments"]
