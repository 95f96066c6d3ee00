"""Training budgets of the H→4ℓ flagship comparison (``ladder.py --budget``).

- ``wall=SECONDS``: every estimator trains for the same wall-clock time on the same machine. A flow's
  epochs are planned first from a pilot (two epochs on at most ``PILOT_ROWS`` training rows, scaled
  to the full sample; for the M-flow one manifold and one density epoch), so that its learning-rate
  schedule and its M/D phases fit the budget; the training then stops at the first epoch end after
  which the next epoch (timed as the last one) would end past the budget (:class:`Clock`, through
  ``train(..., stop=...)``). An ensemble of K members gives each member SECONDS / K. The pilot's
  time is recorded but not counted. sbi's NLE runs epoch by epoch under the same rule
  (:mod:`analyses.higgs4l.nle_budget`).
- ``converge``: each estimator to its own early stopping: the flows with the config's patience and
  at most ``CONVERGE_EPOCHS`` epochs (the M-flow's sequential schedule splits them between its M and
  D phases, each stopping by itself), sbi's NLE with its defaults, uncapped.

Both checkpoint every epoch and resume; the seconds spent before an interruption are kept in
``ledger.json`` (one epoch's time can be lost if the process dies between the checkpoint and the
ledger write).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

from mfinfer.files import atomic_write_json, read_json

#: flows' epoch cap under ``converge`` (sbi's NLE has none)
CONVERGE_EPOCHS = 200
#: rows of the pilot that times a flow's epoch under ``wall=SECONDS``
PILOT_ROWS = 20_000
PILOT_EPOCHS = 2
#: rows of the untimed warm-up before the pilot
WARM_UP_ROWS = 2_000


@dataclass(frozen=True)
class Budget:
    """A training budget: ``kind`` "wall" (``seconds`` each) or "converge" (``seconds`` None);
    ``max_epochs`` caps a converge budget's epochs (a smoke-test knob; the flagship has none)."""

    kind: str
    seconds: float | None = None
    max_epochs: int | None = None

    @property
    def key(self) -> str:
        """``wall=SECONDS`` or ``converge``: the budget's name in files, JSON and tables."""
        return "converge" if self.seconds is None else f"wall={self.seconds:g}"

    @property
    def folder(self) -> str:
        """``wall-SECONDSs`` or ``converge``: the budget's folder ('=' is no character of a path name)."""
        return "converge" if self.seconds is None else f"wall-{self.seconds:g}s"

    def describe(self) -> str:
        if self.seconds is None and self.max_epochs is not None:
            return f"each estimator to its own early stopping, capped at {self.max_epochs} epochs"
        if self.seconds is None:
            return (f"each estimator to its own early stopping (flows: the config's patience, ≤ "
                    f"{CONVERGE_EPOCHS} epochs; sbi's NLE: its defaults, uncapped)")
        return (f"the same wall-clock training time, {self.seconds:g} s per estimator (an ensemble's "
                f"K members {self.seconds:g}/K s each)")


def parse_budget(text: str) -> Budget:
    """``"wall=SECONDS"`` or ``"converge"`` (an argparse type).

    Example:
        >>> parse_budget("wall=3600").key, parse_budget("converge").seconds
        ('wall=3600', None)
    """
    if text == "converge":
        return Budget("converge")
    name, _, value = text.partition("=")
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if name != "wall" or not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected 'wall=SECONDS' (SECONDS > 0) or "
                                         f"'converge', got {text!r}")
    return Budget("wall", seconds)


def planned_epochs(budget: Budget, seconds_per_epoch: float, members: int, segments: int) -> int:
    """The epochs a flow is given: ``CONVERGE_EPOCHS`` under ``converge``; under a wall budget as
    many as fit its share (SECONDS / members) at ``seconds_per_epoch``, at least ``segments`` (one
    per phase of its schedule).

    Example:
        >>> planned_epochs(Budget("wall", 100.0), 4.0, members=1, segments=2)
        25
    """
    if budget.seconds is None:
        return min(CONVERGE_EPOCHS, budget.max_epochs or CONVERGE_EPOCHS)
    return max(segments, int(budget.seconds / members / max(seconds_per_epoch, 1e-9)))


class Clock:
    """``train(..., stop=Clock(...))``: records member ``k``'s training seconds and epochs in
    ``ledger.json`` after every epoch (so they survive an interruption) and, with a share of a
    wall budget, says stop when the next epoch, timed as the last, would end past the share."""

    def __init__(self, ledger: Path, member: int, share: float | None) -> None:
        self.ledger, self.member, self.share = ledger, str(member), share
        self.used0 = float(self.entry().get("seconds", 0.0))
        self.t0 = self.last = time.perf_counter()

    def read(self) -> dict:
        return read_json(self.ledger) if self.ledger.is_file() else {}

    def entry(self) -> dict:
        return self.read().get("members", {}).get(self.member, {})

    def __call__(self, history: list[dict]) -> bool:
        now = time.perf_counter()
        epoch_seconds, self.last = now - self.last, now
        used = self.used0 + now - self.t0
        ledger = self.read()
        ledger.setdefault("members", {})[self.member] = {"seconds": used, "epochs": len(history)}
        atomic_write_json(ledger, self.ledger)
        return self.share is not None and used + epoch_seconds > self.share
