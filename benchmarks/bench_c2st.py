"""C2ST with sbi's MLP (mfinfer's default) against the random forest (``classifier="rf"``).

Two Gaussian sample sets N(0, I_p) and N(δ e₁, I_p), n rows each: δ = 0 should give 0.5, and the
Bayes-optimal classifier reaches Φ(δ / 2) (printed as "optimal"), the accuracy a C2ST should
approach with enough samples. Wall seconds are per call, on whatever machine runs it.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_c2st.py --out benchmarks/results/c2st_cpu.txt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

from mfinfer.evaluation.metrics import c2st
from mfinfer.files import atomic_write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 10])
    ap.add_argument("--shifts", type=float, nargs="+", default=[0.0, 0.3])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lines = ["| p | δ | optimal | C2ST mlp | C2ST rf | s mlp | s rf |", "|---|---|---|---|---|---|---|"]
    for p in args.dims:
        for delta in args.shifts:
            rng = np.random.default_rng(0)
            a, b = rng.standard_normal((args.n, p)), rng.standard_normal((args.n, p))
            b[:, 0] += delta
            row = [str(p), f"{delta:g}", f"{norm.cdf(delta / 2):.3f}"]
            times = []
            for clf in ("mlp", "rf"):
                t0 = time.perf_counter()
                row.append(f"{c2st(a, b, seed=0, classifier=clf):.3f}")  # type: ignore[arg-type]
                times.append(f"{time.perf_counter() - t0:.0f}")
            lines.append("| " + " | ".join(row + times) + " |")
            print(lines[-1], flush=True)
    if args.out:
        text = "\n".join([f"n = {args.n} rows per set", *lines]) + "\n"
        atomic_write(Path(args.out), lambda f: f.write(text), mode="w")


if __name__ == "__main__":
    main()
