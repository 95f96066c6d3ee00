"""Command line of the analytic H -> 4l generator: ``python -m simulators.higgs4l``.

``--compute-normalisation`` computes and caches ``S_ij`` (:mod:`simulators.higgs4l.normalisation`);
``--describe`` prints how much each coupling changes the normalised distributions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import simulators.higgs4l as _package
from mfinfer.files import atomic_write_json
from simulators.higgs4l import kinematics as kin
from simulators.higgs4l.amplitude import morphing_weights
from simulators.higgs4l.normalisation import _DATA_DIR, _tag, compute_normalisation
from simulators.higgs4l.proposal import _propose


def _describe(n: int = 400_000, seed: int = 0) -> None:
    """Print how much each coupling changes the normalised m_Z2, cos theta1 and Phi
    distributions."""
    rng = np.random.default_rng(seed)
    z, factor = _propose(n, rng)
    V = morphing_weights(*kin.momenta_from_chart(*z[:, :8].T)) * factor[:, None, None]
    cols = {
        "m_Z2": (1, np.linspace(0, 70, 8)),
        "cos_theta1": (4, np.linspace(-1, 1, 9)),
        "Phi": (6, np.linspace(-np.pi, np.pi, 9)),
        "cos_theta2": (5, np.linspace(-1, 1, 9)),
    }

    def hists(theta):
        c = np.array([1.0, *theta])
        w = np.einsum("i,nij,j->n", c, V, c)
        return {
            k: np.histogram(z[:, i], bins, weights=w)[0] / w.sum() for k, (i, bins) in cols.items()
        }, w.mean()

    ref, s0 = hists((0.0, 0.0))
    for theta in [(1, 0), (-1, 0), (2, 0), (-2, 0), (0, 1), (0, 2), (0, 3), (1, 1), (-2, 3)]:
        h, s = hists(theta)
        dev = {k: float(np.max(np.abs(h[k] / ref[k] - 1))) for k in cols}
        print(
            f"a2, a3 = {theta}: sigma/sigma_SM = {s / s0:.3f}; max |bin ratio - 1|: "
            + ", ".join(f"{k} {v:.2f}" for k, v in dev.items())
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m simulators.higgs4l", description=_package.__doc__.split("\n")[0]
    )
    ap.add_argument("--compute-normalisation", action="store_true", help="compute and cache S_ij")
    ap.add_argument(
        "--describe", action="store_true", help="print the size of the coupling effects"
    )
    ap.add_argument("--cuts", choices=["off", "on", "both"], default="both")
    ap.add_argument("--n-events", type=float, default=2e7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", type=Path, default=_DATA_DIR, help="output folder (default: package data)"
    )
    args = ap.parse_args(argv)
    if args.describe:
        _describe()
    if args.compute_normalisation:
        for cuts in {"off": [False], "on": [True], "both": [False, True]}[args.cuts]:
            data = compute_normalisation(
                cuts, n_events=int(args.n_events), seed=args.seed + int(cuts), progress=False
            )
            path = args.out / f"higgs4l_norm_{_tag(cuts)}.json"
            atomic_write_json(data, path)
            print(
                f"{path}: S = {np.array(data['S']).round(6).tolist()}, max relative MC error of "
                f"sigma(theta) on the prior grid {data['rel_err_max']:.2e}"
            )
    if not (args.describe or args.compute_normalisation):
        ap.print_help()


if __name__ == "__main__":
    main()
