"""H→4ℓ diagnostic ladder: how much of the M-flow's posterior error is the manifold, how much the density?

On the same 100k simulations (those of ``analyses/higgs4l/calibration.yaml``, whose AF and M-flow have
the architectures and training budget of ``analyses/higgs4l/config.yaml``) and the same observed
events at the analysis' three θ*:

1. **true chart**: a conditional flow on the 11 chart coordinates z = ``Higgs4l.true_chart(x)``, with
   the M-flow's inner-flow architecture and the same training settings: the FOM flow with the true
   chart, i.e. the best the M-flow's inner flow can do once the manifold is exact. Its likelihood
   p(z|θ) differs from p(x|θ) by the chart's θ-independent Jacobian, so it has the exact posterior's
   shape when the flow is exact.
2. **the M-flow's projection**: reconstruction error |x − project(x)| of the observed events [GeV
   in the observable units] and of 5000 held-out simulations; the true chart's is 0.
3. **posteriors** of the true-chart flow, the M-flow and the AF against the exact posterior
   (C2ST, 0.5 ideal; MMD²), all by the adaptive grid sampler with the same options.

Resumable: the trained chart flow is kept in ``runs/higgs4l-ladder/`` (retrained only when its
settings or the training data change).

    .venv/bin/python analyses/higgs4l/ladder.py [--n-events 50] [--out analyses/higgs4l/ladder]
    .venv/bin/python analyses/higgs4l/ladder.py --smoke --out /tmp/ladder --run-dir /tmp/ladder
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mfinfer.caching import content_key, json_key
from mfinfer.calibration import load_campaign
from mfinfer.evaluation.metrics import c2st, mmd2
from mfinfer.files import atomic_write_json, sha256_file
from mfinfer.inference import ModelLikelihood, SimulatorLikelihood
from mfinfer.inference.mcmc import sample_posterior
from mfinfer.models import AmbientFlow, load_model, save_model
from mfinfer.pipeline import Run
from mfinfer.training import TrainConfig, train
from simulators.higgs4l import Higgs4l

CONFIG = "analyses/higgs4l/calibration.yaml"
THETA_STAR = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.5))  # as in analyses/higgs4l/config.yaml
RUN_DIR = Path("runs/higgs4l-ladder")


def chart_flow(sim: Higgs4l, train_path: Path, m_flow_cfg: dict, run_dir: Path,
               n_train: int | None = None) -> tuple[AmbientFlow, float]:
    """The trained true-chart flow (inner-flow architecture and training of the M-flow, on the
    first ``n_train`` simulations, default all) and its training seconds (0 when reused)."""
    opts = m_flow_cfg["options"]
    arch = {"num_layers": opts["inner_layers"], "hidden_features": opts["hidden_features"],
            "num_blocks": opts["num_blocks"], "num_bins": opts["num_bins"]}
    settings = {k: v for k, v in m_flow_cfg["train"].items() if k not in ("schedule", "mse_weight")}
    key = content_key("ladder-chart-flow", arch, settings, sha256_file(train_path), n_train, "v1")
    directory = run_dir / "chart-flow"
    if json_key(run_dir / "chart-flow.json", "key") == key:
        return load_model(directory), 0.0
    with np.load(train_path) as f:
        theta, x = f["theta"][:n_train], f["x"][:n_train]
    z = sim.true_chart(x)
    torch.manual_seed(0)
    model = AmbientFlow(z.shape[1], param_dim=theta.shape[1], **arch)
    t0 = time.perf_counter()
    train(model, z, theta, TrainConfig(schedule="nll", **settings, progress=False, seed=0))
    seconds = time.perf_counter() - t0
    save_model(model, directory)
    atomic_write_json({"key": key, "arch": arch, "train": settings, "seconds": seconds},
                      run_dir / "chart-flow.json")
    return model, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-events", type=int, default=50)
    ap.add_argument("--num-samples", type=int, default=1000)
    ap.add_argument("--out", default="analyses/higgs4l/ladder")
    ap.add_argument("--run-dir", default=str(RUN_DIR), help="where the chart flow is kept")
    ap.add_argument("--smoke", action="store_true",
                    help="a check that the script runs: 2000 simulations, 1 epoch, 5 events")
    args = ap.parse_args()
    torch.set_num_threads(1)
    camp = load_campaign(CONFIG)
    run = Run(camp.run, camp.seed, progress=False)
    sim = Higgs4l()
    train_path = run.dir / "data" / "train.npz"
    mcfgs = {m.name: m for m in camp.run.models}
    m_flow_cfg = {"options": mcfgs["M-flow"].options, "train": dict(mcfgs["M-flow"].train)}
    if args.smoke:
        m_flow_cfg["train"]["epochs"] = 1
        args.n_events, args.num_samples = 5, 200
    chart, chart_seconds = chart_flow(sim, train_path, m_flow_cfg, Path(args.run_dir),
                                      2000 if args.smoke else None)
    chart.eval()
    models = {name: run.load(m).eval() for name, m in mcfgs.items()}
    n_test = 200 if args.smoke else 5000
    held_out = sim.sample(sim.prior.sample(n_test, np.random.default_rng(7)), np.random.default_rng(8))
    m_flow = models["M-flow"]
    with torch.no_grad():
        recon_test = m_flow.reconstruction_error(torch.as_tensor(held_out, dtype=torch.float32))
    out: dict = {"n_events": args.n_events, "num_samples": args.num_samples,
                 "chart_flow_train_seconds": chart_seconds,
                 "m_flow_reconstruction_error_test": {"median": float(recon_test.median()),
                                                      "mean": float(recon_test.mean())},
                 "points": []}
    for k, theta in enumerate(np.asarray(THETA_STAR)):
        x = sim.sample(np.tile(theta, (args.n_events, 1)), np.random.default_rng(100 + k))
        with torch.no_grad():
            recon = m_flow.reconstruction_error(torch.as_tensor(x, dtype=torch.float32))
        likes = {"truth": SimulatorLikelihood(sim, x),
                 "true chart (FOM)": ModelLikelihood(chart, sim.true_chart(x)),  # p(z|θ)
                 **{name: ModelLikelihood(m, x) for name, m in models.items()}}
        rec: dict = {"theta": theta.tolist(), "m_flow_reconstruction_error_observed":
                     {"median": float(recon.median()), "mean": float(recon.mean())},
                     "posteriors": {}}
        samples = {}
        for name, like in likes.items():
            t0 = time.perf_counter()
            res = sample_posterior(like, sim.prior, args.num_samples, method="grid", rng=k)
            samples[name] = s = np.asarray(res.samples)
            rec["posteriors"][name] = {"mean": s.mean(0).tolist(), "std": s.std(0).tolist(),
                                       "converged": bool(res.converged),
                                       "seconds": round(time.perf_counter() - t0, 1)}
        for name, s in samples.items():
            if name != "truth":
                rec["posteriors"][name].update(c2st=float(c2st(s, samples["truth"])),
                                               mmd2=float(mmd2(s, samples["truth"])))
            print(f"θ* = {theta.tolist()} {name}: {rec['posteriors'][name]}", flush=True)
        out["points"].append(rec)
        atomic_write_json(out, Path(args.out) / "ladder.json")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
