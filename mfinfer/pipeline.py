"""The experiment pipeline behind ``mfinfer run``: simulate -> train -> infer -> evaluate.

One run directory per seed, ``<output_dir>/<name>/seed_<seed>/``::

    config.yaml  seeds.json  log.txt  timings.json
    data/train.npz  data/observed_<k>.npz
    models/<model>/identity.json  models/<model>/checkpoint.pt ...
    models/<model>/final/{weights.pt, model.json}
    posteriors/point_<k>/<model>.{npz,json}   (and truth.{npz,json}; point_<tag>/ for --events)
    models/<model>/gate.json   (the off-manifold gate's threshold, for --events)
    plots/corner_point_<k>.png  metrics.json

Posteriors of user events (``infer(x_obs=...)``, ``mfinfer infer --events``) pass the off-manifold
gate first (:mod:`mfinfer.inference.gate`, settings ``events.gate``): per model, each event is
scored against a threshold from held-out simulations (seed stage ``gate``), the flagged fraction is
recorded in the posterior's JSON (``metadata.gate``) and, when significantly above the expected rate,
reported (``action="report"``), refused (``"strict"``) or the flagged events dropped (``"drop"``).

``metrics.json`` holds every metric of :mod:`mfinfer.evaluation.registry` that applies;
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
  SHA-256 of ``weights.pt``; the simulator config for the truth), ``mode``, ``mcmc``, the seed
  and the (point, model) labels of its MCMC seed;
- ``metrics.json``'s ``inputs_key``: metric options, seed, simulator, true points, posterior keys.

So changing ``mcmc`` re-runs infer and evaluate and keeps the models, changing one model's options
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

import dataclasses
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import yaml

from mfinfer.caching import (
    array_digest,
    canonical,
    content_key,
    json_key,
    npz_key,
    pair_key,
    seed_sequence,
    torch_seed,
)
from mfinfer.config import ModelConfig, RunConfig
from mfinfer.errors import ConfigError
from mfinfer.evaluation.registry import (
    ModelInputs,
    ObservedInputs,
    PosteriorInputs,
    compute,
    resolve_options,
)
from mfinfer.evaluation.report import METRICS_FILE, TRUTH, record_time, summarize
from mfinfer.files import atomic_write, atomic_write_json, clean_temp, read_json, sha256_file
from mfinfer.inference import ModelLikelihood, Posterior, SimulatorLikelihood
from mfinfer.inference.gate import (
    GateAction,
    GateSettings,
    OffManifoldError,
    OffManifoldGate,
    OffManifoldWarning,
)
from mfinfer.models import Flow, build_model, load_model, save_model
from mfinfer.parallel import dask_client
from mfinfer.plotting import corner_plot
from mfinfer.registry import get_simulator
from mfinfer.training import train

__all__ = ["SEED_STAGES", "STAGES", "Run", "path_name", "run_all"]

STAGES = ("simulate", "train", "infer", "evaluate")
#: The stage code that follows the seed in every seed sequence.
SEED_STAGES = {"simulate": 0, "observed": 1, "infer": 2, "evaluate": 3, "train": 4, "gate": 5,
               "calibrate": 6}
IDENTITY = "identity.json"
_NOT_IDENTITY = ("progress", "device")  # TrainConfig fields that do not change the weights


def path_name(name: str) -> str:
    """A model name as a file or folder name: path separators become '-'."""
    return name.replace("/", "-").replace("\\", "-")


def _rng(seed: int, stage: str, *labels: str | int) -> np.random.Generator:
    return np.random.default_rng(seed_sequence(seed, SEED_STAGES[stage], *labels))


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the 'simulate' stage first")
    with np.load(path, allow_pickle=False) as f:
        return dict(f)


class _Job(NamedTuple):
    """One posterior: true point ``k`` (or an events tag), model ``name``, and its content key."""

    k: int | str
    label: str
    theta_true: np.ndarray | None
    x: np.ndarray
    name: str
    model: ModelConfig | None
    path: Path
    key: str
    gate: dict | None = None  # the off-manifold gate's record (user events only)

    def stored_key(self) -> str | None:
        """The content key of the posterior stored at ``path`` (None: none or damaged)."""
        return pair_key(self.path.with_suffix(".json"), self.path.name, "metadata", "key")


class Run:
    """One seed of an experiment, with its run directory."""

    def __init__(self, config: RunConfig, seed: int, progress: bool = True) -> None:
        self.config, self.seed, self.progress = config, seed, progress
        self.dir = Path(config.output_dir) / config.name / f"seed_{seed}"
        sim = config.simulator
        self.simulator = get_simulator(sim["name"], **sim.get("options", {}))
        self.dir.mkdir(parents=True, exist_ok=True)
        for directory, _, _ in os.walk(self.dir):  # temps of writers killed mid-write
            clean_temp(directory)
        self.log = logging.getLogger(f"mfinfer.run.{config.name}.{seed}")
        log_path = os.path.abspath(self.dir / "log.txt")
        for old in list(self.log.handlers):  # one of another output_dir: log here instead
            if getattr(old, "baseFilename", log_path) != log_path:
                self.log.removeHandler(old)
                old.close()
        if not self.log.handlers:
            handler = logging.FileHandler(log_path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            self.log.addHandler(handler)
            self.log.setLevel(logging.INFO)
        self._write_provenance()

    def _write_provenance(self) -> None:
        # the config of the latest pass; where the directory lives and the other seeds don't matter
        record = {k: v for k, v in self.config.to_dict().items() if k not in ("output_dir", "seeds")}
        atomic_write(self.dir / "config.yaml", lambda f: f.write(yaml.safe_dump(record, sort_keys=False)),
                     "w")
        atomic_write_json({
            "seed": self.seed,
            "rule": "numpy.random.SeedSequence([seed, stage code, *labels]); a text label enters as "
                    "the 4 little-endian 32-bit words of the first 16 bytes of its UTF-8 SHA-256 "
                    "(mfinfer.caching.seed_sequence), so no seed depends on a model's position",
            "stage_codes": SEED_STAGES,
            "simulate": [self.seed, 0], "observed": "[seed, 1, k] for true point k",
            "train": "torch.manual_seed(torch_seed(SeedSequence([seed, 4, *words(model name)]))) "
                     "before the model is built; split and batch order from TrainConfig.seed = seed",
            "infer": "[seed, 2, *words('point_<k>' or 'events'), *words(model name or 'truth')]",
            "evaluate": [self.seed, 3],
            "gate": "[seed, 5, *words('reference')] for the reference simulations, [seed, 5, "
                    "*words('theta')] for the prior draws of the score",
            "init_torch_seed": {m.name: self._init_seed(m.name) for m in self.config.models},
        }, self.dir / "seeds.json")

    def _init_seed(self, name: str) -> int:
        return torch_seed(seed_sequence(self.seed, SEED_STAGES["train"], name))

    # ------------------------------------------------------------------ simulate
    def _data_path(self, k: int | None) -> Path:
        return self.dir / "data" / ("train.npz" if k is None else f"observed_{k}.npz")

    def _data_key(self, k: int | None) -> str:
        sim, obs = self.config.simulator, self.config.observed
        if k is None:
            return content_key("simulate", sim, self.seed, self.config.n_train)
        return content_key("observed", sim, self.seed, np.asarray(obs.theta[k], float), obs.n_events, k)

    def _data(self, k: int | None = None) -> dict[str, np.ndarray]:
        """Training data (k None) or observed point k, refused when simulated with other settings."""
        path = self._data_path(k)
        data = _load_npz(path)
        if str(data.get("key")) != self._data_key(k):
            raise ConfigError(f"{path}: simulated with other settings than the config's simulator, "
                              "seed, n_train and observed now give; run the 'simulate' stage first")
        return data

    def simulate(self, force: bool = False) -> None:
        t0, done, todo = time.perf_counter(), 0, 0
        for k in [None, *range(len(self.config.observed.theta))]:
            path, key = self._data_path(k), self._data_key(k)
            if not force and npz_key(path) == key:
                done += 1
                continue
            if k is None:
                self.log.info("simulating %d training events", self.config.n_train)
                theta, x = self.simulator.simulate(self.config.n_train, _rng(self.seed, "simulate"))
            else:
                theta = self.simulator.prior.check(np.asarray(self.config.observed.theta[k], float),
                                                   "observed.theta")
                x = self.simulator.sample(np.repeat(theta, self.config.observed.n_events, 0),
                                          _rng(self.seed, "observed", k))
                theta = theta[0]
            arrays = {"theta": theta, "x": x, "key": np.array(key)}
            atomic_write(path, lambda f: np.savez(f, **arrays))  # noqa: B023 (called at once)
            todo += 1
        if todo:  # a pass that finished what an earlier one started adds to its time
            record_time(self.dir, time.perf_counter() - t0, "simulate", add=done > 0)

    # ------------------------------------------------------------------ train
    def model_dir(self, model: ModelConfig) -> Path:
        return self.dir / "models" / path_name(model.name)

    def _identity(self, mcfg: ModelConfig, data_sha256: str) -> dict:
        settings = dataclasses.asdict(mcfg.train_config(self.seed, self.config.device))
        inputs = canonical({"name": mcfg.name, "kind": mcfg.kind, "options": mcfg.options,
                            "train": {k: v for k, v in settings.items() if k not in _NOT_IDENTITY},
                            "init_torch_seed": self._init_seed(mcfg.name), "data_sha256": data_sha256})
        return {"key": content_key("train", inputs), "inputs": inputs}

    def train(self, only: str | None = None, force: bool = False) -> None:
        names = [m.name for m in self.config.models]
        if only is not None and only not in names:
            raise ConfigError(f"model {only!r}: not in the config; expected one of {names}")
        data = self._data()
        sha = array_digest(data["x"], data["theta"])
        for mcfg in self.config.models:
            if only is not None and mcfg.name != only:
                continue
            directory, identity = self.model_dir(mcfg), self._identity(mcfg, sha)
            fresh = force or json_key(directory / IDENTITY, "key") != identity["key"]
            if not fresh and (directory / "final" / "model.json").exists():
                continue
            if fresh and directory.exists():  # other inputs (or forced): train afresh
                self.log.info("%s: inputs changed or forced; deleting %s", mcfg.name, directory)
                shutil.rmtree(directory)
            atomic_write_json(identity, directory / IDENTITY)
            self.log.info("training %s", mcfg.name)
            torch.manual_seed(self._init_seed(mcfg.name))
            model = build_model(mcfg.kind, self.simulator, **mcfg.options)
            t0 = time.perf_counter()
            train(model, data["x"], data["theta"],
                  mcfg.train_config(self.seed, self.config.device, self.progress),
                  run_dir=directory, resume=True)
            save_model(model, directory / "final")
            seconds = time.perf_counter() - t0
            record_time(self.dir, seconds, "train", mcfg.name)
            self.log.info("trained %s in %.0f s", mcfg.name, seconds)

    def _weights_sha256(self, mcfg: ModelConfig, data_sha256: str) -> str:
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
        model = load_model(self.model_dir(mcfg) / "final", map_location=self.config.device)
        return model.eval()

    # ------------------------------------------------------------------ infer
    def observed(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        d = self._data(k)
        return d["theta"], d["x"]

    def posterior_path(self, k: int | str, name: str) -> Path:
        return self.dir / "posteriors" / f"point_{k}" / f"{path_name(name)}.npz"

    def _jobs(self, x_obs: np.ndarray | None = None, tag: str | None = None,
              gates: dict[str, tuple[np.ndarray, dict]] | None = None) -> list[_Job]:
        """Every posterior to sample, at every true point (or for ``x_obs``), with its content key;
        ``gates`` gives each model's events and gate record (:meth:`gate`)."""
        sha = array_digest(*(self._data()[k] for k in ("x", "theta")))
        mcmc = dataclasses.asdict(self.config.mcmc)
        sources: list[tuple[str, ModelConfig | None, dict]] = []
        if self.config.truth and x_obs is None:
            sources.append((TRUTH, None, {"simulator": self.config.simulator}))
        sources += [(m.name, m, {"weights_sha256": self._weights_sha256(m, sha), "mode": m.mode})
                    for m in self.config.models]
        points: list[tuple[int | str, str, np.ndarray | None, np.ndarray]] = (
            [(tag or "events", "events", None, np.asarray(x_obs))] if x_obs is not None else
            [(k, f"point_{k}", *self.observed(k)) for k in range(len(self.config.observed.theta))])
        jobs = []
        for k, label, theta_true, x in points:
            for name, mcfg, source in sources:
                xs, record = gates[name] if gates and name in gates else (x, None)
                gate = {} if record is None else {"gate": record}
                key = content_key("infer", {"events": array_digest(xs), "model": source, "mcmc": mcmc,
                                            "seed": self.seed, "labels": [label, name], **gate})
                jobs.append(_Job(k, label, theta_true, xs, name, mcfg, self.posterior_path(k, name), key,
                                 record))
        return jobs

    def gate(self, x_obs: np.ndarray, action: GateAction = "report") -> dict[str, tuple[np.ndarray, dict]]:
        """The off-manifold gate of every model on user events x_obs (n, D).

        Returns ``{model name: (events to sample from, gate record)}``: all events, or with
        ``action="drop"`` those not flagged. A flagged fraction significantly above the expected
        rate is logged and warned about (:class:`OffManifoldWarning`); with ``action="strict"`` it
        raises :class:`OffManifoldError` before anything is sampled. Thresholds are stored in
        ``models/<model>/gate.json``, keyed by the model's weights, the settings and the seed.
        """
        if action not in ("report", "drop", "strict"):
            raise ValueError(f"action: must be one of ('report', 'drop', 'strict'), got {action!r}")
        settings = GateSettings(**(self.config.events.gate if self.config.events else {}))
        sha = array_digest(*(self._data()[k] for k in ("x", "theta")))
        reference: dict[str, np.ndarray] = {}  # simulated once, when a model needs it

        def held_out() -> np.ndarray:
            if not reference:
                reference["x"] = self.simulator.simulate(settings.n_reference,
                                                         _rng(self.seed, "gate", "reference"))[1]
            return reference["x"]

        out, excess = {}, []
        for mcfg in self.config.models:
            key = content_key("gate", {"weights_sha256": self._weights_sha256(mcfg, sha), "seed": self.seed,
                                       "settings": dataclasses.asdict(settings),
                                       "simulator": self.config.simulator})
            gate = OffManifoldGate(self.load(mcfg), self.simulator.prior, settings,
                                   rng=_rng(self.seed, "gate", "theta"))
            report = gate.cached(self.model_dir(mcfg) / "gate.json", key, held_out)(x_obs)
            self.log.info("gate: %s", report.message(mcfg.name))
            if report.excess:
                excess.append(report.message(mcfg.name))
            x = x_obs[~report.flagged] if action == "drop" else x_obs
            if len(x) == 0:
                raise OffManifoldError(f"{report.message(mcfg.name)}; every event is flagged, so none is "
                                       "left to sample from: check the events, the events: settings "
                                       "(cuts, momentum convention) and the model")
            out[mcfg.name] = (x, report.summary(action))
        if excess and action == "strict":
            raise OffManifoldError(f"--strict: refusing to sample: {'; '.join(excess)}; check the events "
                                   "and the events: settings, or drop the flagged events with "
                                   "--on-manifold-only")
        for line in excess:
            self.log.warning("gate: %s: significantly above the expected rate", line)
            warnings.warn(f"{line}: significantly above the expected rate; the posterior may be "
                          "biased (drop them with --on-manifold-only / action='drop')",
                          OffManifoldWarning, stacklevel=2)
        return out

    def infer(self, x_obs: np.ndarray | None = None, tag: str | None = None,
              force: bool = False, gate: GateAction = "report") -> None:
        """Sample every posterior at every true point (or for the given events, under ``tag``) whose
        stored content key differs from its inputs' (all of them with ``force``). Given events pass
        the off-manifold gate first (:meth:`gate`, with ``gate`` as its action)."""
        mc = self.config.mcmc
        gates = None if x_obs is None else self.gate(np.asarray(x_obs, dtype=np.float64), gate)
        for job in self._jobs(x_obs, tag, gates):
            if not force and job.stored_key() == job.key:
                continue
            self.log.info("sampling posterior %s at point %s", job.name, job.k)
            t0 = time.perf_counter()
            like = SimulatorLikelihood(self.simulator, job.x) if job.model is None else \
                ModelLikelihood(self.load(job.model), job.x, mode=job.model.mode)
            emcee: dict[str, Any] = {"num_walkers": mc.num_walkers, "max_steps": mc.max_steps}
            post = Posterior.from_mcmc(
                like, self.simulator.prior, mc.num_samples, method=mc.method,
                **(emcee if mc.method == "emcee" else {}),
                rng=_rng(self.seed, "infer", job.label, job.name),
                progress=self.progress, metadata={"model": job.name, "point": job.k,
                                                  "theta_true": job.theta_true,
                                                  "n_events": len(job.x), "key": job.key,
                                                  **({} if job.gate is None else {"gate": job.gate})},
            )
            post.save(job.path)
            record_time(self.dir, time.perf_counter() - t0, "infer", job.name, str(job.k))

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, force: bool = False) -> dict:
        """Every registered metric (:mod:`mfinfer.evaluation.registry`) of every model and
        posterior, written to ``metrics.json``, and a corner plot per true point; the stored
        ``metrics.json`` when its ``inputs_key`` is current (and not ``force``)."""
        opts = resolve_options(self.config.metrics)
        jobs = self._jobs()
        for job in jobs:
            if job.stored_key() != job.key:
                raise ConfigError(f"{job.path}: missing, or sampled with other inputs (events, model "
                                  "weights, mcmc settings or seed) than the config now gives; run the "
                                  "'infer' stage first")
        key = content_key("evaluate", {
            "metrics": opts, "seed": self.seed, "simulator": self.config.simulator,
            "posteriors": [[job.label, job.name, job.key] for job in jobs],
            "theta_true": [array_digest(self.observed(k)[0])
                           for k in range(len(self.config.observed.theta))]})
        path = self.dir / METRICS_FILE
        if not force and json_key(path, "inputs_key") == key:
            return read_json(path)
        t0 = time.perf_counter()
        test_theta, test_x = self.simulator.simulate(opts["n_model_samples"], _rng(self.seed, "evaluate"))
        held_out = {m.name: ModelInputs(self.load(m), test_theta, test_x, self.simulator, self.seed,
                                        opts) for m in self.config.models}
        per_model: dict[str, Any] = {name: compute(inputs) for name, inputs in held_out.items()}
        truth = compute(ModelInputs(None, test_theta, test_x, self.simulator, self.seed, opts))
        if truth:
            per_model[TRUTH] = truth
        out: dict[str, Any] = {"seed": self.seed, "inputs_key": key, "models": per_model, "points": []}
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
                        labels=getattr(self.simulator, "param_names", None), n_events=len(x))
        atomic_write_json(out, path)
        record_time(self.dir, time.perf_counter() - t0, "evaluate")
        self.log.info("wrote metrics.json")
        return out

    def run(self, stages: tuple[str, ...] = STAGES, force: bool = False) -> dict | None:
        """Run ``stages`` in order; ``force`` redoes them even where current results exist."""
        torch.set_num_threads(self.config.threads)
        for stage in stages:
            if stage not in STAGES:
                raise ValueError(f"stage: must be one of {STAGES}, got {stage!r}")
            getattr(self, stage)(force=force)
        return read_json(self.dir / METRICS_FILE) if (self.dir / METRICS_FILE).exists() else None


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
            futures = [client.submit(_run_seed, config, s, stages, False, force, pure=False)
                       for s in seeds]
            results = client.gather(futures)
    else:
        results = [_run_seed(config, s, stages, progress, force) for s in seeds]
    summary = summarize([r for r in results if r is not None])
    if summary:
        atomic_write_json(summary, Path(config.output_dir) / config.name / "summary.json")
    return summary
