"""Training throughput of mfinfer against sbi's NLE at equal architecture, on H→4ℓ simulations.

Rows (all trained on the same simulations, in the same process, one after the other):

1. ``AF vs sbi NLE``: ``train(AmbientFlow(...))`` against ``NLE(prior, likelihood_nn("nsf", ...))
   .append_simulations(θ, x).train(...)``, both timed over the whole call (target: ≥ 1.0×).
2. ``M phase vs sbi NLE``: the M phase of a ``ManifoldFlow`` trained with
   ``schedule="sequential"`` (target: ≥ 0.5×).
3. ``M phase vs AF of the same size``: the same M phase against an ``AmbientFlow`` with as many
   spline layers as the whole M-flow (outer + inner), the size the paper gave its AF baselines.

"Equal architecture" is sbi 0.27's NSF as ``likelihood_nn("nsf", ...)`` builds it: 5 RQ-spline
couplings on alternating halves, each with a ``ResidualNet`` of 2 blocks of 50 hidden units, 10 bins,
linear tails at ±3, an LU linear layer per coupling and a fixed z-scoring of x (and θ). Ours gets the
same numbers (``num_layers=5, hidden_features=50, num_blocks=2, num_bins=10, tail_bound=3.0``).
Note that sbi's ``NLE(prior)`` without a density estimator trains a *MAF* (affine autoregressive,
55k parameters instead of 206k, about 4× cheaper per step): compare against that and the ratio is
about 0.25×, which is not a like-for-like comparison.

Both sides train on batches of 200 with 10% held out for validation, for ``--epochs`` epochs and
no early stopping. sbi 0.27 trains ``max_num_epochs + 1`` epochs (its loop runs while
``epoch <= max_num_epochs``), so it is given ``max_num_epochs = epochs - 1`` and the epoch count is
checked against ``_summary["epochs_trained"]``. Events/s counts the training events of every
optimizer step (sbi drops the last incomplete batch, mfinfer does not).

Columns: ``whole call`` divides events by the wall time of the whole ``train()`` / ``.train()``
call (data checks, standardisation, validation, early-stopping copies and, for sbi, building the
network included); ``per step`` is the median time between consecutive optimizer steps (a global
optimizer step hook), i.e. one batch's forward, backward, clipping and update without any one-off
setup or validation. The one-off import of ``torch._dynamo`` that torch does when the first
optimizer of a process is created (1.5–3 s) is paid here before any timing and printed separately:
whichever library trains first in a process pays it.

The M phase is timed from the start of ``train()`` to the first optimizer step of the D phase
(setup, every M epoch with its validation); the run is cut there. Ratios are measured within one
run; on a shared machine absolute times vary, so use ``--repeats`` (alternating order) for medians.

    OMP_NUM_THREADS=1 python benchmarks/bench_training.py [--device cpu] [--n 50000] [--epochs 2]
        [--repeats 1] [--threads 1] [--data /tmp/h4l.npz]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from mfinfer.models import AmbientFlow, Flow, ManifoldFlow
from mfinfer.training import TrainConfig, train

BATCH = 200
VALIDATION = 0.1
ARCH: dict[str, Any] = {"hidden_features": 50, "num_bins": 10, "num_blocks": 2, "tail_bound": 3.0}  # sbi NSF
LAYERS = 5


class _StopTraining(Exception):
    """Raised by the step hook to end a run once the timed part is over."""


class StepClock:
    """Timestamps of every optimizer step in the process (a global post-step hook).

    ``stop_at_optimizer=k`` ends the run (``_StopTraining``) before the first step of the k-th
    optimizer created during it (0-based), recording the time of that moment.
    """

    def __init__(self, device: torch.device, stop_at_optimizer: int | None = None) -> None:
        self.device, self.stop_at = device, stop_at_optimizer
        self.steps: list[tuple[float, int]] = []  # (time, index of the optimizer)
        self.optimizers: list[int] = []
        self.cut: float | None = None

    def _index(self, opt: torch.optim.Optimizer) -> int:
        if id(opt) not in self.optimizers:
            self.optimizers.append(id(opt))
        return self.optimizers.index(id(opt))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def pre(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.stop_at is not None and self._index(opt) == self.stop_at:
            self._sync()
            self.cut = time.perf_counter()
            raise _StopTraining

    def post(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._sync()
        self.steps.append((time.perf_counter(), self._index(opt)))

    def __enter__(self) -> StepClock:
        self._handles = [register_optimizer_step_pre_hook(self.pre),
                         register_optimizer_step_post_hook(self.post)]
        return self

    def __exit__(self, *exc: Any) -> bool:
        for h in self._handles:
            h.remove()
        return exc[0] is _StopTraining

    def step_seconds(self, optimizer: int = 0) -> float:
        """Median time between consecutive steps of one optimizer (gaps at epoch ends excluded by
        the median)."""
        times = [t for t, i in self.steps if i == optimizer]
        return statistics.median(np.diff(times)) if len(times) > 1 else float("nan")

    def mean_step_seconds(self, optimizer: int = 0, gaps: int = 0) -> float:
        """Mean time between consecutive steps, leaving out the ``gaps`` longest (epoch ends)."""
        times = [t for t, i in self.steps if i == optimizer]
        diffs = sorted(np.diff(times))[: max(len(times) - 1 - gaps, 1)]
        return float(np.mean(diffs)) if len(times) > 1 else float("nan")

    def count(self, optimizer: int = 0) -> int:
        return sum(1 for _, i in self.steps if i == optimizer)


def load_data(n: int, path: str | None) -> tuple[np.ndarray, np.ndarray, Any]:
    """n H→4ℓ simulations (θ, x) and the simulator; cached in ``path`` (npz) when given."""
    from mfinfer import get_simulator

    sim = get_simulator("higgs4l")
    if path and Path(path).exists():
        with np.load(path) as f:
            if len(f["x"]) >= n:
                return f["theta"][:n], f["x"][:n], sim
    theta, x = sim.simulate(n, rng=0)
    if path:
        np.savez(path, theta=theta, x=x)
    return theta, x, sim


def time_ours(model: Flow, x: np.ndarray, theta: np.ndarray, cfg: TrainConfig, device: torch.device,
              stop_at_optimizer: int | None = None) -> dict:
    """Time ``train(model, x, theta, cfg)``; its first phase only when ``stop_at_optimizer`` cuts it."""

    with StepClock(device, stop_at_optimizer) as clock:
        start = time.perf_counter()
        train(model, x, theta, cfg)
    end = clock.cut if clock.cut is not None else time.perf_counter()
    steps = clock.count(0)
    n_train = len(x) - round(VALIDATION * len(x))
    epochs = steps // -(-n_train // BATCH)  # whole epochs of the (first) phase
    events = epochs * n_train
    return {"seconds": end - start, "epochs": epochs, "events": events, "steps": steps,
            "events_per_s": events / (end - start), "step_ms": 1e3 * clock.step_seconds(0),
            "step_ms_mean": 1e3 * clock.mean_step_seconds(0, epochs - 1)}


def time_sbi(x: np.ndarray, theta: np.ndarray, sim: Any, epochs: int, device: torch.device,
             default: bool = False) -> dict:
    """Time sbi's ``NLE(...).train()`` with the NSF of ``ARCH`` (or, with ``default``, sbi's own
    default density estimator: a MAF) for ``epochs`` epochs (at least 2: sbi 0.27 refuses
    ``max_num_epochs=0``)."""
    from sbi.inference import NLE
    from sbi.neural_nets import likelihood_nn
    from sbi.utils import BoxUniform

    low = torch.as_tensor(sim.prior.low, dtype=torch.float32)
    high = torch.as_tensor(sim.prior.high, dtype=torch.float32)
    prior = BoxUniform(low=low, high=high, device=str(device))
    estimator = likelihood_nn(model="nsf", hidden_features=ARCH["hidden_features"], num_transforms=LAYERS,
                              num_bins=ARCH["num_bins"], num_blocks=ARCH["num_blocks"],
                              tail_bound=ARCH["tail_bound"])
    inference = NLE(prior, density_estimator="maf" if default else estimator, device=str(device),
                    show_progress_bars=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sbi warns about constant columns (as z-scoring maps them to 0)
        inference.append_simulations(torch.as_tensor(theta, dtype=torch.float32),
                                     torch.as_tensor(x, dtype=torch.float32))
        with StepClock(device) as clock:
            start = time.perf_counter()
            net = inference.train(training_batch_size=BATCH, validation_fraction=VALIDATION,
                                  max_num_epochs=max(epochs, 2) - 1,  # sbi 0.27 trains max_num_epochs + 1
                                  stop_after_epochs=10**9)
            seconds = time.perf_counter() - start
    trained = inference._summary["epochs_trained"][-1]
    if trained != max(epochs, 2):
        raise RuntimeError(f"sbi trained {trained} epochs, expected {max(epochs, 2)}")
    steps = clock.count(0)
    return {"seconds": seconds, "epochs": trained, "events": steps * BATCH, "steps": steps,
            "events_per_s": steps * BATCH / seconds, "step_ms": 1e3 * clock.step_seconds(0),
            "step_ms_mean": 1e3 * clock.mean_step_seconds(0, trained - 1),
            "parameters": sum(p.numel() for p in net.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=50_000, help="simulations (10%% for validation)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="rounds in alternating order (medians)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--data", default=None, help="npz cache of the simulations (read if present)")
    parser.add_argument("--rows", default="1,2,3,4", help="which rows to run, e.g. 1 or 1,2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = {int(r) for r in args.rows.split(",")}

    import sbi
    import sbi.inference  # imports before any timing

    start = time.perf_counter()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # the lazy torch._dynamo import
    first_optimizer_s = time.perf_counter() - start

    theta, x, sim = load_data(args.n, args.data)
    cfg = {"batch_size": BATCH, "validation_fraction": VALIDATION, "patience": None, "progress": False,
           "device": args.device}

    def af(layers: int) -> Callable[[], dict]:
        def run() -> dict:
            torch.manual_seed(0)
            model = AmbientFlow(sim.data_dim, param_dim=sim.param_dim, num_layers=layers, **ARCH)
            out = time_ours(model, x, theta, TrainConfig(epochs=args.epochs, **cfg), device)
            return {**out, "parameters": sum(p.numel() for p in model.parameters())}
        return run

    def m_phase() -> dict:
        torch.manual_seed(0)
        model = ManifoldFlow(sim.data_dim, sim.manifold_dim, param_dim=sim.param_dim, outer_layers=LAYERS,
                             inner_layers=LAYERS, **ARCH)
        # sequential = M for epochs // 2, then D; the run is cut at the first D step
        out = time_ours(model, x, theta, TrainConfig(schedule="sequential", epochs=2 * args.epochs, **cfg),
                        device, stop_at_optimizer=1)
        return {**out, "parameters": sum(p.numel() for p in model.manifold_parameters())}

    def sbi_nle() -> dict:
        torch.manual_seed(0)
        return time_sbi(x, theta, sim, args.epochs, device)

    def sbi_nle_default() -> dict:
        torch.manual_seed(0)
        return time_sbi(x, theta, sim, args.epochs, device, default=True)

    runs: dict[str, Callable[[], dict]] = {"sbi_nle": sbi_nle}
    if 4 in rows:
        runs["sbi_nle_default"] = sbi_nle_default
    if rows & {1, 4}:
        runs["mfinfer_af"] = af(LAYERS)
    if rows & {2, 3}:
        runs["mfinfer_m_phase"] = m_phase
    if 3 in rows:
        runs["mfinfer_af_same_size"] = af(2 * LAYERS)
    results: dict[str, list[dict]] = {k: [] for k in runs}
    order = list(runs)
    for r in range(args.repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            results[name].append(runs[name]())

    def ratio(a: str, b: str, key: str) -> float:
        """Median over rounds of a's throughput over b's (per-step: b's step time over a's)."""
        if key == "events_per_s":
            return statistics.median(p[key] / q[key] for p, q in zip(results[a], results[b], strict=True))
        return statistics.median(q[key] / p[key] for p, q in zip(results[a], results[b], strict=True))

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    table = []
    specs: list[tuple[int, str, str, str, float | None]] = [
        (1, "AF vs sbi NLE (NSF, equal arch)", "mfinfer_af", "sbi_nle", 1.0),
        (2, "M phase vs sbi NLE (NSF, equal arch)", "mfinfer_m_phase", "sbi_nle", 0.5),
        (3, f"M phase vs mfinfer AF ({2 * LAYERS} layers)", "mfinfer_m_phase", "mfinfer_af_same_size", None),
        (4, "AF vs sbi NLE with its default estimator (MAF, smaller)", "mfinfer_af", "sbi_nle_default", None),
    ]
    for row, label, ours, ref, target in specs:
        if row in rows:
            table.append({"row": row, "comparison": label, "ours": ours, "reference": ref,
                          "ours_events_per_s": med(ours, "events_per_s"),
                          "ref_events_per_s": med(ref, "events_per_s"),
                          "ours_step_ms": med(ours, "step_ms"), "ref_step_ms": med(ref, "step_ms"),
                          "ratio_whole_call": ratio(ours, ref, "events_per_s"),
                          "ratio_per_step": ratio(ours, ref, "step_ms"), "target": target})

    sbi_epochs = results["sbi_nle"][0]["epochs"]
    print(f"\n{args.n} H→4ℓ events ({100 * VALIDATION:g}% validation), batch {BATCH}, {args.epochs} epochs "
          f"(sbi: {sbi_epochs}), device {device}, {torch.get_num_threads()} thread(s), "
          f"torch {torch.__version__}, sbi {sbi.__version__}, {args.repeats} round(s); first optimizer "
          f"of the process (torch._dynamo import, excluded): {first_optimizer_s:.2f} s\n")
    print("| # | comparison | ours events/s | ref events/s | ratio, whole call | ours ms/step | ref ms/step "
          "| ratio, per step | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in table:
        goal = "-" if t["target"] is None else f"≥ {t['target']:.1f}×"
        print(f"| {t['row']} | {t['comparison']} | {t['ours_events_per_s']:.0f} "
              f"| {t['ref_events_per_s']:.0f} "
              f"| {t['ratio_whole_call']:.2f}× | {t['ours_step_ms']:.1f} | {t['ref_step_ms']:.1f} "
              f"| {t['ratio_per_step']:.2f}× | {goal} |")
    print()
    print(json.dumps({"n": args.n, "epochs": args.epochs, "batch": BATCH, "device": str(device),
                      "threads": torch.get_num_threads(), "repeats": args.repeats, "torch": torch.__version__,
                      "sbi": sbi.__version__, "first_optimizer_s": first_optimizer_s, "rows": table,
                      "runs": results}))


if __name__ == "__main__":
    main()
