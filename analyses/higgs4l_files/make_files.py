"""Detector-level H -> ZZ* -> 2e2mu simulations as a collaborator would hand them over: weighted
events in several flat ROOT files, plus a file of observed events.

θ = (a2, a3) is drawn from a proposal that oversamples the centre of the prior box, q(θ) = ½ U(box) +
½ Beta(2, 2) per coordinate (as a generator run on a grid or a biased scan would), and each event
carries the weight p(θ)/q(θ) (normalised to mean one), so that the weighted sample stands for θ ~
prior; x ~ ``Higgs4l(cuts=True, smearing=0.02)`` (the 2 % momentum smearing and the acceptance cuts
of ``analyses/higgs4l/detector_calibration.yaml``). The files hold the branches ``theta_0``,
``theta_1``, the 38 observables by name and ``weight`` (:func:`mfinfer.io.simulations.write_simulations`,
the schema ``mfinfer simulate --out`` writes); ``config.yaml`` reads them with a ``simulations:``
section and no simulator.

    python -m analyses.higgs4l_files.make_files [--n 20000] [--parts 4] [--out runs/higgs4l_files/files]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mfinfer.io.simulations import write_simulations
from mfinfer.registry import get_simulator

#: the observed events' θ* and count
THETA_STAR, N_OBSERVED = (0.5, -1.0), 100


def proposal(n: int, low: np.ndarray, high: np.ndarray, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """θ ~ q = ½ U(box) + ½ Beta(2, 2) (scaled to the box), per coordinate; returns θ (n, p) and the
    importance weights p(θ)/q(θ) (n,) normalised to mean one."""
    u = np.where(rng.random((n, len(low))) < 0.5, rng.random((n, len(low))), rng.beta(2, 2, (n, len(low))))
    q = np.prod(0.5 + 0.5 * 6 * u * (1 - u), axis=1)  # density of u on [0, 1]^p
    w = 1.0 / q
    return low + u * (high - low), w / w.mean()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="training events (default 20000)")
    parser.add_argument("--parts", type=int, default=4, help="number of training files (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/higgs4l_files/files"))
    args = parser.parse_args(argv)
    sim = get_simulator("higgs4l", cuts=True, smearing=0.02)
    rng = np.random.default_rng(args.seed)
    low, high = sim.prior.bounds
    theta, weight = proposal(args.n, low, high, rng)
    x = sim.sample(theta, rng)
    names = list(sim.observable_names)
    meta = {"simulator": sim.registry_spec, "proposal": "1/2 U(box) + 1/2 Beta(2,2)", "seed": args.seed}
    paths, _ = write_simulations(args.out / "higgs4l.root", theta, x, names=names, weight=weight,
                                 parts=args.parts, metadata=meta)
    theta_obs = np.repeat([THETA_STAR], N_OBSERVED, axis=0)
    write_simulations(args.out / "observed.root", theta_obs, sim.sample(theta_obs, rng), names=names,
                      metadata={**meta, "theta": list(THETA_STAR)})
    print(f"wrote {args.n} weighted events to {len(paths)} files ({paths[0]} ...; weights "
          f"{weight.min():.2f}-{weight.max():.2f}) and {N_OBSERVED} observed events at θ* = "
          f"{THETA_STAR} to {args.out / 'observed.root'}")


if __name__ == "__main__":
    main()
