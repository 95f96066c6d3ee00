"""Event-generation speed of the two H -> ZZ* -> 2e2mu simulators (events per second, one core).

    python benchmarks/bench_generators.py [--n 20000]

Higgs4l: analytic generator at θ drawn from the prior, with and without cuts.
Pythia: gg -> H -> ZZ -> 2e2mu at 13 TeV, showers off, one θ chunk (includes its initialisation).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mfinfer import get_simulator


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    n = args.n
    for cuts in (False, True):
        sim = get_simulator("higgs4l", cuts=cuts)
        sim.sample(sim.prior.sample(100, 0), 0)  # load the cached normalisation first
        theta = sim.prior.sample(n, 1)
        events_per_s = rate(lambda sim=sim, theta=theta: sim.sample(theta, 2), n)
        print(json.dumps({"simulator": f"higgs4l(cuts={cuts})", "events_per_s": events_per_s}))
    try:
        pythia = get_simulator("pythia", parity="even")
    except ImportError as err:
        print(json.dumps({"simulator": "pythia", "skipped": str(err)}))
        return
    theta = np.zeros((n, 1))
    print(json.dumps({"simulator": "pythia(parity=even, showers off)",
                      "events_per_s": rate(lambda: pythia.sample(theta, 3), n)}))


if __name__ == "__main__":
    main()
