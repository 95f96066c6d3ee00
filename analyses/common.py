"""What the analyses' command lines share: refusing a ``--table-only`` that would write less than
the committed results, and the quick runs' settings.

``--table-only`` rebuilds ``results.md`` (and Lorenz's ``results.json``) from run directories
under ``runs/``, which a fresh clone does not have. It never writes then: it names the missing
runs and the commands that make them (the full run and its quick alternative) on one line, and
the command exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["QUICK_NOTE", "MissingRuns", "lost_parts", "missing_seeds", "refuse"]

#: Said by every quick run's results and by the notebooks when they use one.
QUICK_NOTE = ("a quick run (small n, few epochs, few observations, a few minutes on 2 cores): its "
              "numbers show that the analysis works, not its results")


class MissingRuns(Exception):
    """The run directories that a table needs are missing (``missing``: what, ``commands``: how to
    make them)."""

    def __init__(self, analysis: str, missing: Iterable[str], commands: Iterable[str]) -> None:
        self.analysis, self.missing, self.commands = analysis, list(missing), list(commands)
        shown = ", ".join(self.missing[:4]) + (f" and {len(self.missing) - 4} more"
                                               if len(self.missing) > 4 else "")
        super().__init__(f"{analysis}: --table-only wrote nothing: missing {shown}; make them with "
                         + " or ".join(f"`{c}`" for c in self.commands))


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
