"""The experiment pipeline behind ``mfinfer run``: simulate -> train -> infer -> evaluate.

One run directory per seed (:mod:`mfinfer.rundir`: paths, log, provenance, seeds),
``<output_dir>/<name>/seed_<seed>/``::

    config.yaml  seeds.json  log.txt  timings.json
    data/train.npz  data/observed_<k>.npz
    models/<model>/identity.json  models/<model>/checkpoint.pt ...
    models/<model>/final/{weights.pt, model.json}  models/<model>/training.json
    posteriors/point_<k>/<model>.{npz,json}   (and truth.{npz,json}; point_<tag>/ for --events)
    models/<model>/gate.json   (the off-manifold gate's threshold, for --events)
    plots/corner_point_<k>.png  metrics.json

Posteriors are sampled as jobs (:mod:`mfinfer.jobs`). Those of user events (``infer(x_obs=...)``,
``mfinfer infer --events``) pass the off-manifold gate first (:mod:`mfinfer.inference.gate`,
settings ``events.gate``): per model, each event is
scored against a threshold from held-out simulations (seed stage ``gate``), the flagged fraction is
recorded in the posterior's JSON (``metadata.gate``) and, when significantly above the expected rate,
reported (``action="report"``), refused (``"strict"``) or the flagged events dropped (``"drop"``).

``training.json`` holds a trained model's epochs, best validation loss, wall seconds and weights'
path (what ``mfinfer train`` prints). ``metrics.json`` holds every metric of
:mod:`mfinfer.evaluation.registry` that applies;
``timings.json`` the wall seconds of each stage item (simulate, train per model, infer per
posterior and point, evaluate), merged across resumed passes
(:func:`mfinfer.evaluation.report.record_time`).

Results are keyed by content (:mod:`mfinfer.caching`): every output records the content key of
its inputs, and a stage redoes an item only when the key it computes now differs (or ``force``):

- ``data/*.npz`` (array ``key``): simulator config, seed and ``n_train``, or the true point,
  ``observed.n_events`` and ``k``;
- ``models/<model>/identity.json``: the model's name, kind, options, training settings (all but
  ``progress`` and ``device``) and the SHA-256 of the training data; another key deletes the model
  directory and trains afresh (the trainer checks the same on resume, ``train_config.json``);
- a posterior's JSON ``metadata.key``: the events (float64 bytes), the weights (``model.json``'s
  SHA-256 of ``weights.pt``; the simulator config for the truth), ``mode``, ``posterior`` (the
  spec), the seed and the (point, model) labels of its sampler seed;
- ``metrics.json``'s ``inputs_key``: metric options, seed, simulator, true points, posterior keys.

So changing ``posterior`` re-runs infer and evaluate and keeps the models, changing one model's options
retrains that model only, and new events under a used ``--events`` name are sampled again. A stage
run alone refuses stale inputs (``ConfigError`` naming the stage to run first). ``config.yaml`` is
the config of the latest pass, for provenance only.

Seeds come from (seed, stage, point, model name), never from positions in the config
(``seeds.json`` states the rule), so adding, removing or reordering models leaves the others'
weights and posteriors bit-identical. Writes are atomic; an interrupted run resumes at the item
(and training epoch) where it stopped, after removing the temps of dead writers from the whole run
directory (:func:`mfinfer.files.clean_temp`). The same config and seed reproduce ``metrics.json``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfinfer._validation import check_name
from mfinfer.caching import canonical, content_key, json_key, npz_key
from mfinfer.config import ModelConfig, RunConfig
from mfinfer.errors import ConfigError
from mfinfer.evaluation.report import METRICS_FILE, record_time, summarize
from mfinfer.evaluation.stage import evaluate_run
from mfinfer.files import (
    atomic_write,
    atomic_write_json,
    claim_dir,
    locked,
    read_json,
    recorded,
    remove_owned_dir,
    sha256_file,
)
from mfinfer.inference import ModelLikelihood, Posterior, SimulatorLikelihood
from mfinfer.inference.gate import GateAction
from mfinfer.jobs import PosteriorJob, gate_events, posterior_jobs
from mfinfer.models import Flow, build_model, load_model, model_options, save_model
from mfinfer.parallel import dask_client
from mfinfer.registry import SimulatorSpec
from mfinfer.rundir import IDENTITY, SEED_STAGES, RunDirectory, load_npz, path_name
from mfinfer.sources import sample_digest
from mfinfer.training import train_ensemble

__all__ = ["SEED_STAGES", "STAGES", "Run", "path_name", "run_all"]

STAGES = ("simulate", "train", "infer", "evaluate")


class Run(RunDirectory):
    """One seed of an experiment: its stages, in its run directory (:class:`RunDirectory`)."""

    def __init__(self, config: RunConfig, seed: int, progress: bool = True) -> None:
        #: where the training data come from (mfinfer.sources): the simulator or simulations: files
        self.source = config.source
        spec = config.simulator
        self.simulator: Any = None if spec is None else SimulatorSpec.from_dict(spec).build()
        #: what the models are built for: the simulator, or the files' dimensions and prior
        self.spec = self.simulator if self.simulator is not None else self.source.spec
        super().__init__(config, seed)
        self.progress = progress
        #: each model's training settings, built once: the config's with this run's seed and device
        self.train_configs = {m.name: m.train_config(seed, config.device, progress) for m in config.models}

    # ------------------------------------------------------------------ simulate
    @property
    def needs_score(self) -> bool:
        """Whether a model trains on the joint scores (``train: {score_weight: w > 0}``)."""
        return any(c.score_weight > 0 for c in self.train_configs.values())

    def _data_key(self, k: int | None) -> str:
        sim, obs = self.config.simulator, self.config.observed
        if k is None:  # with the joint scores when a model trains on them (same θ and x)
            return content_key("simulate", sim, self.seed, self.config.n_train,
                               *(["score"] if self.needs_score else []))
        return content_key("observed", sim, self.seed, np.asarray(obs.theta[k], float), obs.n_events, k)

    def _data(self, k: int | None = None) -> dict[str, np.ndarray]:
        """Training data (k None) or observed point k, refused when simulated with other settings.
        A run with ``simulations:`` reads its files here, once (cached by content in
        ``<output_dir>/<name>/simulations/``, shared by the seeds)."""
        if k is None and self.config.simulations is not None:
            return self.source.sample(self.dir.parent / "simulations", progress=self.progress, log=self.log)
        path = self.data_path(k)
        data = load_npz(path)
        if str(data.get("key")) != self._data_key(k):
            raise ConfigError(f"{path}: simulated with other settings than the config's simulator, "
                              "seed, n_train and observed now give; run the 'simulate' stage first")
        return data

    @locked
    def simulate(self, force: bool = False) -> int:
        """Simulate the training data and each observed point unless current; returns how many
        files were (re)written."""
        t0, done, todo = time.perf_counter(), 0, 0
        for k in [None, *range(len(self.config.observed.theta))]:
            if k is None and self.config.simulations is not None:
                self._data()  # the files, read unless cached
                continue
            path, key = self.data_path(k), self._data_key(k)
            if not force and npz_key(path) == key:
                done += 1
                continue
            if k is None:
                self.log.info("simulating %d training events", self.config.n_train)
                theta, x, *score = self.simulator.simulate(self.config.n_train, self.rng("simulate"),
                                                          score=self.needs_score)
            else:
                theta = self.simulator.prior.check(np.asarray(self.config.observed.theta[k], float),
                                                   "observed.theta")
                x = self.simulator.sample(np.repeat(theta, self.config.observed.n_events, 0),
                                          self.rng("observed", k))
                theta = theta[0]
            arrays = {"theta": theta, "x": x, "key": np.array(key)}
            if k is None and score:
                arrays["score"] = score[0]
            atomic_write(path, lambda f: np.savez(f, **arrays))  # noqa: B023 (called at once)
            todo += 1
        if todo:  # a pass that finished what an earlier one started adds to its time
            record_time(self.dir, time.perf_counter() - t0, "simulate", add=done > 0)
        return todo

    # ------------------------------------------------------------------ train
    def _identity(self, mcfg: ModelConfig, data_sha256: str) -> dict:
        options = model_options(self.spec, mcfg.options)  # with the prior's θ map
        inputs = canonical({"name": mcfg.name, "kind": mcfg.kind, "options": options,
                            "train": self.train_configs[mcfg.name].identity(),
                            "init_torch_seed": self.init_seed(mcfg.name), "data_sha256": data_sha256,
                            **({"ensemble": mcfg.ensemble} if mcfg.ensemble > 1 else {})})
        return {"key": content_key("train", inputs), "inputs": inputs}

    @locked
    def train(self, only: str | None = None, force: bool = False) -> list[dict[str, Any]]:
        """Train every model (or ``only`` that one) whose stored identity differs from its inputs
        now (all of them with ``force``). Returns one record per model: ``model``, ``trained``
        (False: current, reused), ``epochs``, ``best_val`` (the best validation loss of the last
        training segment), ``seconds`` and ``weights`` (the path of ``weights.pt``), as
        ``models/<model>/training.json`` stores it."""
        names = [m.name for m in self.config.models]
        if only is not None and only not in names:
            raise ConfigError(f"model {only!r}: not in the config; expected one of {names}")
        data = self._data()
        sha = sample_digest(data)
        out = []
        for mcfg in self.config.models:
            if only is not None and mcfg.name != only:
                continue
            directory, identity = self.model_dir(mcfg), self._identity(mcfg, sha)
            fresh = force or json_key(directory / IDENTITY, "key") != identity["key"]
            if not fresh and (directory / "final" / "model.json").exists():
                out.append({**_stored_summary(directory), "model": mcfg.name, "trained": False})
                continue
            if fresh and directory.exists():  # other inputs (or forced): train afresh
                self.log.info("%s: inputs changed or forced; deleting %s", mcfg.name, directory)
                remove_owned_dir(directory, self.dir, legacy=recorded(IDENTITY, "inputs", "name",
                                                                      equals=mcfg.name))
            claim_dir(directory, self.dir)
            atomic_write_json(identity, directory / IDENTITY)
            self.log.info("training %s", mcfg.name)
            t0 = time.perf_counter()
            model, history = train_ensemble(  # one model for ensemble: 1 (the default)
                lambda: build_model(mcfg.kind, self.spec, **mcfg.options), mcfg.ensemble,  # noqa: B023
                data["x"], data["theta"], self.train_configs[mcfg.name], init_seed=self.init_seed(mcfg.name),
                run_dir=directory, resume=True, weights=data.get("weight"), score=data.get("score"))
            save_model(model, directory / "final")
            seconds = time.perf_counter() - t0
            record_time(self.dir, seconds, "train", mcfg.name)
            self.log.info("trained %s in %.0f s", mcfg.name, seconds)
            summary = _training_summary(history, seconds, directory / "final" / "weights.pt")
            atomic_write_json(summary, directory / TRAINING)
            out.append({**summary, "model": mcfg.name, "trained": True})
        return out

    def weights_sha256(self, mcfg: ModelConfig, data_sha256: str) -> str:
        """The SHA-256 of the model's weights, refused when it was trained with other inputs."""
        directory = self.model_dir(mcfg)
        meta = directory / "final" / "model.json"
        if not meta.is_file():
            raise FileNotFoundError(f"{meta}: missing; train {mcfg.name!r} first (the 'train' stage)")
        if json_key(directory / IDENTITY, "key") != self._identity(mcfg, data_sha256)["key"]:
            raise ConfigError(f"{directory}: trained with other settings or data than the config now "
                              f"gives model {mcfg.name!r}; run the 'train' stage to retrain it")
        return json_key(meta, "sha256", "weights.pt") or sha256_file(meta.with_name("weights.pt"))

    def load(self, mcfg: ModelConfig) -> Flow:
        """Model ``mcfg``'s trained weights, in eval mode."""
        model = load_model(self.model_dir(mcfg) / "final", map_location=self.config.device)
        return model.eval()

    # ------------------------------------------------------------------ infer
    def observed(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """True point k's θ* (p,) and observed events x (n_events, D)."""
        d = self._data(k)
        return d["theta"], d["x"]

    def _jobs(self, x_obs: np.ndarray | None = None, tag: str | None = None,
              gates: dict[str, tuple[np.ndarray, dict]] | None = None) -> list[PosteriorJob]:
        return posterior_jobs(self, x_obs, tag, gates)

    def gate(self, x_obs: np.ndarray, action: GateAction = "report") -> dict[str, tuple[np.ndarray, dict]]:
        """The off-manifold gate of every model on user events x_obs (n, D): see
        :func:`mfinfer.jobs.gate_events`."""
        return gate_events(self, x_obs, action)

    @locked
    def infer(self, x_obs: np.ndarray | None = None, tag: str | None = None,
              force: bool = False, gate: GateAction = "report") -> tuple[int, int]:
        """Sample every posterior at every true point (or for the given events, under ``tag``) whose
        stored content key differs from its inputs' (all of them with ``force``). Given events pass
        the off-manifold gate first (:meth:`gate`, with ``gate`` as its action). Returns (number
        sampled, number of posteriors)."""
        if tag is not None:
            check_name(tag, "tag")  # names the folder posteriors/point_<tag>
        gates = None if x_obs is None else self.gate(np.asarray(x_obs, dtype=np.float64), gate)
        jobs, sampled = self._jobs(x_obs, tag, gates), 0
        for job in jobs:
            if not force and job.stored_key() == job.key:
                continue
            sampled += 1
            self.log.info("sampling posterior %s at point %s", job.name, job.k)
            t0 = time.perf_counter()
            like = SimulatorLikelihood(self.simulator, job.x) if job.model is None else \
                ModelLikelihood(self.load(job.model), job.x, mode=job.model.mode)
            post = Posterior.from_spec(
                like, self.source.prior, spec=self.config.posterior,
                rng=self.rng("infer", job.label, job.name),
                progress=self.progress, metadata={"model": job.name, "point": job.k,
                                                  "theta_true": job.theta_true,
                                                  "n_events": len(job.x), "key": job.key,
                                                  **({} if job.gate is None else {"gate": job.gate})},
            )
            post.save(job.path)
            record_time(self.dir, time.perf_counter() - t0, "infer", job.name, str(job.k))
        return sampled, len(jobs)

    # ------------------------------------------------------------------ evaluate
    @locked
    def evaluate(self, force: bool = False) -> dict:
        """Every registered metric (:mod:`mfinfer.evaluation.registry`) of every model and
        posterior, written to ``metrics.json``, and a corner plot per true point; the stored
        ``metrics.json`` when its ``inputs_key`` is current (and not ``force``)."""
        return evaluate_run(self, force)

    @locked
    def run(self, stages: tuple[str, ...] = STAGES, force: bool = False) -> dict | None:
        """Run ``stages`` in order; ``force`` redoes them even where current results exist."""
        torch.set_num_threads(self.config.threads)
        for stage in stages:
            if stage not in STAGES:
                raise ValueError(f"stage: must be one of {STAGES}, got {stage!r}")
            if stage == "evaluate" and self.simulator is None:
                self.log.info("evaluate: skipped (no simulator)")
                continue
            getattr(self, stage)(force=force)
        return read_json(self.dir / METRICS_FILE) if (self.dir / METRICS_FILE).exists() else None


#: A trained model's summary, ``models/<model>/training.json`` (see :meth:`Run.train`).
TRAINING = "training.json"


def _training_summary(history: list[dict], seconds: float, weights: Path) -> dict[str, Any]:
    """Epochs run, the best validation loss of the last segment (NaN without a validation split),
    wall seconds and the weights' path, from :func:`~mfinfer.training.train`'s history."""
    last = [r["val"] for r in history if r["segment"] == history[-1]["segment"]] if history else []
    finite = [v for v in last if math.isfinite(v)]
    return {"epochs": len(history), "best_val": min(finite) if finite else math.nan,
            "seconds": round(seconds, 3), "weights": str(weights)}


def _stored_summary(directory: Path) -> dict[str, Any]:
    """The stored ``training.json`` of a current model (a model trained before it existed: its
    weights' path only)."""
    stored = read_json(directory / TRAINING) if (directory / TRAINING).is_file() else {}
    return {"epochs": None, "best_val": None, "seconds": None, **stored,
            "weights": str(directory / "final" / "weights.pt")}


def _run_seed(config: RunConfig, seed: int, stages: tuple[str, ...], progress: bool,
              force: bool = False) -> dict | None:
    return Run(config, seed, progress).run(stages, force=force)


def run_all(config: RunConfig, stages: tuple[str, ...] = STAGES, workers: int = 1,
            progress: bool = True, scheduler: str | None = None, force: bool = False) -> dict:
    """Run every seed (in parallel dask workers when ``workers > 1`` or a scheduler address is
    given), then write the median summary ``<output_dir>/<name>/summary.json``. ``force`` redoes
    the requested stages even where current results exist."""
    seeds = list(config.seeds)
    if workers > 1 or scheduler:
        with dask_client(workers, scheduler) as client:
            if config.simulations is not None:  # the files once, in parallel, before the seeds
                config.source.sample(Path(config.output_dir) / config.name / "simulations",
                                     client=client, progress=progress)
            futures = [client.submit(_run_seed, config, s, stages, False, force, pure=False)
                       for s in seeds]
            results = client.gather(futures)
    else:
        results = [_run_seed(config, s, stages, progress, force) for s in seeds]
    summary = summarize([r for r in results if r is not None])
    if summary:
        atomic_write_json(summary, Path(config.output_dir) / config.name / "summary.json")
    return summary
