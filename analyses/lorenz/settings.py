"""The Lorenz analysis' settings, its variants of the config, its seeds and where it keeps things
in the run directories."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mfinfer.caching import json_key, seed_sequence, torch_seed
from mfinfer.config import ModelConfig, RunConfig
from mfinfer.files import atomic_write, read_json

#: The snippet variants of the config (the config itself is the "points" variant): their
#: simulator options and number of observed events (snippets per observation).
VARIANTS: dict[str, dict[str, Any]] = {
    "points": {},
    "snippets": {"options": {"observation": "snippets", "noise": 0.0}, "n_events": 10},
    "snippets-noise": {"options": {"observation": "snippets", "noise": 0.5}, "n_events": 10},
}
#: The unconditional experiment at the classic θ (stage 1).
UNCONDITIONAL: dict[str, Any] = {"n_train": 20_000, "n_test": 5000, "n_reference": 50_000,
                                 "models": ("AF", "M-flow"), "grid": 41}
#: The calibration loop (stage 5): observations θ ~ prior, events per observation (points,
#: snippets) and posterior samples per estimator.
CALIBRATION: dict[str, Any] = {"n_obs": 50, "n_events": {"points": 10, "snippets": 10},
                               "num_samples": 500, "levels": (0.68, 0.95),
                               "variants": ("points",)}
#: Stage 4: posterior samples per true point checked for chaos, and the averaging time.
LYAPUNOV: dict[str, Any] = {"per_posterior": 8, "t": 100.0}
NLE = "NLE (sbi)"
#: The true points (indices) where the NLE's posterior is also sampled with sbi's own default
#: MCMC, as its users run it (~7 min of CPU with 100 events: 20 chains, 200 warm-up steps);
#: everywhere else it is sampled by the config's sampler on the same likelihood.
SBI_MCMC_POINTS = (0,)
#: Seed-sequence stage codes of this analysis (the pipeline uses 0-4).
CODES = {"unconditional": 10, "sbi": 11, "extras": 12, "calibrate": 13}
CLASSIC = (10.0, 28.0, 8.0 / 3.0)
PARAMS = ("σ", "ρ", "β")


def variant_configs(cfg: RunConfig) -> dict[str, RunConfig]:
    """The config (variant ``points``) and its snippet variants: only ``simulator.options``,
    ``observed.n_events`` and ``name`` change."""
    out = {}
    for name, change in VARIANTS.items():
        if not change:
            out[name] = cfg
            continue
        sim = {"name": cfg.simulator["name"], "options": change["options"]}
        observed = replace(cfg.observed, n_events=change["n_events"])
        out[name] = replace(cfg, name=f"{cfg.name}-{name}", simulator=sim, observed=observed)
    return out


def estimator_names(cfg: RunConfig) -> list[str]:
    """The config's models and sbi's NLE."""
    return [m.name for m in cfg.models] + [NLE]


def model_config(cfg: RunConfig, name: str) -> ModelConfig | None:
    """The config's model called ``name`` (None for the NLE)."""
    return next((m for m in cfg.models if m.name == name), None)


def conditional_model(cfg: RunConfig) -> ModelConfig | None:
    """The config's M-flow with a θ-dependent manifold, if any."""
    return next((m for m in cfg.models if m.options.get("conditional_manifold")), None)


# ------------------------------------------------------------------ seeds and timing
def stage_rng(seed: int, stage: str, *labels: str | int) -> np.random.Generator:
    """The numpy generator of one item of a stage."""
    return np.random.default_rng(seed_sequence(seed, CODES[stage], *labels))


def stage_torch_seed(seed: int, stage: str, *labels: str | int) -> int:
    """The torch seed of one item of a stage."""
    return torch_seed(seed_sequence(seed, CODES[stage], *labels))


@contextlib.contextmanager
def timer() -> Iterator[dict[str, float]]:
    """Wall and CPU (process) seconds of the block, in the yielded dict."""
    out: dict[str, float] = {}
    w, c = time.perf_counter(), time.process_time()
    yield out
    out["wall_s"], out["cpu_s"] = time.perf_counter() - w, time.process_time() - c


# ------------------------------------------------------------------ run directories
def save_npz(path: Path, **arrays: Any) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def cached(path: Path, key: str) -> dict | None:
    """The JSON result at ``path`` when it was made from inputs with this ``key``."""
    return read_json(path) if json_key(path, "key") == key else None


def open_run(cfg: RunConfig) -> Any:
    """The pipeline's run of a variant (its first seed)."""
    from mfinfer.pipeline import Run

    return Run(cfg, cfg.seeds[0], progress=False)


def run_dir(cfg: RunConfig) -> Path:
    """The pipeline's run directory of a variant (its first seed)."""
    return Path(cfg.output_dir) / cfg.name / f"seed_{cfg.seeds[0]}"


def extras_dir(cfg: RunConfig) -> Path:
    """Where this analysis keeps its own items of a variant, in the pipeline's run directory."""
    return run_dir(cfg) / "extras"


def path_name(name: str) -> str:
    from mfinfer.pipeline import path_name as pn

    return pn(name)


def estimator_weights(cfg: RunConfig, run: Any, name: str) -> Any:
    """The cache key of an estimator's trained weights: the model's ``weights.pt`` hash, or the
    NLE's training key."""
    mcfg = model_config(cfg, name)
    if mcfg is None:
        return json_key(extras_dir(cfg) / "nle" / "train.json", "key")
    return str(json_key(run.model_dir(mcfg) / "final" / "model.json", "sha256", "weights.pt"))


def load_nle(cfg: RunConfig) -> Any:
    """The NLE's density estimator trained by the 'sbi' stage (weights only, rebuilt on the
    variant's training simulations)."""
    from mfinfer.interop.nle import load_nle as load

    directory = extras_dir(cfg) / "nle"
    if not (directory / "weights.pt").is_file():
        raise FileNotFoundError(f"{directory / 'weights.pt'}: missing; run the 'sbi' stage first")
    data = open_run(cfg)._data()
    return load(directory, data["theta"], data["x"])[0]


def posterior_samples(cfg: RunConfig, run: Any, k: int, name: str) -> np.ndarray:
    """Samples of an estimator's posterior at true point k from all its events."""
    from mfinfer.inference import Posterior

    if name == NLE:
        path = extras_dir(cfg) / "posteriors" / f"point_{k}" / f"{path_name(name)}.npz"
        with np.load(path) as f:
            return f["samples"]
    return Posterior.load(run.posterior_path(k, name)).samples
