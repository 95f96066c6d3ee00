"""H→4ℓ: does the M-flow learn the 11-d manifold? Train M-flow variants on the same simulations and
measure the reconstruction error |project(x) − x| on held-out events (the levers of the flagship
issue: training budget, width/depth/bins, batch size and learning rate, schedule).

The error is the Euclidean norm over the 38 observables in their units (GeV for energies, momenta
and masses; radians for angles; the GeV columns dominate it). Each variant trains from the same
seed on the same events; the script prints one line per variant and writes ``levers.json`` (and
each model's weights) into ``--out``. Device-agnostic: ``--device cuda`` on a GPU.

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
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--n-train", type=int, default=None, help="use the first N simulations")
    parser.add_argument("--epochs", type=int, default=None, help="override every variant's epochs")
    args = parser.parse_args()
    with np.load(args.train) as f:
        theta, x = f["theta"][: args.n_train], f["x"][: args.n_train]
    with np.load(args.test) as f:
        x_test = f["x"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.variants.split(","):
        arch, opts = VARIANTS[name]
        torch.manual_seed(0)
        model = ManifoldFlow(x.shape[1], 11, param_dim=theta.shape[1], **arch)
        if args.epochs is not None:
            opts = {**opts, "epochs": args.epochs}
        config = TrainConfig(**opts, device=args.device, progress=False, seed=0)
        t0 = time.perf_counter()
        history = train(model, x, theta, config)
        seconds = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            err = torch.cat([model.reconstruction_error(xb) for xb in
                             torch.as_tensor(x_test, dtype=torch.float32).split(2000)])
        err_np = err.cpu().numpy()
        results[name] = {
            "arch": arch, "train": opts, "device": str(next(model.parameters()).device),
            "seconds": seconds, "epochs_run": len(history),
            "seconds_per_epoch": seconds / max(1, len(history)),
            "reconstruction_error_median": float(np.median(err_np)),
            "reconstruction_error_mean": float(np.mean(err_np)),
            "reconstruction_error_q90": float(np.quantile(err_np, 0.9)),
            "last_epoch": history[-1] if history else None,
        }
        print(f"{name}: median error {results[name]['reconstruction_error_median']:.2f} "
              f"(mean {results[name]['reconstruction_error_mean']:.2f}), {len(history)} epochs, "
              f"{seconds:.0f} s, device {results[name]['device']}", flush=True)
        save_model(model.cpu(), out / name)
        (out / "levers.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
