"""The lines the ``mfinfer`` commands print when they finish: one per trained model, and one
summary line that every command ends with (``mfinfer <command>: <what was done> (<wall s>)``)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["final_line", "train_line"]


def final_line(command: str, text: str, seconds: float) -> str:
    """The one line a command ends with.

    Example:
        >>> final_line("evaluate", "metrics of 1 seed in runs/demo/seed_*/metrics.json", 2.04)
        'mfinfer evaluate: metrics of 1 seed in runs/demo/seed_*/metrics.json (2.0 s)'
    """
    return f"mfinfer {command}: {text} ({seconds:.1f} s)"


def _loss(value: Any) -> str:
    if value is None:
        return "not recorded"
    return "none (no validation split)" if math.isnan(value) else f"{value:.4g}"


def train_line(record: dict[str, Any], seed: int) -> str:
    """One model's line: epochs, best validation loss, wall time and where the weights are, from a
    record of :meth:`mfinfer.pipeline.Run.train`.

    Example:
        >>> train_line({"model": "AF", "trained": True, "epochs": 10, "best_val": 1.23456,
        ...             "seconds": 12.34, "weights": "AF/final/weights.pt"}, 0)
        'AF (seed 0): trained 10 epochs in 12.3 s, best validation loss 1.235; weights: AF/final/weights.pt'
    """
    name = f"{record['model']} (seed {seed})"
    n = record["epochs"]
    epochs = "? epochs" if n is None else f"{n} epoch{'s' * (n != 1)}"
    loss = f"best validation loss {_loss(record['best_val'])}"
    if record["trained"]:
        what = f"trained {epochs} in {record['seconds']:.1f} s, {loss}"
    else:
        what = f"current, not retrained (--force retrains it): {epochs}, {loss}"
    return f"{name}: {what}; weights: {record['weights']}"
