"""The experiment pipeline behind ``mfinfer run``: simulate -> train -> infer -> evaluate.

One run directory per seed, ``<output_dir>/<name>/seed_<seed>/``::

    config.yaml  seeds.json  log.txt  timings.json
    data/train.npz  data/observed_<k>.npz
    models/<model>/checkpoint.pt ... models/<model>/final/{weights.pt, model.json}
    posteriors/point_<k>/<model>.{npz,json}   (and truth.{npz,json})
    plots/corner_point_<k>.png  metrics.json

``metrics.json`` holds every metric of :mod:`mfinfer.evaluation.registry` that applies;
``timings.json`` the wall seconds of each stage item (simulate, train per model, infer per
posterior and point, evaluate), merged across resumed passes
(:func:`mfinfer.evaluation.report.record_time`).

Every stage writes its outputs atomically and is skipped when they exist, so an interrupted run
resumes at the stage (and training epoch) where it stopped. Re-running with the same config and
seed reproduces ``metrics.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from mfinfer.config import ModelConfig, RunConfig
from mfinfer.evaluation.registry import (
    ModelInputs,
    ObservedInputs,
    PosteriorInputs,
    compute,
    resolve_options,
)
from mfinfer.evaluation.report import METRICS_FILE, TRUTH, record_time, summarize
from mfinfer.inference import ModelLikelihood, Posterior, SimulatorLikelihood
from mfinfer.models import build_model, load_model, save_model
from mfinfer.plotting import corner_plot
from mfinfer.registry import get_simulator
from mfinfer.training import train
from mfinfer.utils import atomic_write, atomic_write_json, read_json

__all__ = ["STAGES", "Run", "path_name", "run_all"]

STAGES = ("simulate", "train", "infer", "evaluate")


def path_name(name: str) -> str:
    """A model name as a file or folder name: path separators become '-'."""
    return name.replace("/", "-").replace("\\", "-")


def _seed(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(keys)))


def _save_npz(path: Path, **arrays: Any) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the 'simulate' stage first")
    with np.load(path, allow_pickle=False) as f:
        return dict(f)


class Run:
    """One seed of an experiment, with its run directory."""

    def __init__(self, config: RunConfig, seed: int, progress: bool = True) -> None:
        self.config, self.seed, self.progress = config, seed, progress
        self.dir = Path(config.output_dir) / config.name / f"seed_{seed}"
        sim = config.simulator
        self.simulator = get_simulator(sim["name"], **sim.get("options", {}))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = logging.getLogger(f"mfinfer.run.{config.name}.{seed}")
        if not self.log.handlers:
            handler = logging.FileHandler(self.dir / "log.txt")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            self.log.addHandler(handler)
            self.log.setLevel(logging.INFO)
        self._write_provenance()

    def _write_provenance(self) -> None:
        cfg_path = self.dir / "config.yaml"
        # the run directory is one seed of one experiment: where it lives and the other seeds
        # don't matter
        record = {k: v for k, v in self.config.to_dict().items()
                  if k not in ("output_dir", "seeds")}
        text = yaml.safe_dump(record, sort_keys=False)
        if cfg_path.exists() and cfg_path.read_text() != text:
            raise ValueError(f"{cfg_path}: this run directory was made with a different config; "
                             "use another name or output_dir, or delete the directory")
        atomic_write(cfg_path, lambda f: f.write(text), "w")
        atomic_write_json({"seed": self.seed, "simulate": [self.seed, 0],
                           "observed": [self.seed, 1, "k"],
                           "model_init": "seed * 1000 + model index",
                           "mcmc": [self.seed, 2, "k", "model index"]},
                          self.dir / "seeds.json")

    # ------------------------------------------------------------------ stages
    def simulate(self) -> None:
        t0, done, todo = time.perf_counter(), 0, 0
        path = self.dir / "data" / "train.npz"
        if not path.exists():
            self.log.info("simulating %d training events", self.config.n_train)
            theta, x = self.simulator.simulate(self.config.n_train, _seed(self.seed, 0))
            _save_npz(path, theta=theta, x=x)
            todo += 1
        else:
            done += 1
        for k, theta_true in enumerate(self.config.observed.theta):
            obs = self.dir / "data" / f"observed_{k}.npz"
            if not obs.exists():
                theta_true = self.simulator.prior.check(np.asarray(theta_true, float),
                                                        "observed.theta")
                x = self.simulator.sample(np.repeat(theta_true, self.config.observed.n_events, 0),
                                          _seed(self.seed, 1, k))
                _save_npz(obs, theta=theta_true[0], x=x)
                todo += 1
            else:
                done += 1
        if todo:  # a pass that finished what an earlier one started adds to its time
            record_time(self.dir, time.perf_counter() - t0, "simulate", add=done > 0)

    def model_dir(self, model: ModelConfig) -> Path:
        return self.dir / "models" / path_name(model.name)

    def train(self, only: str | None = None) -> None:
        data = _load_npz(self.dir / "data" / "train.npz")
        for i, mcfg in enumerate(self.config.models):
            if only is not None and mcfg.name != only:
                continue
            final = self.model_dir(mcfg) / "final"
            if (final / "model.json").exists():
                continue
            self.log.info("training %s", mcfg.name)
            torch.manual_seed(self.seed * 1000 + i)
            model = build_model(mcfg.kind, self.simulator, **mcfg.options)
            t0 = time.perf_counter()
            train(model, data["x"], data["theta"],
                  mcfg.train_config(self.seed, self.config.device, self.progress),
                  run_dir=self.model_dir(mcfg), resume=True)
            save_model(model, final)
            seconds = time.perf_counter() - t0
            record_time(self.dir, seconds, "train", mcfg.name)
            self.log.info("trained %s in %.0f s", mcfg.name, seconds)

    def load(self, mcfg: ModelConfig) -> torch.nn.Module:
        model = load_model(self.model_dir(mcfg) / "final", map_location=self.config.device)
        return model.eval()

    def observed(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        d = _load_npz(self.dir / "data" / f"observed_{k}.npz")
        return d["theta"], d["x"]

    def posterior_path(self, k: int | str, name: str) -> Path:
        return self.dir / "posteriors" / f"point_{k}" / f"{path_name(name)}.npz"

    def infer(self, x_obs: np.ndarray | None = None, tag: str | None = None) -> None:
        """Sample every posterior at every true point (or for the given events, under ``tag``)."""
        points = [(tag or "events", None, x_obs)] if x_obs is not None else [
            (k, *self.observed(k)) for k in range(len(self.config.observed.theta))]
        names = [(TRUTH, None)] if self.config.truth and x_obs is None else []
        names += [(m.name, m) for m in self.config.models]
        for k, theta_true, x in points:
            for j, (name, mcfg) in enumerate(names):
                path = self.posterior_path(k, name)
                if path.exists():
                    continue
                self.log.info("sampling posterior %s at point %s", name, k)
                t0 = time.perf_counter()
                like = SimulatorLikelihood(self.simulator, x) if mcfg is None else \
                    ModelLikelihood(self.load(mcfg), x, mode=mcfg.mode)
                mc = self.config.mcmc
                kseed = k if isinstance(k, int) else 99
                post = Posterior.from_mcmc(
                    like, self.simulator.prior, mc.num_samples, num_walkers=mc.num_walkers,
                    max_steps=mc.max_steps, rng=_seed(self.seed, 2, kseed, j),
                    progress=self.progress, metadata={"model": name, "point": k,
                                                      "theta_true": theta_true, "n_events": len(x)},
                )
                post.save(path)
                record_time(self.dir, time.perf_counter() - t0, "infer", name, str(k))

    def evaluate(self) -> dict:
        """Every registered metric (:mod:`mfinfer.evaluation.registry`) of every model and
        posterior, written to ``metrics.json``, and a corner plot per true point."""
        t0 = time.perf_counter()
        opts = resolve_options(self.config.metrics)
        test_theta, test_x = self.simulator.simulate(opts["n_model_samples"], _seed(self.seed, 3))
        held_out = {m.name: ModelInputs(self.load(m), test_theta, test_x, self.simulator, self.seed,
                                        opts) for m in self.config.models}
        per_model: dict[str, Any] = {name: compute(inputs) for name, inputs in held_out.items()}
        truth = compute(ModelInputs(None, test_theta, test_x, self.simulator, self.seed, opts))
        if truth:
            per_model[TRUTH] = truth
        out: dict[str, Any] = {"seed": self.seed, "models": per_model, "points": []}
        names = ([TRUTH] if self.config.truth else []) + list(held_out)
        for k in range(len(self.config.observed.theta)):
            theta_true, x = self.observed(k)
            samples = {name: Posterior.load(self.posterior_path(k, name)).samples for name in names}
            row: dict[str, Any] = {"theta_true": theta_true.tolist(), "models": {}}
            for name, s in samples.items():
                is_truth = name == TRUTH
                reference = samples[TRUTH] if self.config.truth and not is_truth else None
                r = compute(PosteriorInputs(s, theta_true, reference, self.seed, opts, is_truth))
                if name in held_out:
                    r |= compute(ObservedInputs(held_out[name], x))
                row["models"][name] = r
            out["points"].append(row)
            corner_plot(samples, self.dir / "plots" / f"corner_point_{k}.png", truth=theta_true,
                        labels=getattr(self.simulator, "param_names", None))
        atomic_write_json(out, self.dir / METRICS_FILE)
        record_time(self.dir, time.perf_counter() - t0, "evaluate")
        self.log.info("wrote metrics.json")
        return out

    def run(self, stages: tuple[str, ...] = STAGES) -> dict | None:
        torch.set_num_threads(self.config.threads)
        for stage in stages:
            if stage not in STAGES:
                raise ValueError(f"stage: must be one of {STAGES}, got {stage!r}")
            getattr(self, stage)()
        return read_json(self.dir / METRICS_FILE) if (self.dir / METRICS_FILE).exists() else None


def _run_seed(config: RunConfig, seed: int, stages: tuple[str, ...], progress: bool) -> dict | None:
    return Run(config, seed, progress).run(stages)


def run_all(config: RunConfig, stages: tuple[str, ...] = STAGES, workers: int = 1,
            progress: bool = True, scheduler: str | None = None) -> dict:
    """Run every seed (in parallel dask workers when ``workers > 1`` or a scheduler address is
    given), then write the median summary ``<output_dir>/<name>/summary.json``."""
    seeds = list(config.seeds)
    if workers > 1 or scheduler:
        from dask.distributed import Client, LocalCluster

        cluster = None if scheduler else LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None)
        with Client(scheduler or cluster) as client:
            futures = [client.submit(_run_seed, config, s, stages, False, pure=False)
                       for s in seeds]
            results = client.gather(futures)
        if cluster is not None:
            cluster.close()
    else:
        results = [_run_seed(config, s, stages, progress) for s in seeds]
    summary = summarize([r for r in results if r is not None])
    if summary:
        atomic_write_json(summary, Path(config.output_dir) / config.name / "summary.json")
    return summary
