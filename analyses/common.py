"""What the analyses' command lines and notebooks share: refusing a ``--table-only`` that would
write less than the committed results, and choosing between the full run and the quick one.

``--table-only`` rebuilds ``results.md`` (and Lorenz's ``results.json``) from run directories
under ``runs/``, which a fresh clone does not have. It never writes then: it names the missing
runs and the commands that make them (the full run and its quick alternative) on one line, and
the command exits with status 2.

A notebook shows the full run when it has a finished seed, else the quick run (``--quick``: the
same analysis reduced to a few minutes, in its own run directory), which it makes first if needed;
its first output says which (:func:`choose_run`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["QUICK_NOTE", "MissingRuns", "choose_run", "finished_seeds", "lost_parts", "missing_seeds",
           "refuse"]

#: Said by every quick run's results and by the notebooks when they use one.
QUICK_NOTE = ("a quick run (small n, few epochs, few observations, a few minutes on 2 cores): its "
              "numbers show that the analysis works, not its results")


class MissingRuns(Exception):
    """The run directories that a table needs are missing: ``missing`` (their files), ``command``
    (what makes them) and ``quick`` (the quick run's command, when it is an alternative)."""

    def __init__(self, analysis: str, missing: Iterable[str], command: str,
                 quick: str | None = None) -> None:
        self.analysis, self.missing, self.command, self.quick = analysis, list(missing), command, quick
        shown = ", ".join(self.missing[:4]) + (f" and {len(self.missing) - 4} more"
                                               if len(self.missing) > 4 else "")
        alternative = (f", or see the analysis work in a few minutes with `{quick}` (its own run "
                       "directory; the committed results stay as they are)") if quick else ""
        super().__init__(f"{analysis}: --table-only wrote nothing: missing {shown}; make them with "
                         f"`{command}`{alternative}")


def refuse(err: MissingRuns) -> int:
    """Print ``err`` as one line on stderr; returns the exit status 2."""
    print(f"error: {err}", file=sys.stderr)
    return 2


def missing_seeds(run_root: Path, seeds: Iterable[int], metrics_file: str = "metrics.json"
                  ) -> list[str]:
    """``<run_root>/seed_<s>/<metrics_file>`` of the configured seeds that have not finished."""
    return [str(run_root / f"seed_{s}" / metrics_file) for s in seeds
            if not (run_root / f"seed_{s}" / metrics_file).is_file()]


def lost_parts(old: Mapping[str, Any], new: Mapping[str, Any], depth: int = 3,
               prefix: str = "") -> list[str]:
    """The keys (``a/b/c``, down to ``depth`` levels of mappings) that ``old`` has and ``new``
    lacks: what rewriting ``old`` with ``new`` would lose.

    >>> lost_parts({"variants": {"points": {"calibration": 1}, "snippets": {}}},
    ...            {"variants": {"points": {}}})
    ['variants/points/calibration', 'variants/snippets']
    """
    out: list[str] = []
    for key, value in old.items():
        where = f"{prefix}{key}"
        if key not in new:
            out.append(where)
        elif depth > 1 and isinstance(value, Mapping) and isinstance(new[key], Mapping):
            out += lost_parts(value, new[key], depth - 1, where + "/")
    return out


def finished_seeds(run_root: Path, metrics_file: str = "metrics.json") -> list[int]:
    """The seeds under ``run_root`` with a ``seed_<s>/<metrics_file>``, in order."""
    return sorted(int(p.parent.name.removeprefix("seed_"))
                  for p in Path(run_root).glob(f"seed_*/{metrics_file}")
                  if p.parent.name.removeprefix("seed_").isdigit())


def choose_run(full: Path, quick: Path, full_command: str, quick_command: str
               ) -> tuple[Path, bool, str]:
    """The run directory a notebook shows: the full run when a seed of it finished, else the quick
    run.

    Arguments:
        full: the full run's ``<output_dir>/<name>``; ``quick``: the quick run's.
        full_command: the command that makes the full run (named in the message).
        quick_command: the command that makes the quick run.

    Returns:
        ``(run_root, is_quick, message)``: the message says which run is shown, and for the quick
        one that it is quick, how to make the full one, and whether the quick run still has to be
        made (then the caller runs ``quick_command``'s ``main``).
    """
    seeds = finished_seeds(full)
    if seeds:
        return full, False, f"Showing the full run {full} (finished seeds {seeds})."
    made = finished_seeds(quick)
    todo = "" if made else (f" It is not there yet, so it runs now (`{quick_command}`, a few "
                            "minutes).")
    return quick, True, (f"No full run in {full} (it is made by `{full_command}`): showing the "
                         f"QUICK run {quick} instead, {QUICK_NOTE}.{todo}")
