"""The experiment pipeline behind ``mfinfer run``: simulate -> train -> infer -> evaluate.

One run directory per seed, ``<output_dir>/<name>/seed_<seed>/``::

    config.yaml  seeds.json  log.txt
    data/train.npz  data/observed_<k>.npz
    models/<model>/checkpoint.pt ... models/<model>/final/{weights.pt, model.json}
    posteriors/point_<k>/<model>.{npz,json}   (and truth.{npz,json})
    plots/corner_point_<k>.png  metrics.json

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

from mfinfer import metrics
from mfinfer.config import ModelConfig, RunConfig
from mfinfer.inference import (
    ModelLikelihood,
    Posterior,
    SimulatorLikelihood,
    projection_errors,
)
from mfinfer.plotting import corner_plot
from mfinfer.models import build_model, load_model, save_model
from mfinfer.registry import get_simulator
from mfinfer.training import train
from mfinfer.utils import atomic_write, atomic_write_json, read_json

__all__ = ["Run", "run_all", "summarize", "path_name", "STAGES"]

STAGES = ("simulate", "train", "infer", "evaluate")


def path_name(name: str) -> str:
    """A model name as a file or folder name: path separators become '-'."""
    return name.replace("/", "-").replace("\\", "-")


def _seed(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(keys)))


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
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
        self.simulator = get_simulator(config.simulator["name"], **config.simulator.get("options", {}))
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
        # the run directory is one seed of one experiment: where it lives and the other seeds don't matter
        record = {k: v for k, v in self.config.to_dict().items() if k not in ("output_dir", "seeds")}
        text = yaml.safe_dump(record, sort_keys=False)
        if cfg_path.exists() and cfg_path.read_text() != text:
            raise ValueError(f"{cfg_path}: this run directory was made with a different config; "
                             "use another name or output_dir, or delete the directory")
        atomic_write(cfg_path, lambda f: f.write(text), "w")
        atomic_write_json({"seed": self.seed, "simulate": [self.seed, 0], "observed": [self.seed, 1, "k"],
                           "model_init": "seed * 1000 + model index", "mcmc": [self.seed, 2, "k", "model index"]},
                          self.dir / "seeds.json")

    # ------------------------------------------------------------------ stages
    def simulate(self) -> None:
        path = self.dir / "data" / "train.npz"
        if not path.exists():
            self.log.info("simulating %d training events", self.config.n_train)
            theta, x = self.simulator.simulate(self.config.n_train, _seed(self.seed, 0))
            _save_npz(path, theta=theta, x=x)
        for k, theta_true in enumerate(self.config.observed.theta):
            obs = self.dir / "data" / f"observed_{k}.npz"
            if not obs.exists():
                theta_true = self.simulator.prior.check(np.asarray(theta_true, float), "observed.theta")
                x = self.simulator.sample(np.repeat(theta_true, self.config.observed.n_events, 0), _seed(self.seed, 1, k))
                _save_npz(obs, theta=theta_true[0], x=x)

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
            train(model, data["x"], data["theta"], mcfg.train_config(self.seed, self.config.device, self.progress),
                  run_dir=self.model_dir(mcfg), resume=True)
            save_model(model, final)
            self.log.info("trained %s in %.0f s", mcfg.name, time.perf_counter() - t0)

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
        points = [(tag, None, x_obs)] if x_obs is not None else [
            (k, *self.observed(k)) for k in range(len(self.config.observed.theta))]
        names = [("truth", None)] if self.config.truth and x_obs is None else []
        names += [(m.name, m) for m in self.config.models]
        for k, theta_true, x in points:
            for j, (name, mcfg) in enumerate(names):
                path = self.posterior_path(k, name)
                if path.exists():
                    continue
                self.log.info("sampling posterior %s at point %s", name, k)
                like = SimulatorLikelihood(self.simulator, x) if mcfg is None else \
                    ModelLikelihood(self.load(mcfg), x, mode=mcfg.mode)
                mc = self.config.mcmc
                kseed = k if isinstance(k, int) else 99
                post = Posterior.from_mcmc(
                    like, self.simulator.prior, mc.num_samples, num_walkers=mc.num_walkers,
                    max_steps=mc.max_steps, rng=_seed(self.seed, 2, kseed, j), progress=self.progress,
                    metadata={"model": name, "point": k, "theta_true": theta_true, "n_events": len(x)},
                )
                post.save(path)

    def evaluate(self) -> dict:
        out: dict[str, Any] = {"seed": self.seed, "points": []}
        mcfg_all = {m.name: m for m in self.config.models}
        bw = self.config.metrics.get("kde_bandwidth", 0.15)
        n_model = self.config.metrics.get("n_model_samples", 2000)
        test_theta, test_x = self.simulator.simulate(n_model, _seed(self.seed, 3))
        models = {name: self.load(mcfg) for name, mcfg in mcfg_all.items()}
        per_model: dict[str, Any] = {name: self._model_metrics(model, test_theta, test_x)
                                     for name, model in models.items()}
        try:
            per_model["truth"] = {"test_log_likelihood": float(np.mean(self.simulator.log_likelihood(test_x, test_theta)))}
        except NotImplementedError:
            pass
        out["models"] = per_model
        for k in range(len(self.config.observed.theta)):
            theta_true, x = self.observed(k)
            samples = {name: Posterior.load(self.posterior_path(k, name)).samples
                       for name in (["truth"] if self.config.truth else []) + list(mcfg_all)}
            row: dict[str, Any] = {"theta_true": theta_true.tolist(), "models": {}}
            for name, s in samples.items():
                r = {"log_p_true": metrics.log_prob_at_truth(s, theta_true, bw),
                     **{k2: v.tolist() for k2, v in metrics.bias_and_width(s, theta_true).items()}}
                if self.config.truth and name != "truth":
                    r["mmd2"] = metrics.mmd2(s, samples["truth"])
                    if self.config.metrics.get("c2st", True):
                        r["c2st"] = metrics.c2st(s, samples["truth"], seed=self.seed)
                if name in models:
                    rec = projection_errors(models[name], x)
                    r["observed_reconstruction_error"] = float(rec.mean())
                    r["observed_off_manifold"] = int((rec > per_model[name]["ood_threshold"]).sum())
                row["models"][name] = r
            out["points"].append(row)
            corner_plot(samples, self.dir / "plots" / f"corner_point_{k}.png", truth=theta_true,
                        labels=getattr(self.simulator, "param_names", None))
        atomic_write_json(out, self.dir / "metrics.json")
        self.log.info("wrote metrics.json")
        return out

    def _model_metrics(self, model: torch.nn.Module, theta: np.ndarray, x: np.ndarray) -> dict:
        """Manifold distance of model samples at test θ, mean log p̂(x|θ) and reconstruction error of
        held-out simulations, and the out-of-distribution threshold (99th percentile of that error)."""
        ref = next(model.parameters())
        t = torch.as_tensor(theta, dtype=ref.dtype, device=ref.device)
        with torch.no_grad():
            gen = torch.Generator(device=ref.device).manual_seed(self.seed)
            samples = model.sample(len(theta), t, generator=gen).cpu().numpy()
        rec = projection_errors(model, x)
        log_lik = ModelLikelihood(model, x, cache=False).per_event(theta)
        result = {"reconstruction_error": float(rec.mean()), "ood_threshold": float(np.quantile(rec, 0.99)),
                  "test_log_likelihood": float(np.mean(log_lik))}
        try:
            result["manifold_distance"] = metrics.manifold_distance(self.simulator, samples)
        except NotImplementedError:
            pass
        return result

    def run(self, stages: tuple[str, ...] = STAGES) -> dict | None:
        torch.set_num_threads(self.config.threads)
        for stage in stages:
            if stage not in STAGES:
                raise ValueError(f"stage: must be one of {STAGES}, got {stage!r}")
            getattr(self, stage)()
        return read_json(self.dir / "metrics.json") if (self.dir / "metrics.json").exists() else None


def _run_seed(config: RunConfig, seed: int, stages: tuple[str, ...], progress: bool) -> dict | None:
    return Run(config, seed, progress).run(stages)


def run_all(config: RunConfig, stages: tuple[str, ...] = STAGES, workers: int = 1, progress: bool = True,
            scheduler: str | None = None) -> dict:
    """Run every seed (in parallel dask workers when ``workers > 1`` or a scheduler address is
    given), then write the median summary ``<output_dir>/<name>/summary.json``."""
    seeds = list(config.seeds)
    if workers > 1 or scheduler:
        from dask.distributed import Client, LocalCluster

        cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1,
                                                      processes=True, host="127.0.0.1", dashboard_address=None)
        with Client(scheduler or cluster) as client:
            futures = [client.submit(_run_seed, config, s, stages, False, pure=False) for s in seeds]
            results = client.gather(futures)
        if cluster is not None:
            cluster.close()
    else:
        results = [_run_seed(config, s, stages, progress) for s in seeds]
    summary = summarize([r for r in results if r is not None])
    if summary:
        atomic_write_json(summary, Path(config.output_dir) / config.name / "summary.json")
    return summary


def summarize(results: list[dict]) -> dict:
    """Medians over seeds of every metric: {model: {metric: median}} (posterior metrics averaged
    over the true points within a seed first)."""
    if not results:
        return {}
    table: dict[str, dict[str, list[float]]] = {}
    for res in results:
        for name, vals in res["models"].items():
            for key in ("manifold_distance", "reconstruction_error", "test_log_likelihood"):
                if key in vals:
                    table.setdefault(name, {}).setdefault(key, []).append(vals[key])
        names = res["points"][0]["models"].keys()
        for name in names:
            for key in ("mmd2", "c2st", "log_p_true"):
                vals = [p["models"][name][key] for p in res["points"] if key in p["models"][name]]
                if vals:
                    table.setdefault(name, {}).setdefault(key, []).append(float(np.mean(vals)))
    return {name: {k: float(np.median(v)) for k, v in cols.items()} | {"n_seeds": len(results)}
            for name, cols in table.items()}
