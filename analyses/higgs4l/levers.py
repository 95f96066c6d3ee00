"""H→4ℓ: does the M-flow learn the 11-d manifold? Train M-flow variants on the same simulations and
measure the reconstruction error |project(x) − x| on held-out events (the levers of the flagship
issue: training budget, width/depth/bins, batch size and learning rate, schedule, Mₑ-flow, input
representation).

Two representations, both with a learned manifold (no known chart): the 38 observables, or the 16
lepton four-momentum components (columns 0-15, GeV), where the 11-d manifold is smooth (the 38
observables hold six azimuthal angles that jump by 2π). The error is the Euclidean norm over the
representation's columns in their units (GeV; radians for angles) and, comparable across both, over
the 16 momentum components alone. Each variant trains from the same seed on the same events, with a
checkpoint every epoch in ``--out/NAME/train`` (a rerun resumes; ``--collect`` evaluates the
checkpoints of variants that were cut off). The script prints one line per variant and writes
``levers.json`` (and each model's weights) into ``--out``. Device-agnostic: ``--device cuda``.

    python analyses/higgs4l/levers.py --train train.npz --test test.npz --out levers --device cpu

``train.npz`` / ``test.npz`` hold ``theta`` (n, 2) and ``x`` (n, 38), e.g. from
``Higgs4l().simulate(n, rng=seed)``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mfinfer.models import ManifoldFlow, save_model
from mfinfer.training import TrainConfig, train

#: name -> (model options, training options); the first is the analysis' configuration.
BASE_ARCH = {"outer_layers": 6, "inner_layers": 5, "hidden_features": 64, "num_blocks": 2,
             "num_bins": 8}
BASE_TRAIN = {"schedule": "sequential", "epochs": 20, "batch_size": 256, "lr": 1e-3,
              "mse_weight": 1000.0, "patience": 5}
VARIANTS: dict[str, tuple[dict, dict]] = {
    "analysis": (BASE_ARCH, BASE_TRAIN),
    "long": (BASE_ARCH, {**BASE_TRAIN, "epochs": 60, "batch_size": 1024, "lr": 2e-3,
                         "patience": 20}),
    "alternating-long": (BASE_ARCH, {**BASE_TRAIN, "schedule": "alternating", "epochs": 60,
                                     "batch_size": 1024, "lr": 2e-3, "patience": 20}),
    "alternating": (BASE_ARCH, {**BASE_TRAIN, "schedule": "alternating"}),
    "mse-1e4": (BASE_ARCH, {**BASE_TRAIN, "mse_weight": 1e4}),
    "wide-long": ({**BASE_ARCH, "outer_layers": 10, "hidden_features": 256, "num_bins": 10},
                  {**BASE_TRAIN, "epochs": 60, "batch_size": 1024, "lr": 1e-3, "patience": 20}),
    "momenta": ({**BASE_ARCH, "columns": "momenta"}, BASE_TRAIN),
    "momenta-long": ({**BASE_ARCH, "columns": "momenta"},
                     {**BASE_TRAIN, "epochs": 60, "batch_size": 1024, "lr": 2e-3, "patience": 20}),
    "momenta-wide-long": ({**BASE_ARCH, "columns": "momenta", "outer_layers": 10,
                           "hidden_features": 256, "num_bins": 10},
                          {**BASE_TRAIN, "epochs": 60, "batch_size": 1024, "lr": 1e-3, "patience": 20}),
    "momenta-alternating-long": ({**BASE_ARCH, "columns": "momenta"},
                                 {**BASE_TRAIN, "schedule": "alternating", "epochs": 60,
                                  "batch_size": 1024, "lr": 2e-3, "patience": 20}),
    "encoder-long": ({**BASE_ARCH, "encoder": True},
                     {**BASE_TRAIN, "epochs": 60, "batch_size": 1024, "lr": 2e-3, "patience": 20}),
    "lr-3e-4-long": (BASE_ARCH, {**BASE_TRAIN, "epochs": 60, "batch_size": 1024, "lr": 3e-4,
                                 "patience": 20}),
    # the paper's LHC models: 20 outer / 15 inner layers of 100 units, 10 bins, lr 3e-4, MSE 1e4
    "paper-lhc": ({**BASE_ARCH, "outer_layers": 20, "inner_layers": 15, "hidden_features": 100,
                   "num_bins": 10},
                  {**BASE_TRAIN, "epochs": 60, "batch_size": 1024, "lr": 3e-4, "mse_weight": 1e4,
                   "patience": 20}),
}
#: The input representations: columns of the 38 observables.
COLUMNS = {"observables": slice(None), "momenta": slice(0, 16)}


def build(name: str, param_dim: int) -> tuple[ManifoldFlow, dict, slice]:
    """Variant ``name``'s untrained model (seed 0), training options and input columns."""
    arch, opts = VARIANTS[name]
    arch = dict(arch)
    columns = COLUMNS[arch.pop("columns", "observables")]
    torch.manual_seed(0)
    data_dim = len(range(38)[columns])
    return ManifoldFlow(data_dim, 11, param_dim=param_dim, **arch), opts, columns


def errors(model: ManifoldFlow, x_test: np.ndarray, columns: slice) -> dict[str, float]:
    """Median, mean and 90 % quantile of |project(x) − x| over the representation's columns, and
    the median over the 16 momentum components (GeV) alone."""
    model.eval()
    x = torch.as_tensor(x_test[:, columns], dtype=torch.float32)
    with torch.no_grad():
        ref = next(model.parameters())
        diff = torch.cat([model.project(xb.to(ref.device)).cpu() - xb for xb in x.split(2000)])
    err, err16 = diff.norm(dim=1).numpy(), diff[:, :16].norm(dim=1).numpy()
    return {"reconstruction_error_median": float(np.median(err)),
            "reconstruction_error_mean": float(np.mean(err)),
            "reconstruction_error_q90": float(np.quantile(err, 0.9)),
            "momentum_error_median": float(np.median(err16))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--n-train", type=int, default=None, help="use the first N simulations")
    parser.add_argument("--epochs", type=int, default=None, help="override every variant's epochs")
    parser.add_argument("--collect", action="store_true",
                        help="evaluate the last checkpoint of variants that were cut off")
    args = parser.parse_args()
    with np.load(args.train) as f:
        theta, x = f["theta"][: args.n_train], f["x"][: args.n_train]
    with np.load(args.test) as f:
        x_test = f["x"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "levers.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in args.variants.split(","):
        model, opts, columns = build(name, theta.shape[1])
        if args.epochs is not None:
            opts = {**opts, "epochs": args.epochs}
        record = {"arch": VARIANTS[name][0], "train": opts, "n_train": len(x)}
        ckpt = out / name / "train" / "checkpoint.pt"
        if args.collect:
            if "cut_off" not in results.get(name, {"cut_off": ""}) or not ckpt.exists():
                continue  # finished, or never started
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            history, seconds = state["history"], float("nan")
            record["cut_off"] = f"at epoch {len(history)} of {opts['epochs']} (time limit)"
        else:
            config = TrainConfig(**opts, device=args.device, progress=False, seed=0)
            t0 = time.perf_counter()
            history = train(model, x[:, columns], theta, config, run_dir=out / name / "train",
                            resume=True)
            seconds = time.perf_counter() - t0
        record.update(device=str(next(model.parameters()).device), seconds=seconds,
                      epochs_run=len(history), seconds_per_epoch=seconds / max(1, len(history)),
                      **errors(model, x_test, columns), last_epoch=history[-1] if history else None)
        results[name] = record
        print(f"{name}: median error {record['reconstruction_error_median']:.2f} (momenta "
              f"{record['momentum_error_median']:.2f}, mean {record['reconstruction_error_mean']:.2f}), "
              f"{len(history)} epochs, {seconds:.0f} s, device {record['device']}", flush=True)
        save_model(model.cpu(), out / name / "model")
        path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
