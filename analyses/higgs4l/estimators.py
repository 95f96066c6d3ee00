"""The estimators of the H→4ℓ flagship comparison: what each trains, and its training under a budget.

Every estimator trains on the same simulations (the pipeline's ``data/train.npz`` of the seed), in
``runs/higgs4l/seed_S/ladder/<budget folder>/<device>/<estimator>/`` (checkpoints, ``ledger.json``
of the seconds spent, ``final/`` weights, ``fit.json`` record). "+ score" adds SCANDAL's term w‖∇θ log p̂ − t‖²
(w = ``SCORE_WEIGHT``) with the exact joint score t of each simulated event: at truth level (the
config has no cuts and no smearing) x is the parton event, so t = ``Higgs4l.score(true_chart(x),
θ)``, the score ``simulate(n, score=True)`` returns. "K members" is an ensemble of K such flows,
each with its own seeds (:func:`mfinfer.training.ensemble.member_seeds`), combined as
:class:`mfinfer.models.Ensemble` (per-event mixture of the members' likelihoods).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analyses.higgs4l.budgets import PILOT_EPOCHS, PILOT_ROWS, WARM_UP_ROWS, Budget, Clock, planned_epochs
from analyses.higgs4l.nle_budget import train_nle_budget
from mfinfer.caching import content_key, json_key, seed_sequence, torch_seed
from mfinfer.config import ModelConfig, RunConfig
from mfinfer.files import atomic_write_json, read_json, sha256_file
from mfinfer.inference import ModelLikelihood
from mfinfer.interop.nle import NLELikelihood, load_nle, save_nle
from mfinfer.models import AmbientFlow, Ensemble, ManifoldFlow, load_model, save_model
from mfinfer.pipeline import Run, path_name
from mfinfer.training import TrainConfig, train
from mfinfer.training.ensemble import member_seeds
from mfinfer.training.phases import segments
from simulators.higgs4l import Higgs4l

#: estimator -> (what is trained, representation of the events, score weight, ensemble members)
ESTIMATORS: dict[str, tuple[str, str, float, int]] = {
    "true chart (FOM)": ("chart", "chart", 0.0, 1),
    "true chart + score": ("chart", "chart", 1.0, 1),
    "AF": ("AF", "observables", 0.0, 1),
    "AF + score": ("AF", "observables", 1.0, 1),
    "M-flow": ("M-flow", "observables", 0.0, 1),
    "M-flow + score": ("M-flow", "observables", 1.0, 1),
    "M-flow + score, 3 members": ("M-flow", "observables", 1.0, 3),
    "NLE": ("NLE", "observables", 0.0, 1),
    "AF, 16 momenta": ("AF", "momenta", 0.0, 1),
    "M-flow, 16 momenta": ("M-flow", "momenta", 0.0, 1),
    "NLE, 16 momenta": ("NLE", "momenta", 0.0, 1),
}
#: w of the score term (analyses/power/score.json and higgs4l/score_mflow.json used 1)
SCORE_WEIGHT = 1.0


def model_config(cfg: RunConfig, name: str) -> ModelConfig:
    return {m.name: m for m in cfg.models}[name]


def represent(sim: Higgs4l, x: np.ndarray, representation: str) -> np.ndarray:
    """Events (n, 38) in a representation: the 38 observables, the 16 momentum components or
    the 11 true chart coordinates."""
    return {"observables": lambda: x, "momenta": lambda: x[:, :16],
            "chart": lambda: sim.true_chart(x)}[representation]()


def spec(cfg: RunConfig, name: str, budget: Budget) -> dict:
    """What estimator ``name`` trains under ``budget``: model kind, options, training settings
    (the config's; the chart flow takes the M-flow's inner-flow architecture and its training
    without the M phase; the NLE keeps sbi's defaults), score weight and ensemble size."""
    trained, representation, weight, members = ESTIMATORS[name]
    common = {"representation": representation, "budget": budget.key, "members": members,
              **({} if budget.max_epochs is None else {"max_epochs": budget.max_epochs})}
    if trained == "NLE":
        return {"kind": "NLE", **common}
    mcfg = model_config(cfg, "M-flow" if trained == "chart" else trained)
    options, settings = dict(mcfg.options), dict(mcfg.train)
    if trained == "chart":
        options = {"num_layers": options["inner_layers"], **{k: options[k] for k in
                   ("hidden_features", "num_blocks", "num_bins")}}
        settings = {k: v for k, v in settings.items() if k not in ("schedule", "mse_weight")}
    settings = {k: v for k, v in settings.items() if k != "epochs"}  # the budget sets them
    if weight:
        settings["score_weight"] = weight
    return {"kind": "ManifoldFlow" if trained == "M-flow" else "AmbientFlow", **common,
            "options": options, "train": settings}


def _build(s: dict, data_dim: int) -> Any:
    dims = (data_dim, 11) if s["kind"] == "ManifoldFlow" else (data_dim,)
    return {"ManifoldFlow": ManifoldFlow, "AmbientFlow": AmbientFlow}[s["kind"]](
        *dims, param_dim=2, **s["options"])


def _pilot(s: dict, x: np.ndarray, theta: np.ndarray, t: np.ndarray | None, cfg: RunConfig,
           seed: int) -> float:
    """Seconds per epoch of a flow on the full sample, timed on ``PILOT_EPOCHS`` epochs of its
    first ``PILOT_ROWS`` rows (scaled by the row count), after an untimed warm-up on ``WARM_UP_ROWS``
    rows (a process's first training pays one-off costs: the seed-0 pilots of the first flagship run
    came out 1.3–1.5× slow without it)."""
    n = min(len(x), PILOT_ROWS)
    config = TrainConfig(**s["train"], epochs=PILOT_EPOCHS, seed=seed, device=cfg.device, progress=False)
    w = min(len(x), WARM_UP_ROWS)
    train(_build(s, x.shape[1]), x[:w], theta[:w], config, score=None if t is None else t[:w])
    model = _build(s, x.shape[1])
    t0 = time.perf_counter()
    train(model, x[:n], theta[:n], config, score=None if t is None else t[:n])
    return (time.perf_counter() - t0) / PILOT_EPOCHS * len(x) / n


def _key(run: Run, name: str, budget: Budget) -> str:
    """The key of estimator ``name``'s training under ``budget``: what it trains, on which
    simulations, seed and device."""
    s = spec(run.config, name, budget)
    device = "cpu" if s["kind"] == "NLE" else run.config.device  # sbi's NLE trains on the cpu
    return content_key("ladder-fit", s, sha256_file(run.dir / "data" / "train.npz"), run.seed, device,
                       "v3")


def trained(cfg: RunConfig, seed: int, name: str, budget: Budget) -> dict | None:
    """The record of estimator ``name`` trained on seed ``seed``'s simulations under ``budget``, or
    None while it is not (its training unfinished, or never started)."""
    run = Run(cfg, seed, progress=False)
    return _finished(folder(run, name, budget), _key(run, name, budget))


def _finished(directory: Path, key: str) -> dict | None:
    """The ``fit.json`` record in ``directory`` if it was written for ``key``, else None."""
    path = directory / "fit.json"
    return read_json(path) if json_key(path, "key") == key else None


def fit(cfg: RunConfig, seed: int, name: str, budget: Budget) -> dict:
    """Train estimator ``name`` on seed ``seed``'s simulations under ``budget`` (resuming its
    checkpoints), unless it is trained already; returns its record (key, seconds, epochs)."""
    run, sim, s = Run(cfg, seed, progress=False), Higgs4l(), spec(cfg, name, budget)
    directory, key = folder(run, name, budget), _key(run, name, budget)
    done = _finished(directory, key)
    if done is not None:
        return done
    torch.set_num_threads(cfg.threads)
    train_path = run.dir / "data" / "train.npz"
    device = "cpu" if s["kind"] == "NLE" else cfg.device  # sbi's NLE trains on the cpu
    with np.load(train_path) as f:
        theta, x_raw = f["theta"], f["x"]
    x = represent(sim, x_raw, s["representation"])
    extra: dict[str, Any] = {}
    if s["kind"] == "NLE":
        estimator, info = train_nle_budget(theta, x, sim.prior, seed=seed, directory=directory,
                                           seconds=budget.seconds, max_epochs=budget.max_epochs)
        save_nle(estimator, info, directory / "final")
        seconds, epochs = info["seconds"], [info["epochs"]]
        extra["stopped"] = info["stopped"]
    else:
        t = sim.score(sim.true_chart(x_raw), theta) if s["train"].get("score_weight") else None
        ledger = directory / "ledger.json"
        pilot = (read_json(ledger) if ledger.is_file() else {}).get("pilot_seconds_per_epoch")
        if budget.seconds is not None and pilot is None:
            pilot = _pilot(s, x, theta, t, cfg, seed)
            atomic_write_json({"pilot_seconds_per_epoch": pilot}, ledger)
        schedule = s["train"].get("schedule") or _build(s, x.shape[1]).default_schedule
        n_epochs = planned_epochs(budget, pilot or 0.0, s["members"], len(segments(schedule, 2)))
        share = None if budget.seconds is None else budget.seconds / s["members"]
        members, unfinished = [], []
        for k in range(s["members"]):
            init, train_seed = member_seeds(torch_seed(seed_sequence(seed, 4, name)), seed, k)
            torch.manual_seed(init)
            model = _build(s, x.shape[1])
            config = TrainConfig(**s["train"], epochs=n_epochs, seed=train_seed, device=cfg.device,
                                 progress=False)
            history = train(model, x, theta, config, run_dir=directory / f"member_{k}", resume=True,
                            score=t, stop=Clock(ledger, k, share))
            last = "+".join(segments(schedule, n_epochs)[-1][0])
            if history[-1]["phases"] != last:  # stopped by the clock before its last phase
                unfinished.append(k)
            members.append(model.cpu())
        save_model(members[0] if len(members) == 1 else Ensemble(members), directory / "final")
        spent = read_json(ledger)["members"]
        seconds = sum(m["seconds"] for m in spent.values())
        epochs = [m["epochs"] for m in spent.values()]
        extra.update(planned_epochs=n_epochs, pilot_seconds_per_epoch=pilot, unfinished_phases=unfinished)
    record = {"key": key, "spec": s, "budget": budget.key, "device": device, "seconds": seconds,
              "epochs": sum(epochs), "member_epochs": epochs,
              "seconds_per_epoch": seconds / max(sum(epochs), 1), **extra}
    atomic_write_json(record, directory / "fit.json")
    return record


def folder(run: Run, name: str, budget: Budget) -> Path:
    """Where estimator ``name`` trains under ``budget``: ``ladder/<budget folder>/<device>/<name>``
    (the flows' device is the run's, ``--device``; sbi's NLE's the cpu)."""
    device = "cpu" if ESTIMATORS[name][0] == "NLE" else run.config.device
    return run.dir / "ladder" / budget.folder / path_name(device.replace(":", "")) / path_name(name)


def load(run: Run, name: str, budget: Budget, theta: np.ndarray, x: np.ndarray, sim: Higgs4l) -> Any:
    """The trained estimator ``name`` (the NLE is rebuilt on its training data: θ and the events
    x (n, 38) in its representation)."""
    directory = folder(run, name, budget) / "final"
    if ESTIMATORS[name][0] == "NLE":
        return load_nle(directory, theta, represent(sim, x, ESTIMATORS[name][1]))[0]
    return load_model(Path(directory)).eval()


def likelihood(name: str, model: Any, sim: Higgs4l, x: np.ndarray) -> Any:
    """Σᵢ log p̂(xᵢ|θ) of a trained estimator for observed events x (n, 38)."""
    xr = represent(sim, x, ESTIMATORS[name][1])
    return NLELikelihood(model, xr) if ESTIMATORS[name][0] == "NLE" else ModelLikelihood(model, xr)
