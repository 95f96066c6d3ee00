"""Peak anonymous memory of training from a memory-mapped sample against the same sample in memory.

A float32 ``.npy`` of n events × D observables (θ: 2 columns) is trained on for one epoch by a small
AF, once opened with ``np.load(mmap_mode="r")`` (read batch by batch, :mod:`mfinfer.training.disk_rows`)
and once loaded into memory; each in a fresh subprocess, whose anonymous resident memory (``RssAnon``
in ``/proc/self/status``: not the file pages the OS caches) is sampled every 5 ms. Printed: the peak
above the process's memory just before ``train`` (the data loaded or mapped, and torch's one-off
allocations made by a warm-up training on 2 batches of other data), in MB. Linux only.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_disk_training.py --out benchmarks/results/disk_training.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from mfinfer.files import atomic_write_json


def _rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


def _child(directory: str, mode: str, batch_size: int) -> None:
    """Train one epoch on the arrays in ``directory`` and print the peak RssAnon growth (MB)."""
    import torch

    from mfinfer.models import AmbientFlow
    from mfinfer.training import TrainConfig, train

    mmap = "r" if mode == "memmap" else None
    x = np.load(Path(directory) / "x.npy", mmap_mode=mmap)
    theta = np.load(Path(directory) / "theta.npy", mmap_mode=mmap)
    cfg = TrainConfig(epochs=1, batch_size=batch_size, progress=False)
    torch.manual_seed(0)
    model = AmbientFlow(x.shape[1], param_dim=2, num_layers=1, hidden_features=8, num_blocks=1)
    warm = np.random.default_rng(1).normal(size=(2 * batch_size, x.shape[1]))  # torch's one-off setup
    train(model, warm, np.zeros((len(warm), 2)), cfg)
    base, peak, done = _rss_anon_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_anon_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    train(model, x, theta, cfg)
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    print(json.dumps({"mode": mode, "peak_mb": round(peak[0] - base, 1), "seconds": round(seconds, 1)}))


def _runs(n: int, dim: int, batch_size: int) -> list[dict]:
    rng, out = np.random.default_rng(0), []
    with tempfile.TemporaryDirectory() as tmp:
        x = np.lib.format.open_memmap(Path(tmp) / "x.npy", mode="w+", dtype=np.float32, shape=(n, dim))
        for start in range(0, n, 100_000):
            x[start:start + 100_000] = rng.normal(size=(min(100_000, n - start), dim))
        x.flush()
        del x
        np.save(Path(tmp) / "theta.npy", rng.uniform(-1, 1, (n, 2)))
        for mode in ("memmap", "memory"):
            stdout = subprocess.run([sys.executable, __file__, "--child", tmp, mode, "--batch-size",
                                     str(batch_size)], check=True, capture_output=True, text=True).stdout
            out.append({"n": n, "x_float32_mb": round(n * dim * 4 / 2**20, 1),
                        **json.loads(stdout.strip().splitlines()[-1])})
            print(out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1_000_000, 2_000_000])
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.batch_size)
        return
    results = {"dim": args.dim, "batch_size": args.batch_size, "runs": []}
    for n in args.n:
        results["runs"] += _runs(n, args.dim, args.batch_size)
    if args.out:
        atomic_write_json(results, args.out)


if __name__ == "__main__":
    main()
