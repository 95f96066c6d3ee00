"""One calibration task: observation j, simulated and sampled by every model, on a dask worker.

The task draws θ_j from the prior and simulates X_j (``n_events`` events) from
``SeedSequence([seed, SEED_STAGE, j, *words("data")])``; each model's posterior is sampled with
``[seed, SEED_STAGE, j, *words("posterior"), *words(model name)]`` (:mod:`mfinfer.caching`), so
no result depends on the number of workers, the order of the tasks or the other models.

Each (observation, model) writes one small JSON record, atomically, at
``records/<model>/obs_<j>.json``; its ``key`` is the content key of every input (simulator,
seed, j, events, samples, sampler and its options, the model's weights), so a record is reused
only for the same inputs and a task that runs twice (a worker killed after writing) rewrites the
same bytes. Its ``sha256`` is the content key of every other field: a record edited by hand (or
damaged) but with its ``key`` kept fails that check, counts as missing and is computed again.
Workers load trained models from their files (``load_model``, tensors only) once per
process, check them against the SHA-256 the campaign started with, and evaluate them on the CPU
with one torch thread.
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfinfer._validation import path_name
from mfinfer.caching import content_key, json_key, seed_sequence
from mfinfer.calibration.ranks import rank_statistics
from mfinfer.errors import ConfigError
from mfinfer.files import atomic_write_json, json_default, read_json
from mfinfer.inference import LogPosterior, ModelLikelihood, Posterior, SimulatorLikelihood
from mfinfer.models import Flow, load_model
from mfinfer.pipeline import SEED_STAGES
from mfinfer.registry import SimulatorSpec

__all__ = ["RECORD_VERSION", "SEED_STAGE", "ObservationTask", "Source", "record_digest", "run_observation"]

#: The stage code after the seed in every calibration seed sequence.
SEED_STAGE = SEED_STAGES["calibrate"]
#: Enters every record key; raise it when the meaning of a record changes.
RECORD_VERSION = 1

_lock = threading.Lock()
_models: dict[tuple[str, str], Flow] = {}  # per worker process: (directory, SHA-256) -> model
_simulators: dict[str, Any] = {}


@dataclass(frozen=True)
class Source:
    """Where a posterior comes from: ``truth`` (``directory`` None) or a trained model's
    ``final`` directory with the SHA-256 of its weights and its density ``mode``."""

    name: str
    directory: str | None = None
    weights_sha256: str = ""
    mode: str = "manifold"


@dataclass(frozen=True)
class ObservationTask:
    """The settings shared by every observation of a campaign (small: it travels with each task).

    Attributes:
        simulator: ``{"name", "options"}`` of the simulator.
        seed: the campaign's seed.
        n_events, num_samples, method, sampler: see :class:`~mfinfer.calibration.CalibrationConfig`.
        records: absolute path of the ``records`` directory.
    """

    simulator: dict[str, Any]
    seed: int
    n_events: int
    num_samples: int
    method: str
    sampler: dict[str, Any] = field(default_factory=dict)
    records: str = "records"

    def key(self, source: Source, j: int) -> str:
        """The content key of the record of ``source`` at observation ``j``."""
        origin = ({"simulator": self.simulator} if source.directory is None else
                  {"weights_sha256": source.weights_sha256, "mode": source.mode})
        settings = {k: v for k, v in asdict(self).items() if k != "records"}
        return content_key("calibration", {"version": RECORD_VERSION, "settings": settings,
                                           "observation": j, "model": source.name, "origin": origin})

    def path(self, name: str, j: int) -> Path:
        """``records/<model>/obs_<j>.json`` ('/' in the name becomes '-'; the name is checked by
        :func:`mfinfer._validation.path_name`)."""
        return Path(self.records) / path_name(name, "calibration.models") / f"obs_{j:06d}.json"

    def read(self, source: Source, j: int) -> dict[str, Any] | None:
        """The stored record of ``source`` at ``j`` if it has the current key and its content
        matches its ``sha256``; None when missing, damaged, edited or computed from other inputs."""
        try:
            record = read_json(self.path(source.name, j))
        except OSError:
            return None
        if (not isinstance(record, dict) or record.get("key") != self.key(source, j)
                or record.get("sha256") != record_digest(record)):
            return None
        return record

    def is_current(self, source: Source, j: int) -> bool:
        """Whether the stored record of ``source`` at ``j`` is current and intact (:meth:`read`)."""
        return self.read(source, j) is not None

    def rng(self, j: int, *labels: str) -> np.random.Generator:
        return np.random.default_rng(seed_sequence(self.seed, SEED_STAGE, j, *labels))


def record_digest(record: dict[str, Any]) -> str:
    """The content key of a record's fields other than ``sha256``, as they read back from JSON."""
    fields = json.loads(json.dumps({k: v for k, v in record.items() if k != "sha256"},
                                   default=json_default))
    return content_key("calibration record", fields)


def _simulator(spec: dict[str, Any]) -> Any:
    text = json.dumps(spec, sort_keys=True)
    with _lock:
        if text not in _simulators:
            _simulators[text] = SimulatorSpec.from_dict(spec).build()
        return _simulators[text]


def _model(name: str, directory: str, sha256: str) -> Flow:
    """The trained model saved in ``directory``, loaded once per worker process, refused when its
    weights are not those the campaign started with."""
    with _lock:
        if (directory, sha256) not in _models:
            stored = json_key(Path(directory) / "model.json", "sha256", "weights.pt")
            if stored is not None and stored != sha256:
                raise ConfigError(f"{directory}: the weights of {name!r} changed while the campaign "
                                  f"ran (SHA-256 {stored[:12]}…, expected {sha256[:12]}…); run "
                                  "`mfinfer calibrate` again")
            _models[directory, sha256] = load_model(directory, map_location="cpu")
        return _models[directory, sha256]


def _converged(post: Posterior) -> bool | None:
    """The sampler's convergence flag (None where its result reports none)."""
    for attr in ("mcmc", "smc", "grid"):
        result = getattr(post, attr, None)
        if result is not None and hasattr(result, "converged"):
            return bool(result.converged)
    return None


def run_observation(task: ObservationTask, j: int, sources: tuple[Source, ...]) -> int:
    """Simulate observation ``j``, sample the posterior of every source, write their records.

    Returns:
        ``j``.
    """
    torch.set_num_threads(1)
    sim = _simulator(task.simulator)
    prior = sim.prior
    data = task.rng(j, "data")
    theta = prior.sample(1, data)  # (1, p)
    x = sim.sample(np.repeat(theta, task.n_events, axis=0), data)
    reference = prior.sample(1, task.rng(j, "tarp"))[0]
    low, high = prior.bounds
    scale = np.where(np.isfinite(high - low), high - low, 1.0)
    for source in sources:
        like = (SimulatorLikelihood(sim, x) if source.directory is None else
                ModelLikelihood(_model(source.name, source.directory, source.weights_sha256), x,
                                mode=source.mode))
        rng = task.rng(j, "posterior", source.name)
        with warnings.catch_warnings():  # non-convergence goes into the record
            warnings.simplefilter("ignore", UserWarning)
            post = Posterior.from_spec(like, prior, task.num_samples, method=task.method, rng=rng,
                                       progress=False, **task.sampler)
        log_probs = post.log_probs if post.log_probs is not None else post.log_prob(post.samples)
        log_prob_theta = float(LogPosterior(like, prior)(theta)[0])
        record = {"key": task.key(source, j), "model": source.name, "observation": j,
                  "theta": theta[0].tolist(), "num_samples": len(post.samples),
                  **rank_statistics(post.samples, log_probs, theta[0], log_prob_theta, reference, scale),
                  "dap_sample": post.samples[rng.integers(len(post.samples))].tolist(),
                  "converged": _converged(post)}
        atomic_write_json({**record, "sha256": record_digest(record)}, task.path(source.name, j))
    return j
