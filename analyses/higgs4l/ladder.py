"""H→4ℓ flagship comparison and diagnostic ladder: AF, M-flow, sbi's NLE against the exact posterior.

For each seed, on the training simulations and observed events of ``analyses/higgs4l/config.yaml``
(the pipeline's, so ``run.py`` sees the same ones), every estimator below is trained on the same
simulations and its posterior at the three θ* is compared with the exact one (C2ST, 0.5 ideal;
MMD²), all by the adaptive grid sampler with the same options:

- the ladder: (1) **true chart (FOM)**, a flow on the 11 chart coordinates z = ``Higgs4l.true_chart(x)``
  with the M-flow's inner-flow architecture and training (the FOM flow with the true chart: the best
  the inner flow can do once the manifold is exact; p(z|θ) differs from p(x|θ) by a θ-independent
  Jacobian); (2) the M-flow's reconstruction error |x − project(x)| on held-out simulations; (3) the
  M-flow's posterior;
- the estimators a user would pick instead: the **AF** and sbi's **NLE** with its defaults (MAF), at
  the config's number of epochs like every flow here (its early stopping alone ran > 20 min);
- two input representations, always with a learned manifold: the 38 observables, and the 16 lepton
  four-momentum components (columns 0-15, GeV), on which the 11-d manifold is smooth (the 38 hold six
  azimuthal angles that jump by 2π).

Training checkpoints every epoch and resumes (``runs/higgs4l/seed_S/ladder/``; the AF and the
M-flow are the pipeline's, in ``runs/higgs4l/seed_S/models/``, which ``run.py`` then reuses);
posteriors are kept per seed in ``--out/seed_S.json``, keyed by the trained weights.
``--workers 2`` trains the (seed, estimator) pairs in dask worker processes (there these flows
train 2-3× slower than in a plain process, so on 2 cores two shells with ``--train-only`` and
disjoint ``--estimators`` are faster; a last call without it computes the posteriors).

    .venv/bin/python analyses/higgs4l/ladder.py --seeds 0 1 2                 # ~3 h on one core
    .venv/bin/python analyses/higgs4l/ladder.py --smoke --out /tmp/ladder     # ~1 min
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfinfer.caching import content_key, json_key, seed_sequence, torch_seed
from mfinfer.config import ModelConfig, RunConfig, load_config
from mfinfer.evaluation.metrics import c2st, mmd2
from mfinfer.evaluation.report import read_timings
from mfinfer.files import atomic_write, atomic_write_json, read_json, sha256_file
from mfinfer.inference import ModelLikelihood, SimulatorLikelihood
from mfinfer.inference.mcmc import sample_posterior
from mfinfer.interop.nle import NLELikelihood, load_nle, save_nle, train_nle
from mfinfer.models import AmbientFlow, ManifoldFlow, load_model, save_model
from mfinfer.parallel import dask_client
from mfinfer.pipeline import Run, path_name
from mfinfer.training import TrainConfig, train
from simulators.higgs4l import Higgs4l

CONFIG = "analyses/higgs4l/config.yaml"
#: estimator -> (what is trained, representation of the events)
ESTIMATORS: dict[str, tuple[str, str]] = {
    "true chart (FOM)": ("chart", "chart"),
    "AF": ("AF", "observables"),
    "M-flow": ("M-flow", "observables"),
    "NLE": ("NLE", "observables"),
    "AF, 16 momenta": ("AF", "momenta"),
    "M-flow, 16 momenta": ("M-flow", "momenta"),
    "NLE, 16 momenta": ("NLE", "momenta"),
}
#: the config's models, which the pipeline trains (``run.py`` then reuses them)
PIPELINE = ("AF", "M-flow")
SMOKE = {"n_train": 2000, "observed": {"theta": [[0.0, 0.0], [1.0, 0.0]], "n_events": 5}}


def model_config(cfg: RunConfig, name: str) -> ModelConfig:
    return {m.name: m for m in cfg.models}[name]


def represent(sim: Higgs4l, x: np.ndarray, representation: str) -> np.ndarray:
    """Events (n, 38) in a representation: the 38 observables, the 16 momentum components or
    the 11 true chart coordinates."""
    return {"observables": lambda: x, "momenta": lambda: x[:, :16],
            "chart": lambda: sim.true_chart(x)}[representation]()


def spec(cfg: RunConfig, name: str) -> dict:
    """What estimator ``name`` trains: model kind, options and training settings (from the config;
    the chart flow takes the M-flow's inner-flow architecture and its training without the M phase;
    the NLE keeps sbi's defaults but trains the config's number of epochs)."""
    trained, representation = ESTIMATORS[name]
    if trained == "NLE":
        # sbi's defaults, but at the config's epochs: its early stopping alone ran > 20 min (~100
        # epochs) on the 38 observables, still improving, while every flow here trains 20 epochs
        return {"kind": "NLE", "representation": representation,
                "max_epochs": model_config(cfg, "AF").train["epochs"]}
    mcfg = model_config(cfg, "M-flow" if trained == "chart" else trained)
    options, settings = dict(mcfg.options), dict(mcfg.train)
    if trained == "chart":
        options = {"num_layers": options["inner_layers"], **{k: options[k] for k in
                   ("hidden_features", "num_blocks", "num_bins")}}
        settings = {k: v for k, v in settings.items() if k not in ("schedule", "mse_weight")}
    return {"kind": "ManifoldFlow" if trained == "M-flow" else "AmbientFlow",
            "representation": representation, "options": options, "train": settings}


def fit(cfg: RunConfig, seed: int, name: str) -> dict:
    """Train estimator ``name`` on seed ``seed``'s simulations (resuming its checkpoint), unless
    it is trained already; returns its record (key, seconds, epochs)."""
    torch.set_num_threads(cfg.threads)
    run, sim, s = Run(cfg, seed, progress=False), Higgs4l(), spec(cfg, name)
    train_path = run.dir / "data" / "train.npz"
    directory = run.dir / "ladder" / path_name(name)
    key = content_key("ladder-fit", s, sha256_file(train_path), seed, "v2")
    if json_key(directory / "fit.json", "key") == key:
        return read_json(directory / "fit.json")
    if name in PIPELINE:  # the config's own model: trained by (and shared with) the pipeline
        t0 = time.perf_counter()
        run.train(only=name)
        history = torch.load(run.model_dir(model_config(cfg, name)) / "checkpoint.pt", weights_only=True)
        epochs = len(history["history"])
        # the pipeline's record of its training time, also when it was trained before this call
        seconds = read_timings(run.dir).get("train", {}).get(name, time.perf_counter() - t0)
    else:
        with np.load(train_path) as f:
            theta, x = f["theta"], represent(sim, f["x"], s["representation"])
        t0 = time.perf_counter()
        if s["kind"] == "NLE":
            estimator, info = train_nle(theta, x, sim.prior, seed=seed, max_epochs=s["max_epochs"])
            save_nle(estimator, info, directory / "final")
            epochs = info["epochs"]
        else:
            torch.manual_seed(torch_seed(seed_sequence(seed, 4, name)))
            dims = (x.shape[1], 11) if s["kind"] == "ManifoldFlow" else (x.shape[1],)
            model: Any = {"ManifoldFlow": ManifoldFlow, "AmbientFlow": AmbientFlow}[s["kind"]](
                *dims, param_dim=2, **s["options"])
            config = TrainConfig(**s["train"], seed=seed, device=cfg.device, progress=False)
            epochs = len(train(model, x, theta, config, run_dir=directory / "train", resume=True))
            save_model(model.cpu(), directory / "final")
        seconds = time.perf_counter() - t0
    record = {"key": key, "spec": s, "seconds": seconds, "epochs": epochs,
              "seconds_per_epoch": seconds / max(epochs, 1)}
    atomic_write_json(record, directory / "fit.json")
    return record


def load(run: Run, name: str, theta: np.ndarray, x: np.ndarray, sim: Higgs4l) -> Any:
    """The trained estimator ``name`` (the NLE is rebuilt on its training data: θ and the events
    x (n, 38) in its representation)."""
    directory = run.dir / "ladder" / path_name(name) / "final"
    if name in PIPELINE:
        return run.load(model_config(run.config, name))
    if ESTIMATORS[name][0] == "NLE":
        return load_nle(directory, theta, represent(sim, x, ESTIMATORS[name][1]))[0]
    return load_model(directory).eval()


def posteriors(cfg: RunConfig, seed: int, fits: dict[str, dict], out: Path, num_samples: int,
               n_test: int) -> dict:
    """Posteriors of the exact likelihood and every estimator at the config's θ*, their C2ST and
    MMD² against the exact one, and the M-flows' reconstruction errors; kept in
    ``out/seed_S.json`` and reused while the trained weights are the same."""
    torch.set_num_threads(cfg.threads)
    path = out / f"seed_{seed}.json"
    key = content_key("ladder-posteriors", {n: f["key"] for n, f in fits.items()}, num_samples, n_test,
                      cfg.observed.n_events)
    if json_key(path, "key") == key:
        return read_json(path)
    run, sim = Run(cfg, seed, progress=False), Higgs4l()
    with np.load(run.dir / "data" / "train.npz") as f:
        theta_train, x_train = f["theta"], f["x"]
    models = {n: load(run, n, theta_train, x_train, sim) for n in fits}
    rng = np.random.default_rng(seed_sequence(seed, 6, "held-out"))
    held_out = sim.sample(sim.prior.sample(n_test, rng), rng)
    record: dict = {"key": key, "seed": seed, "fits": fits, "reconstruction_error": {}, "points": []}
    for n, m in models.items():
        if getattr(m, "has_manifold", False):
            with torch.no_grad():
                err = m.reconstruction_error(torch.as_tensor(represent(sim, held_out, ESTIMATORS[n][1]),
                                                             dtype=torch.float32)).numpy()
            record["reconstruction_error"][n] = {"median": float(np.median(err)),
                                                 "mean": float(np.mean(err))}
    for k in range(len(cfg.observed.theta)):
        with np.load(run.dir / "data" / f"observed_{k}.npz") as f:
            theta_star, x = f["theta"], f["x"]
        likes: dict[str, Any] = {"truth": SimulatorLikelihood(sim, x)}
        for n, m in models.items():
            xr = represent(sim, x, ESTIMATORS[n][1])
            likes[n] = NLELikelihood(m, xr) if ESTIMATORS[n][0] == "NLE" else ModelLikelihood(m, xr)
        point: dict = {"theta": np.asarray(theta_star).tolist(), "posteriors": {}}
        samples = {}
        for n, like in likes.items():
            t0 = time.perf_counter()
            res = sample_posterior(like, sim.prior, num_samples, method="grid", rng=k)
            samples[n] = s = np.asarray(res.samples)
            point["posteriors"][n] = {"mean": s.mean(0).tolist(), "std": s.std(0).tolist(),
                                      "converged": bool(res.converged),
                                      "seconds": round(time.perf_counter() - t0, 1)}
            if n != "truth":
                point["posteriors"][n].update(c2st=float(c2st(s, samples["truth"], classifier="rf")),
                                              mmd2=float(mmd2(s, samples["truth"])))
        record["points"].append(point)
    atomic_write_json(record, path)
    return record


def summarise(records: list[dict]) -> dict:
    """Median, min and max over seeds of every estimator's C2ST at each θ*, its training cost and
    (M-flows) its reconstruction error."""
    def stats(values: list[float]) -> dict:
        return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values))}

    names = [n for n in ESTIMATORS if n in records[0]["fits"]]
    out: dict = {"seeds": [r["seed"] for r in records], "estimators": {}}
    for n in names:
        entry = {"c2st": [stats([r["points"][k]["posteriors"][n]["c2st"] for r in records])
                          for k in range(len(records[0]["points"]))],
                 "train_seconds": stats([r["fits"][n]["seconds"] for r in records]),
                 "seconds_per_epoch": stats([r["fits"][n]["seconds_per_epoch"] for r in records]),
                 "epochs": stats([r["fits"][n]["epochs"] for r in records])}
        if n in records[0]["reconstruction_error"]:
            entry["reconstruction_error"] = stats([r["reconstruction_error"][n]["median"] for r in records])
        out["estimators"][n] = entry
    out["theta"] = [p["theta"] for p in records[0]["points"]]
    return out


def table(summary: dict) -> str:
    """The summary as a markdown table: median (min–max) over seeds."""
    def cell(s: dict, fmt: str = ".3f") -> str:
        return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"

    thetas = " | ".join(f"C2ST θ*=({t[0]:g}, {t[1]:g})" for t in summary["theta"])
    lines = [f"| estimator | {thetas} | reconstruction error, median [GeV] | train wall [s] | s / epoch |",
             "|---|" + "---|" * (len(summary["theta"]) + 3)]
    for n, e in summary["estimators"].items():
        recon = cell(e["reconstruction_error"], ".1f") if "reconstruction_error" in e else (
            "0 (exact)" if ESTIMATORS[n][0] == "chart" else "–")
        cost = f"{cell(e['train_seconds'], '.0f')} | {cell(e['seconds_per_epoch'], '.1f')}"
        lines.append(f"| {n} | " + " | ".join(cell(c) for c in e["c2st"]) + f" | {recon} | {cost} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=list(ESTIMATORS))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--num-samples", type=int, default=1000)
    ap.add_argument("--out", default="analyses/higgs4l/ladder")
    ap.add_argument("--train-only", action="store_true",
                    help="train the estimators and stop (e.g. split over shells by --estimators)")
    ap.add_argument("--smoke", action="store_true",
                    help="a check that it runs: 2000 simulations, 2 epochs, 2 θ* of 5 events, 1 seed")
    args = ap.parse_args()
    out = Path(args.out)
    overrides: dict = {"seeds": args.seeds}
    if args.smoke:  # 2 epochs for every model
        models = [{**m, "train": {**m["train"], "epochs": 2}}
                  for m in load_config(CONFIG).to_dict()["models"]]
        overrides = {**SMOKE, "models": models, "seeds": [0], "output_dir": str(out / "runs")}
        args.num_samples = 200
    cfg = load_config(CONFIG, overrides)
    n_test = 200 if args.smoke else 5000
    for seed in cfg.seeds:
        Run(cfg, seed, progress=False).simulate()
    # the costliest first, so that two workers finish together
    order = ["M-flow", "AF", "M-flow, 16 momenta", "AF, 16 momenta", "true chart (FOM)"]
    tasks = [(seed, n) for n in sorted(args.estimators, key=lambda n: order.index(n) if n in order
                                       else len(order)) for seed in cfg.seeds]
    if args.workers == 1:  # in this process (a dask worker trains these flows 2-3× slower)
        fits = {t: fit(cfg, *t) for t in tasks}
        if args.train_only:
            return
        records = [posteriors(cfg, seed, {n: fits[seed, n] for n in args.estimators}, out,
                              args.num_samples, n_test) for seed in cfg.seeds]
    else:
        with dask_client(args.workers, quiet=True) as client:
            futures = {t: client.submit(fit, cfg, *t, pure=False, priority=-i)
                       for i, t in enumerate(tasks)}
            fits = {t: f.result() for t, f in futures.items()}
            if args.train_only:
                return
            jobs = [client.submit(posteriors, cfg, seed, {n: fits[seed, n] for n in args.estimators},
                                  out, args.num_samples, n_test, pure=False) for seed in cfg.seeds]
            records = [j.result() for j in jobs]
    summary = summarise(records)
    atomic_write_json(summary, out / "ladder.json")
    atomic_write(out / "table.md", lambda f: f.write(table(summary)), "w")
    print(table(summary))
    print(json.dumps({n: e["reconstruction_error"] for n, e in summary["estimators"].items()
                      if "reconstruction_error" in e}))


if __name__ == "__main__":
    main()
