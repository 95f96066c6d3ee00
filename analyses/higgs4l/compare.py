"""Head-to-head counts of the H→4ℓ flagship: in how many (seed, θ*) pairs one estimator's posterior
is closer to the exact one (lower C2ST) than another's, each under its own budget.

Reads the posteriors that ``ladder.py`` kept (``--out/<budget folder>/seed_S.json``) and counts
only the pairs where both were computed, so a budget still in progress is compared on the seeds
it has. An estimator is named ``NAME@BUDGET`` (``BUDGET``: ``wall=SECONDS`` or ``converge``)::

    .venv/bin/python -m analyses.higgs4l.compare "M-flow + score@wall=300" "NLE@converge" \\
        "M-flow + score@converge" "M-flow + score@wall=300"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from analyses.higgs4l.budgets import Budget, parse_budget
from analyses.higgs4l.estimators import ESTIMATORS
from mfinfer.errors import InputError
from mfinfer.files import read_json


def parse_spec(text: str) -> tuple[str, Budget]:
    """``"NAME@BUDGET"`` -> (estimator name, budget) (an argparse type)."""
    name, _, budget = text.rpartition("@")
    if name not in ESTIMATORS:
        raise argparse.ArgumentTypeError(f"expected NAME@BUDGET with NAME one of {list(ESTIMATORS)}, "
                                         f"got {text!r}")
    return name, parse_budget(budget)


def c2st_by_pair(out: Path, name: str, budget: Budget) -> dict[tuple[int, int], float]:
    """``{(seed, θ* index): C2ST}`` of estimator ``name`` under ``budget``, from the posteriors kept
    in ``out``."""
    paths = sorted((out / budget.folder).glob("seed_*.json"))
    if not paths:
        raise InputError(f"{out / budget.folder}: no posteriors under budget {budget.key}; run "
                         f"`python -m analyses.higgs4l.ladder --budget {budget.key} --out {out}` first")
    values = {}
    for path in paths:
        record = read_json(path)
        for k, point in enumerate(record["points"]):
            if name in point["posteriors"]:
                values[record["seed"], k] = point["posteriors"][name]["c2st"]
    return values


def head_to_head(out: Path, a: tuple[str, Budget], b: tuple[str, Budget]) -> tuple[int, int]:
    """(pairs where estimator ``a``'s C2ST is below ``b``'s, pairs where both were computed)."""
    ca, cb = c2st_by_pair(out, *a), c2st_by_pair(out, *b)
    both = sorted(set(ca) & set(cb))
    return sum(ca[p] < cb[p] for p in both), len(both)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="+", type=parse_spec, metavar="NAME@BUDGET",
                    help="an even number of estimators: each A B counts the pairs where A beats B")
    ap.add_argument("--out", default="analyses/higgs4l/flagship")
    args = ap.parse_args(argv)
    if len(args.pairs) % 2:
        ap.error(f"give estimators two by two (A B ...), got {len(args.pairs)}")
    for a, b in zip(args.pairs[::2], args.pairs[1::2], strict=True):
        try:
            wins, n = head_to_head(Path(args.out), a, b)
        except InputError as err:
            ap.error(str(err))
        print(f"{a[0]} ({a[1].key}) closer than {b[0]} ({b[1].key}): {wins} of {n} (seed, θ*) pairs")


if __name__ == "__main__":  # python -m analyses.higgs4l.compare (from the repository root)
    main()
