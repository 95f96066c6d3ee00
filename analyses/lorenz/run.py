"""Lorenz-63: M-flows with θ-dependent and θ-independent manifolds, an AF and sbi's NLE on (σ, ρ, β).

Usage (from the repository root)::

    python analyses/lorenz/run.py                      # every stage, then results.md
    python analyses/lorenz/run.py --stage calibrate    # one stage (those before it must have run)
    python analyses/lorenz/run.py --table-only         # rebuild results.md and the figures

Stages, in order; each keeps what it finished in the run directories, so a killed run resumes
(an item is redone only when its inputs changed: settings, data, model weights):

1. ``unconditional``: the paper's Lorenz experiment. At the classic θ = (10, 28, 8/3), an
   unconditional AF and M-flow (d = 2) with the config's architectures and training settings
   learn ``UNCONDITIONAL["n_train"]`` attractor points. Manifold distance of 5000 model samples =
   mean distance to the nearest of ``n_reference`` simulator points (a k-d tree), reported with
   the same distance for fresh simulator points (the floor that the finite reference set sets);
   reconstruction error = mean |x − project(x)|; the learned manifold decoded on a grid of u.
2. ``pipeline``: ``mfinfer.pipeline.run_all`` (simulate → train → infer → evaluate) for the config
   (points) and the snippet variants of ``VARIANTS``, which change only ``simulator.options``,
   ``observed.n_events`` and the run name: the same models, training and sampler.
3. ``sbi``: sbi 0.27's ``NLE(prior)`` with its default density estimator trained on each
   variant's training simulations (the pipeline's ``data/train.npz``), as its users run it.
4. ``extras``: NLE posteriors at the true points (default ``build_posterior()`` MCMC,
   ``sample((n,), x=x_obs)`` with the events as iid trials); every estimator's posterior from
   the first ``n_events / 10`` events (consistency); manifold distance of model samples at θ*;
   the largest Lyapunov exponent of a subsample of every posterior.
5. ``calibrate``: ``CALIBRATION["n_obs"]`` observations with θ ~ prior, each estimator's
   posterior; coverage of the joint highest-posterior-density (HPD) regions (rank of θ* by the
   estimator's own log posterior among its samples) and of the marginal central intervals.
6. ``ablation``: the θ-dependent M-flow's likelihood plus a Gaussian term for the distance of
   the events from its manifold at θ (which the manifold density ignores), at the true points
   and on the calibration observations (:class:`OffManifoldLikelihood`).
7. ``table``: ``results.json``, ``results.md`` and the figures in ``analyses/lorenz/``.

The table logic is in :func:`results_table`, reading ``results.json``; the notebook reuses it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mfinfer.caching import (  # noqa: E402
    array_digest,
    content_key,
    json_key,
    npz_key,
    seed_sequence,
    torch_seed,
)
from mfinfer.config import ModelConfig, RunConfig, load_config  # noqa: E402
from mfinfer.files import atomic_write, atomic_write_json, read_json  # noqa: E402

__all__ = ["CALIBRATION", "STAGES", "UNCONDITIONAL", "VARIANTS", "coverage", "main",
           "results_table", "variant_configs"]

DEFAULT_CONFIG = "analyses/lorenz/config.yaml"
STAGES = ("unconditional", "pipeline", "sbi", "extras", "calibrate", "ablation", "table")
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
#: results.md keeps everything below this line when the tables above it are rebuilt.
DISCUSSION = "<!-- discussion: written by hand, kept when run.py rebuilds the tables above -->"
#: Seed-sequence stage codes of this script (the pipeline uses 0-4).
CODES = {"unconditional": 10, "sbi": 11, "extras": 12, "calibrate": 13}
CLASSIC = (10.0, 28.0, 8.0 / 3.0)
PARAMS = ("σ", "ρ", "β")


# ------------------------------------------------------------------ helpers
def _rng(seed: int, stage: str, *labels: str | int) -> np.random.Generator:
    return np.random.default_rng(seed_sequence(seed, CODES[stage], *labels))


def _torch_seed(seed: int, stage: str, *labels: str | int) -> int:
    return torch_seed(seed_sequence(seed, CODES[stage], *labels))


@contextlib.contextmanager
def _timer() -> Iterator[dict[str, float]]:
    """Wall and CPU (process) seconds of the block, in the yielded dict."""
    out: dict[str, float] = {}
    w, c = time.perf_counter(), time.process_time()
    yield out
    out["wall_s"], out["cpu_s"] = time.perf_counter() - w, time.process_time() - c


def _save_npz(path: Path, **arrays: Any) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _cached(path: Path, key: str) -> dict | None:
    """The JSON result at ``path`` when it was made from inputs with this ``key``."""
    return read_json(path) if json_key(path, "key") == key else None


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


def _run(cfg: RunConfig) -> Any:
    from mfinfer.pipeline import Run

    return Run(cfg, cfg.seeds[0], progress=False)


def _extras(cfg: RunConfig) -> Path:
    return Path(cfg.output_dir) / cfg.name / f"seed_{cfg.seeds[0]}" / "extras"


def _weights_key(run: Any, mcfg: ModelConfig) -> str:
    return str(json_key(run.model_dir(mcfg) / "final" / "model.json", "sha256", "weights.pt"))


def _estimators(cfg: RunConfig) -> list[str]:
    return [m.name for m in cfg.models] + [NLE]


# ------------------------------------------------------------------ posteriors
class Sampled(NamedTuple):
    """Posterior samples (n, p), their unnormalised log posterior (n,), and the log posterior
    as a function of θ (m, p) -> (m,) of the same normalisation."""

    samples: np.ndarray
    log_post: np.ndarray
    log_post_fn: Callable[[np.ndarray], np.ndarray]
    note: str = ""


def model_posterior(model: Any, x: np.ndarray, prior: Any, n: int, method: str,
                    rng: np.random.Generator) -> Sampled:
    """An mfinfer model's posterior by the config's sampler (``ModelLikelihood``: cached
    projection for a θ-independent manifold, per-θ projection and Jacobian otherwise)."""
    from mfinfer.inference import ModelLikelihood, sample_posterior
    from mfinfer.inference.potential import LogPosterior

    like = model if isinstance(model, NLELikelihood) else ModelLikelihood(model, x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sample_posterior(like, prior, n, method=method, rng=rng, progress=False)
    note = "; ".join(str(w.message)[:120] for w in caught if "sample_" in str(w.message))
    return Sampled(res.samples, res.log_prob, LogPosterior(like, prior), note)


class NLELikelihood:
    """Σ_i log p̂(x_i|θ) of a trained sbi density estimator, θ (m, p) -> (m,) numpy: the NLE's
    likelihood for mfinfer's samplers (the same function sbi's MCMC samples)."""

    def __init__(self, estimator: Any, x: np.ndarray, chunk: int = 16_384) -> None:
        self.estimator, self.chunk = estimator.eval(), chunk
        self.x = torch.as_tensor(x, dtype=torch.float32)

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        rows = torch.as_tensor(np.atleast_2d(theta), dtype=torch.float32)
        n, out = len(self.x), []
        with torch.no_grad():
            for t in rows.split(max(1, self.chunk // n)):
                inputs = self.x[:, None, :].expand(n, len(t), self.x.shape[1])
                out.append(self.estimator.log_prob(inputs, condition=t).sum(0))
        return torch.cat(out).numpy().astype(float)


def _nle_estimator(cfg: RunConfig) -> Any:
    path = _extras(cfg) / "nle" / "estimator.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the 'sbi' stage first")
    return torch.load(path, weights_only=False)  # written by this script (stage sbi)


def _sbi_prior(prior: Any) -> Any:
    from sbi.utils import BoxUniform

    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in prior.bounds)
    return BoxUniform(low, high)


def nle_posterior(estimator: Any, prior: Any, x: np.ndarray, n: int, seed: int) -> Sampled:
    """sbi's default posterior of a trained NLE: ``build_posterior()`` (MCMC,
    slice_np_vectorized, 20 chains) and ``sample((n,), x=x_obs)`` with x_obs (n_events, D)."""
    from sbi.inference import NLE as SbiNLE

    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # sbi's slice sampler draws from numpy's global generator
    post = SbiNLE(_sbi_prior(prior), show_progress_bars=False).build_posterior(estimator)
    xt = torch.as_tensor(x, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = post.sample((n,), x=xt, show_progress_bars=False)
        lp = post.potential(s, x=xt)

    def fn(theta: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = torch.as_tensor(np.atleast_2d(theta), dtype=torch.float32)
            return post.potential(t, x=xt).numpy().astype(float)

    return Sampled(s.numpy().astype(float), lp.numpy().astype(float), fn)


def coverage(ranks: np.ndarray, levels: tuple[float, ...]) -> list[float]:
    """Fraction of observations whose θ* lies inside the level-α region, for each α: a θ* with
    HPD rank r (the share of posterior samples with a higher log posterior) is inside iff r < α;
    a marginal quantile position q is inside the central interval iff |q − ½| < α / 2 (pass
    ``2 |q − ½|``)."""
    ranks = np.asarray(ranks, dtype=float)
    return [float(np.mean(ranks < a)) for a in levels]


def _ranks(s: Sampled, theta_true: np.ndarray) -> dict[str, Any]:
    """HPD rank of θ* and its marginal quantile positions among the samples."""
    lp_true = float(s.log_post_fn(theta_true[None])[0])
    return {"hpd": float(np.mean(s.log_post > lp_true)),
            "marginal": np.mean(s.samples < theta_true, axis=0).tolist()}


def _summary(samples: np.ndarray, theta_true: np.ndarray | None) -> dict[str, Any]:
    out = {"mean": samples.mean(0).tolist(), "std": samples.std(0, ddof=1).tolist(),
           "q": np.quantile(samples, [0.025, 0.16, 0.5, 0.84, 0.975], axis=0).tolist()}
    if theta_true is not None:
        out["bias"] = (samples.mean(0) - theta_true).tolist()
    return out


# ------------------------------------------------------------------ stage 1: unconditional
def _uncond_models(cfg: RunConfig) -> dict[str, ModelConfig]:
    """The config's AF and θ-independent M-flow, made unconditional (no θ map)."""
    by_name = {m.name: m for m in cfg.models}
    out = {}
    for name in UNCONDITIONAL["models"]:
        m = by_name[name]
        options = {k: v for k, v in m.options.items()
                   if k not in ("conditional_manifold", "theta_loc", "theta_scale")}
        out[name] = replace(m, options=options)
    return out


def nn_distance(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point (n, D) to its nearest reference point (m, D), (n,)."""
    from scipy.spatial import cKDTree

    return cKDTree(reference).query(points, k=1)[0]


def stage_unconditional(cfg: RunConfig, progress: bool) -> dict:
    from mfinfer.models import MODELS, load_model, save_model
    from mfinfer.training import train

    seed = cfg.seeds[0]
    root = Path(cfg.output_dir) / f"{cfg.name}-unconditional"
    from mfinfer.registry import get_simulator

    sim = get_simulator("lorenz", observation="points")
    u = UNCONDITIONAL
    key = content_key("unconditional", u["n_train"], u["n_test"], u["n_reference"], seed)
    data_path = root / "data.npz"
    if npz_key(data_path) != key:
        with _timer() as t:
            xs = {part: sim.sample(np.tile(CLASSIC, (u[f"n_{part}"], 1)),
                                   _rng(seed, "unconditional", part))
                  for part in ("train", "test", "reference")}
        _save_npz(data_path, key=np.array(key), seconds=np.array(t["cpu_s"]), **xs)
    with np.load(data_path) as f:
        data = {k: f[k] for k in ("train", "test", "reference")}
    out: dict[str, Any] = {"settings": {k: v for k, v in u.items() if k != "models"},
                           "theta": list(CLASSIC), "models": {}}
    out["floor"] = float(nn_distance(data["test"], data["reference"]).mean())
    grids: dict[str, np.ndarray] = {}
    for name, mcfg in _uncond_models(cfg).items():
        directory = root / "models" / name
        mkey = content_key("uncond-model", key, mcfg.kind, mcfg.options, mcfg.train, seed)
        trained = _cached(directory / "train.json", mkey)
        if trained is None or not (directory / "final" / "model.json").is_file():
            if json_key(directory / "identity.json", "key") != mkey and directory.exists():
                shutil.rmtree(directory)  # trained with other settings: afresh (else: resume)
            atomic_write_json({"key": mkey}, directory / "identity.json")
            torch.manual_seed(_torch_seed(seed, "unconditional", name))
            model = MODELS[mcfg.kind](3, **({"manifold_dim": 2} if mcfg.kind == "ManifoldFlow"
                                             else {}), **mcfg.options)
            with _timer() as t:
                train(model, data["train"], None, mcfg.train_config(seed, "cpu", progress),
                      run_dir=directory, resume=True)
            save_model(model, directory / "final")
            trained = {"key": mkey, "train_wall_s": t["wall_s"], "train_cpu_s": t["cpu_s"]}
            atomic_write_json(trained, directory / "train.json")
        result_path = directory / "result.json"
        rkey = content_key(mkey, u["grid"], "v2")
        result = _cached(result_path, rkey)
        if result is None:
            model = load_model(directory / "final").eval()
            gen = torch.Generator().manual_seed(_torch_seed(seed, "unconditional", name, "sample"))
            samples = model.sample(u["n_test"], generator=gen).numpy().astype(float)
            result = {**trained, "key": rkey,
                      "manifold_distance": float(nn_distance(samples, data["reference"]).mean())}
            if getattr(model, "has_manifold", False):
                err = model.reconstruction_error(data["test"]).numpy()
                result["reconstruction_error"] = float(err.mean())
                result["reconstruction_error_median"] = float(np.median(err))
                uu = model.encode(data["test"])
                lo, hi = np.quantile(uu.numpy(), [0.005, 0.995], axis=0)
                axes = [np.linspace(lo[i], hi[i], u["grid"]) for i in range(2)]
                grid_u = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
                grid_x = model.decode(grid_u).numpy().astype(float)
                # the grid where the learned density lives: log p(u) above the 1st percentile of
                # the test points' (the rest of the rectangle in u is outside the data)
                inside = (model.inner_log_prob(grid_u).numpy()
                          >= np.quantile(model.inner_log_prob(uu).numpy(), 0.01))
                result["grid_distance"] = float(nn_distance(grid_x[inside],
                                                            data["reference"]).mean())
                grid_x[~inside] = np.nan
                _save_npz(directory / "grid.npz", grid_x=grid_x.reshape(u["grid"], u["grid"], 3),
                          samples=samples[:3000])
            else:
                result["reconstruction_error"] = 0.0
                _save_npz(directory / "grid.npz", samples=samples[:3000])
            atomic_write_json(result, result_path)
        out["models"][name] = {k: v for k, v in result.items() if k != "key"}
        with np.load(directory / "grid.npz") as f:
            grids |= {f"{name}/{k}": f[k] for k in f.files}
    _save_npz(root / "figure_data.npz", attractor=data["reference"][:20_000], **grids)
    atomic_write_json(out, root / "summary.json")
    return out


# ------------------------------------------------------------------ stage 3: sbi NLE
def stage_sbi(cfg: RunConfig) -> dict:
    """Train sbi's NLE (its defaults) on the pipeline's training simulations of this variant."""
    from sbi.inference import NLE as SbiNLE

    run = _run(cfg)
    data = run._data()  # refuses data simulated with other settings
    key = content_key("nle", array_digest(data["x"], data["theta"]), cfg.seeds[0])
    directory = _extras(cfg) / "nle"
    done = _cached(directory / "train.json", key)
    if done is not None and (directory / "estimator.pt").is_file():
        return done
    torch.manual_seed(_torch_seed(cfg.seeds[0], "sbi", "train"))
    nle = SbiNLE(_sbi_prior(run.simulator.prior), show_progress_bars=False)
    nle.append_simulations(torch.as_tensor(data["theta"], dtype=torch.float32),
                           torch.as_tensor(data["x"], dtype=torch.float32))
    with _timer() as t:
        estimator = nle.train()
    atomic_write(directory / "estimator.pt", lambda f: torch.save(estimator, f))
    info = {"key": key, "train_wall_s": t["wall_s"], "train_cpu_s": t["cpu_s"],
            "epochs": int(nle.summary["epochs_trained"][-1]),
            "best_validation_loss": float(nle.summary["best_validation_loss"][-1])}
    atomic_write_json(info, directory / "train.json")
    return info


# ------------------------------------------------------------------ stage 4: extras
def _posterior_item(cfg: RunConfig, run: Any, name: str, x: np.ndarray, theta_true: np.ndarray,
                    n: int, label: str, path: Path, nle: Any = None, sbi_mcmc: bool = False) -> dict:
    """One estimator's posterior for events x, cached at ``path`` (.json + .npz): the config's
    sampler on the estimator's likelihood, or for the NLE with ``sbi_mcmc`` sbi's own default
    MCMC."""
    mcfg = next((m for m in cfg.models if m.name == name), None)
    weights = _weights_key(run, mcfg) if mcfg else json_key(_extras(cfg) / "nle" / "train.json",
                                                             "key")
    sampler = "sbi-default-mcmc" if sbi_mcmc else cfg.mcmc.method
    key = content_key("posterior", name, weights, array_digest(x), n, sampler, label,
                      cfg.seeds[0])
    done = _cached(path.with_suffix(".json"), key)
    if done is not None and path.with_suffix(".npz").is_file():
        return done
    prior = run.simulator.prior
    with _timer() as t:
        if sbi_mcmc:
            s = nle_posterior(nle, prior, x, n, _torch_seed(cfg.seeds[0], "extras", label, name))
        else:
            model = run.load(mcfg) if mcfg is not None else NLELikelihood(nle, x)
            s = model_posterior(model, x, prior, n, cfg.mcmc.method,
                                _rng(cfg.seeds[0], "extras", label, name))
    info = {"key": key, "n_events": len(x), "sampler": sampler, **_summary(s.samples, theta_true),
            **_ranks(s, theta_true), "wall_s": t["wall_s"], "cpu_s": t["cpu_s"], "note": s.note}
    _save_npz(path.with_suffix(".npz"), samples=s.samples)
    atomic_write_json(info, path.with_suffix(".json"))
    return info


def _model_samples(cfg: RunConfig, run: Any, name: str, theta: np.ndarray, n: int,
                   nle: Any) -> np.ndarray:
    """n samples x ~ p̂(x|θ*) of an estimator, (n, D)."""
    gen_seed = _torch_seed(cfg.seeds[0], "extras", "samples", name)
    if name == NLE:
        torch.manual_seed(gen_seed)
        cond = torch.as_tensor(theta[None], dtype=torch.float32)
        with torch.no_grad():
            return nle.sample((n,), condition=cond)[:, 0].numpy().astype(float)
    model = run.load(next(m for m in cfg.models if m.name == name))
    gen = torch.Generator().manual_seed(gen_seed)
    return model.sample(n, torch.as_tensor(theta), generator=gen).numpy().astype(float)


def stage_extras(cfg: RunConfig, variant: str) -> dict:
    """NLE posteriors at the true points, consistency posteriors from n/10 events, manifold
    distance of samples at θ*, reconstruction error of the observed events."""
    run = _run(cfg)
    nle = _nle_estimator(cfg)
    sim = run.simulator
    seed = cfg.seeds[0]
    n = cfg.mcmc.num_samples
    out: dict[str, Any] = {"points": []}
    for k in range(len(cfg.observed.theta)):
        theta_true, x = run.observed(k)
        few = max(1, len(x) // 10)
        point: dict[str, Any] = {"theta_true": theta_true.tolist(), "n_events": len(x),
                                 "few_events": few, "estimators": {}}
        reference = None
        if sim.observation == "points":  # the attractor at θ*: simulator points (k-d tree)
            ref_path = _extras(cfg) / f"reference_{k}.npz"
            rkey = content_key("reference", theta_true, UNCONDITIONAL["n_reference"], seed, k)
            if npz_key(ref_path) != rkey:
                ref = sim.sample(np.tile(theta_true, (UNCONDITIONAL["n_reference"], 1)),
                                 _rng(seed, "extras", "reference", k))
                fresh = sim.sample(np.tile(theta_true, (2000, 1)), _rng(seed, "extras", "fresh", k))
                _save_npz(ref_path, key=np.array(rkey), reference=ref, fresh=fresh)
            with np.load(ref_path) as f:
                reference = f["reference"]
                point["distance_floor"] = float(nn_distance(f["fresh"], reference).mean())
        for name in _estimators(cfg):
            entry: dict[str, Any] = {}
            base = _extras(cfg) / "posteriors" / f"point_{k}"
            if name == NLE:  # SMC on the NLE's likelihood; sbi's own MCMC at SBI_MCMC_POINTS
                entry["full"] = _posterior_item(cfg, run, name, x, theta_true, n, f"point_{k}",
                                                base / path_name(name), nle)
                if k in SBI_MCMC_POINTS:
                    entry["sbi_mcmc"] = _posterior_item(
                        cfg, run, name, x, theta_true, n, f"point_{k}",
                        base / f"{path_name(name)}_sbi_mcmc", nle, sbi_mcmc=True)
            entry["few"] = _posterior_item(cfg, run, name, x[:few], theta_true, n,
                                           f"point_{k}_few", base / f"{path_name(name)}_few", nle)
            dist_path = base / f"{path_name(name)}_distance.json"
            weights = (_weights_key(run, next(m for m in cfg.models if m.name == name))
                       if name != NLE else json_key(_extras(cfg) / "nle" / "train.json", "key"))
            dkey = content_key("distance", name, weights, theta_true, seed, "v2")
            dist = _cached(dist_path, dkey)
            if dist is None:
                xs = _model_samples(cfg, run, name, theta_true, 2000, nle)
                dist = {"key": dkey}
                if reference is not None:
                    dist["manifold_distance"] = float(nn_distance(xs, reference).mean())
                else:
                    d = sim.distance_to_manifold(xs, np.tile(theta_true, (len(xs), 1)))
                    dist["manifold_distance"] = float(d.mean())
                mcfg = next((m for m in cfg.models if m.name == name), None)
                if mcfg is not None:
                    model = run.load(mcfg)
                    err = model.reconstruction_error(x, np.tile(theta_true, (len(x), 1)))
                    dist["observed_reconstruction_error"] = float(err.mean())
                atomic_write_json(dist, dist_path)
            entry |= {k2: v for k2, v in dist.items() if k2 != "key"}
            point["estimators"][name] = entry
        out["points"].append(point)
    out["lyapunov"] = _lyapunov(cfg, run, variant)
    cond = next((m for m in cfg.models if m.options.get("conditional_manifold")), None)
    if cond is not None:
        out["scan"] = {"model": cond.name, "rows": _offmanifold_scan(run, cond)}
    atomic_write_json(out, _extras(cfg) / "extras.json")
    return out


def _offmanifold_scan(run: Any, mcfg: ModelConfig, steps: int = 5) -> list[dict]:
    """At the first true point, one parameter at a time moved over ±0.8 of the prior's
    half-width: the θ-dependent manifold's mean distance |x − project_θ(x)| of the observed
    events, and its log-likelihood Σ_i log p̂(x_i|θ) (which does not see that distance)."""
    from mfinfer.inference import ModelLikelihood

    theta_true, x = run.observed(0)
    model = run.load(mcfg)
    like = ModelLikelihood(model, x)
    low, high = run.simulator.prior.bounds
    rows = []
    for j in range(len(theta_true)):
        for frac in np.linspace(-0.8, 0.8, steps):
            t = theta_true.copy()
            t[j] += frac * (high[j] - low[j]) / 2
            err = model.reconstruction_error(x, np.tile(t, (len(x), 1))).numpy()
            rows.append({"param": j, "delta": float(t[j] - theta_true[j]),
                         "distance": float(err.mean()), "log_like": float(like(t[None])[0])})
    return rows


def path_name(name: str) -> str:
    from mfinfer.pipeline import path_name as pn

    return pn(name)


def _posterior_samples(cfg: RunConfig, run: Any, k: int, name: str) -> np.ndarray:
    """Samples of an estimator's posterior at true point k from all its events."""
    from mfinfer.inference import Posterior

    if name == NLE:
        path = _extras(cfg) / "posteriors" / f"point_{k}" / f"{path_name(name)}.npz"
        with np.load(path) as f:
            return f["samples"]
    return Posterior.load(run.posterior_path(k, name)).samples


def _lyapunov(cfg: RunConfig, run: Any, variant: str) -> dict:
    """Largest Lyapunov exponent of ``LYAPUNOV["per_posterior"]`` samples of each posterior at
    the true points (all in one vectorized integration)."""
    from simulators.lorenz import largest_lyapunov

    rng = _rng(cfg.seeds[0], "extras", "lyapunov", variant)
    rows, labels, inside = [], [], {}
    for k in range(len(cfg.observed.theta)):
        for name in _estimators(cfg):
            s = _posterior_samples(cfg, run, k, name)
            inside.setdefault(name, []).append(run.simulator.prior.contains(s))
            rows.append(s[rng.choice(len(s), LYAPUNOV["per_posterior"], replace=False)])
            labels += [name] * LYAPUNOV["per_posterior"]
    theta = np.concatenate(rows)
    key = content_key("lyapunov", array_digest(theta), LYAPUNOV)
    path = _extras(cfg) / "lyapunov.json"
    done = _cached(path, key)
    if done is None:
        lam = largest_lyapunov(theta, t=LYAPUNOV["t"], rng=rng)
        done = {"key": key, "lambda": lam.tolist(), "labels": labels}
        atomic_write_json(done, path)
    lam, labels = np.asarray(done["lambda"]), done["labels"]
    return {name: {"min": float(lam[[lb == name for lb in labels]].min()),
                   "fraction_chaotic": float(np.mean(lam[[lb == name for lb in labels]] > 0)),
                   "fraction_in_box": float(np.mean(np.concatenate(inside[name])))}
            for name in dict.fromkeys(labels)}


# ------------------------------------------------------------------ stage 5: calibration
def _cal_events(variant: str) -> int:
    return CALIBRATION["n_events"]["points" if variant == "points" else "snippets"]


def stage_calibrate(cfg: RunConfig, variant: str, n_obs: int | None = None) -> dict:
    """Posteriors of every estimator for ``n_obs`` observations θ_k ~ prior; HPD ranks and
    marginal quantile positions of θ_k, one JSON file per observation and estimator."""
    run = _run(cfg)
    sim, seed = run.simulator, cfg.seeds[0]
    n_obs = n_obs or CALIBRATION["n_obs"]
    n_events = _cal_events(variant)
    directory = _extras(cfg) / "calibration"
    okey = content_key("cal-observations", cfg.simulator, n_obs, n_events, seed)
    obs_path = directory / "observations.npz"
    if npz_key(obs_path) != okey:
        rng = _rng(seed, "calibrate", "observations")
        theta = sim.prior.sample(n_obs, rng)
        x = sim.sample(np.repeat(theta, n_events, axis=0), rng).reshape(n_obs, n_events, -1)
        _save_npz(obs_path, key=np.array(okey), theta=theta, x=x)
    with np.load(obs_path) as f:
        theta_all, x_all = f["theta"], f["x"]
    nle = _nle_estimator(cfg)
    results: dict[str, list[dict]] = {name: [] for name in _estimators(cfg)}
    for j in range(n_obs):
        for name in _estimators(cfg):
            path = directory / path_name(name) / f"obs_{j:03d}"
            info = _posterior_item(cfg, run, name, x_all[j], theta_all[j],
                                   CALIBRATION["num_samples"], f"cal_{j}", path, nle)
            results[name].append(info)
    summary: dict[str, Any] = {"n_obs": n_obs, "n_events": n_events,
                               "num_samples": CALIBRATION["num_samples"], "estimators": {}}
    low, high = sim.prior.bounds
    for name, infos in results.items():
        hpd = np.array([i["hpd"] for i in infos])
        marg = np.array([i["marginal"] for i in infos])  # (n_obs, p)
        std = np.array([i["std"] for i in infos]) / (high - low)
        summary["estimators"][name] = {
            "hpd_coverage": coverage(hpd, CALIBRATION["levels"]),
            "marginal_coverage": [coverage(2 * np.abs(marg[:, j] - 0.5), CALIBRATION["levels"])
                                  for j in range(marg.shape[1])],
            "hpd_ranks": hpd.tolist(),
            "relative_width": std.mean(0).tolist(),
            "wall_s": float(np.mean([i["wall_s"] for i in infos])),
            "cpu_s": float(np.mean([i["cpu_s"] for i in infos])),
            "unconverged": sum(bool(i["note"]) for i in infos),
        }
    atomic_write_json(summary, directory / "summary.json")
    return summary


# ------------------------------------------------------------------ stage 6: ablation
class OffManifoldLikelihood:
    """A θ-dependent M-flow's likelihood plus the off-manifold distance it ignores:
    Σ_i [log p̂(x_i|θ) + log N_{D−d}(x_i − project_θ(x_i); 0, s² I)], θ (m, p) -> (m,).

    Not an M-flow density: the M-flow's manifold density times a Gaussian of fixed width s in the
    D − d normal directions (a noisy-manifold model); s² is the mean squared distance of held-out
    simulations from the learned manifold at their own θ, per normal direction."""

    def __init__(self, model: Any, x: np.ndarray, s2: float, chunk: int = 16_384) -> None:
        from mfinfer.inference import ModelLikelihood

        self.base, self.model, self.s2, self.chunk = ModelLikelihood(model, x), model, s2, chunk
        self.x = self.base.x
        self.k = model.data_dim - model.manifold_dim

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        rows = torch.as_tensor(np.atleast_2d(theta), dtype=self.x.dtype)
        n, out = len(self.x), []
        for t in rows.split(max(1, self.chunk // n)):
            x_rep, t_rep = self.x.repeat(len(t), 1), t.repeat_interleave(n, dim=0)
            r2 = ((self.model.project(x_rep, t_rep) - x_rep) ** 2).sum(1)
            lp = -0.5 * r2 / self.s2 - 0.5 * self.k * np.log(2 * np.pi * self.s2)
            out.append(lp.reshape(len(t), n).sum(1))
        return self.base(theta) + torch.cat(out).numpy().astype(float)


ABLATION = "M-flow (conditional manifold) + off-manifold Gaussian"


def stage_ablation(cfg: RunConfig, variant: str) -> dict:
    """The θ-dependent M-flow with :class:`OffManifoldLikelihood`: posteriors at the true points
    and on the calibration observations (same sampler and seeds' rule)."""
    from mfinfer.inference import sample_posterior
    from mfinfer.inference.potential import LogPosterior

    run = _run(cfg)
    mcfg = next((m for m in cfg.models if m.options.get("conditional_manifold")), None)
    if mcfg is None:
        return {}
    model, seed, prior = run.load(mcfg), cfg.seeds[0], run.simulator.prior
    theta, x = run.simulator.simulate(2000, _rng(seed, "extras", "ablation"))
    err = model.reconstruction_error(x, theta).numpy()
    s2 = float(np.mean(err**2) / (model.data_dim - model.manifold_dim))
    weights = _weights_key(run, mcfg)
    directory = _extras(cfg) / "ablation"

    def item(xs: np.ndarray, theta_true: np.ndarray, n: int, label: str) -> dict:
        key = content_key("ablation", weights, s2, array_digest(xs), n, cfg.mcmc.method, label,
                          seed)
        path = directory / f"{label}.json"
        done = _cached(path, key)
        if done is not None:
            return done
        like = OffManifoldLikelihood(model, xs, s2)
        with _timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sample_posterior(like, prior, n, method=cfg.mcmc.method, progress=False,
                                   rng=_rng(seed, "extras", label, ABLATION))
        s = Sampled(res.samples, res.log_prob, LogPosterior(like, prior))
        info = {"key": key, "n_events": len(xs), **_summary(s.samples, theta_true),
                **_ranks(s, theta_true), "wall_s": t["wall_s"], "cpu_s": t["cpu_s"]}
        atomic_write_json(info, path)
        return info

    out: dict[str, Any] = {"estimator": ABLATION, "s": float(np.sqrt(s2)), "points": [],
                           "calibration": []}
    for k in range(len(cfg.observed.theta)):
        theta_true, xk = run.observed(k)
        out["points"].append(item(xk, theta_true, cfg.mcmc.num_samples, f"point_{k}"))
    with np.load(_extras(cfg) / "calibration" / "observations.npz") as f:
        cal_theta, cal_x = f["theta"], f["x"]
    infos = [item(cal_x[j], cal_theta[j], CALIBRATION["num_samples"], f"cal_{j}")
             for j in range(len(cal_theta))]
    low, high = prior.bounds
    marg = np.array([i["marginal"] for i in infos])
    out["calibration"] = {
        "hpd_coverage": coverage(np.array([i["hpd"] for i in infos]), CALIBRATION["levels"]),
        "hpd_ranks": [i["hpd"] for i in infos],
        "marginal_coverage": [coverage(2 * np.abs(marg[:, j] - 0.5), CALIBRATION["levels"])
                              for j in range(marg.shape[1])],
        "relative_width": (np.array([i["std"] for i in infos]) / (high - low)).mean(0).tolist(),
        "wall_s": float(np.mean([i["wall_s"] for i in infos])), "n_obs": len(infos)}
    atomic_write_json(out, directory / "summary.json")
    return out


# ------------------------------------------------------------------ stage 7: results
def collect(cfgs: dict[str, RunConfig], uncond_root: Path) -> dict:
    """Everything the table and the notebook need, from the run directories."""
    from mfinfer.evaluation.report import read_timings, stage_seconds

    out: dict[str, Any] = {"variants": {}}
    path = uncond_root / "summary.json"
    if path.is_file():
        out["unconditional"] = read_json(path)
    for variant, cfg in cfgs.items():
        run_dir = Path(cfg.output_dir) / cfg.name / f"seed_{cfg.seeds[0]}"
        if not (run_dir / "metrics.json").is_file():
            continue
        metrics = read_json(run_dir / "metrics.json")
        entry: dict[str, Any] = {"name": cfg.name, "simulator": cfg.simulator,
                                 "n_events": cfg.observed.n_events, "n_train": cfg.n_train,
                                 "metrics": metrics,
                                 "timings": stage_seconds(read_timings(run_dir))}
        run = _run(cfg)
        entry["pipeline_posteriors"] = {}
        for k in range(len(cfg.observed.theta)):
            theta_true = np.asarray(cfg.observed.theta[k])
            entry["pipeline_posteriors"][k] = {
                m.name: _summary(_posterior_samples(cfg, run, k, m.name), theta_true)
                for m in cfg.models}
        for part in ("extras.json", "nle/train.json", "calibration/summary.json",
                     "ablation/summary.json"):
            p = _extras(cfg) / part
            if p.is_file():
                entry[part.split("/")[0].removesuffix(".json")] = read_json(p)
        out["variants"][variant] = entry
    return out


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _vec(v: Any, digits: int = 2) -> str:
    return "(" + ", ".join(_fmt(a, digits) for a in v) + ")" if v is not None else "–"


def target_check(results: dict) -> tuple[bool, list[str]]:
    """The target on points: the θ-dependent M-flow is calibrated (68 % and 95 % HPD coverage
    within ±5 %) and narrower than every other calibrated estimator, the θ-independent M-flow
    and the AF among them or miscalibrated."""
    cal = results["variants"].get("points", {}).get("calibration")
    if not cal:
        return False, ["- no calibration results for points yet."]
    levels = CALIBRATION["levels"]
    lines, calibrated, width = [], {}, {}
    for name, e in cal["estimators"].items():
        calibrated[name] = all(abs(c - a) <= 0.05 for c, a in zip(e["hpd_coverage"], levels,
                                                                   strict=True))
        width[name] = float(np.exp(np.mean(np.log(e["relative_width"]))))
        lines.append(f"- {name}: HPD coverage {_vec(e['hpd_coverage'])} at {_vec(levels)} → "
                     f"{'calibrated' if calibrated[name] else 'not calibrated'} (±5 %); mean "
                     f"posterior width {width[name]:.4f} of the prior box (geometric mean over "
                     "σ, ρ, β)")
    cond = next((n for n in cal["estimators"] if "cond" in n), None)
    if cond is None:
        return False, lines
    others = [n for n in cal["estimators"] if n != cond]
    met = calibrated[cond] and all(not calibrated[n] or width[cond] < width[n] for n in others)
    return met, lines


def results_table(results: dict, command: str | None = None) -> str:
    """The Markdown results from :func:`collect`'s dictionary."""
    lines = ["# Lorenz-63: inference on (σ, ρ, β) with θ-dependent manifolds", ""]
    un = results.get("unconditional")
    if un:
        s = un["settings"]
        lines += ["## The paper's unconditional experiment (θ = (10, 28, 8/3))", "",
                  (f"{s['n_train']} attractor points for training; manifold distance of "
                   f"{s['n_test']} model samples = mean distance to the nearest of "
                   f"{s['n_reference']} simulator points (state units); the same for "
                   f"{s['n_test']} fresh simulator points, the floor of this measure, is "
                   f"**{un['floor']:.3f}**. Reconstruction error: mean |x − project(x)| of "
                   f"{s['n_test']} test points. Figure: `unconditional_manifold.png`."), "",
                  "| model | manifold distance of samples ↓ | reconstruction error ↓ | "
                  "distance of the decoded u-grid (where p(u) is above its 1st percentile on test "
                  "points) | train wall [s] |", "|---|---|---|---|---|"]
        for name, m in un["models"].items():
            lines.append(f"| {name} | {_fmt(m['manifold_distance'], 3)} | "
                         f"{_fmt(m.get('reconstruction_error'), 3)} | "
                         f"{_fmt(m.get('grid_distance'), 3)} | {m['train_wall_s']:.0f} |")
        lines.append("")
    for variant, v in results["variants"].items():
        lines += _variant_lines(variant, v)
    met, check = target_check(results)
    lines += ["## Target (points)", "",
              ("The θ-dependent M-flow gives the narrowest posteriors that are still calibrated "
               f"and beats the θ-independent M-flow and the AF: **{'met' if met else 'not met'}**."),
              "", *check, ""]
    if command:
        lines += [f"Produced by `{command}`."]
    return "\n".join(lines) + "\n"


def _variant_lines(variant: str, v: dict) -> list[str]:
    sim = v["simulator"].get("options", {})
    ex = v.get("extras", {})
    lines = [f"## {variant}: {json.dumps(sim)}, {v['n_events']} events per observation", "",
             f"{v['n_train']} training simulations at θ ~ prior (the same for every estimator).",
             ""]
    names = [*v["pipeline_posteriors"][next(iter(v["pipeline_posteriors"]))], NLE]
    for k, point in v["pipeline_posteriors"].items():
        e = ex["points"][int(k)] if ex else {}
        theta = e.get("theta_true") or v["metrics"]["points"][int(k)]["theta_true"]
        few = e.get("few_events", "n/10")
        lines += [f"### θ* = {_vec(theta, 3)}", "",
                  f"| estimator | mean | std | bias / std | std from {few} events | "
                  "width ratio few / all | manifold distance of samples at θ* ↓ |",
                  "|---|---|---|---|---|---|---|"]
        for name in names:
            est = (e.get("estimators") or {}).get(name, {})
            full = point.get(name) or est.get("full")
            if full is None:
                continue
            pull = np.asarray(full["bias"]) / np.asarray(full["std"])
            fs = (est.get("few") or {}).get("std")
            ratio = np.asarray(fs) / np.asarray(full["std"]) if fs else None
            lines.append(f"| {name} | {_vec(full['mean'], 3)} | {_vec(full['std'], 3)} | "
                         f"{_vec(pull)} | {_vec(fs, 3)} | {_vec(ratio, 1)} | "
                         f"{_fmt(est.get('manifold_distance'), 3)} |")
            mc = est.get("sbi_mcmc")
            if mc:  # the same NLE likelihood sampled by sbi's default MCMC
                lines.append(f"| {name}, sbi's default MCMC ({mc['wall_s']:.0f} s wall, "
                             f"{mc['cpu_s']:.0f} s CPU; SMC above: {full['wall_s']:.0f} s, "
                             f"{full['cpu_s']:.0f} s) | {_vec(mc['mean'], 3)} | "
                             f"{_vec(mc['std'], 3)} | "
                             f"{_vec(np.asarray(mc['bias']) / np.asarray(mc['std']))} | | | |")
        if "distance_floor" in e:
            lines.append(f"| simulator (floor) | | | | | | {e['distance_floor']:.3f} |")
        lines.append("")
    cal = v.get("calibration")
    if cal:
        lines += [f"### Calibration: {cal['n_obs']} observations θ ~ prior, {cal['n_events']} "
                  f"events each, {cal['num_samples']} samples per posterior", "",
                  "| estimator | HPD coverage 68 % / 95 % | marginal central coverage 68 % "
                  "(σ, ρ, β) | 95 % (σ, ρ, β) | mean std / prior width (σ, ρ, β) | "
                  "posterior wall [s] | unconverged |", "|---|---|---|---|---|---|---|"]
        for name, c in cal["estimators"].items():
            m68 = [c["marginal_coverage"][j][0] for j in range(3)]
            m95 = [c["marginal_coverage"][j][1] for j in range(3)]
            lines.append(f"| {name} | {_vec(c['hpd_coverage'])} | {_vec(m68)} | {_vec(m95)} | "
                         f"{_vec(c['relative_width'], 3)} | {c['wall_s']:.1f} | "
                         f"{c['unconverged']} |")
        lines.append("")
    ab = v.get("ablation")
    if ab and ab.get("points"):
        c = ab["calibration"]
        lines += [f"### Ablation: {ab['estimator']} (s = {ab['s']:.3f})", "",
                  "The θ-dependent M-flow's likelihood times a Gaussian of the observed events' "
                  "distance from the learned manifold at θ (width s per normal direction, fitted "
                  "to 2000 fresh simulations at their own θ): a noisy-manifold model, no longer "
                  "the M-flow's density. Same sampler, events and calibration observations.", "",
                  "| θ* | mean | std | bias / std |", "|---|---|---|---|"]
        for r, point in zip(ab["points"], v["metrics"]["points"], strict=False):
            pull = np.asarray(r["bias"]) / np.asarray(r["std"])
            lines.append(f"| {_vec(point['theta_true'], 3)} | {_vec(r['mean'], 3)} | "
                         f"{_vec(r['std'], 3)} | {_vec(pull)} |")
        m68 = [c["marginal_coverage"][j][0] for j in range(3)]
        m95 = [c["marginal_coverage"][j][1] for j in range(3)]
        lines += ["", f"Calibration ({c['n_obs']} observations): HPD coverage "
                  f"{_vec(c['hpd_coverage'])} at 68 % / 95 %; marginal central coverage "
                  f"{_vec(m68)} / {_vec(m95)}; mean std / prior width "
                  f"{_vec(c['relative_width'], 3)}; {c['wall_s']:.1f} s per posterior.", ""]
    scan = ex.get("scan")
    if scan:
        lines += [f"### What the θ-dependent manifold's likelihood sees ({scan['model']}, "
                  "first true point)", "",
                  "One parameter moved at a time: mean distance of the observed events from "
                  "the learned manifold at θ, |x − project_θ(x)|, and the log-likelihood "
                  "Σ_i log p̂(x_i|θ) (the density at the projected points, which ignores that "
                  "distance).", "", "| parameter | Δ | mean distance to the manifold at θ | "
                  "Σ log p̂ |", "|---|---|---|---|"]
        lines += [f"| {PARAMS[r['param']]} | {r['delta']:+.2f} | {r['distance']:.3f} | "
                  f"{r['log_like']:.1f} |" for r in scan["rows"]]
        lines.append("")
    lines += ["### Cost and chaos", "",
              "| estimator | train wall [s] | posterior wall [s] (all events, mean over θ*) | "
              "test log p̂ | reconstruction error, test | posterior mass in the prior box | "
              "Lyapunov λ_max of posterior samples (min) |", "|---|---|---|---|---|---|---|"]
    for name in names:
        extra = ""
        if name == NLE:
            tr = (v.get("nle") or {}).get("train_wall_s")
            post = [p["estimators"][name]["full"]["wall_s"] for p in ex.get("points", [])]
            sbi = [p["estimators"][name]["sbi_mcmc"]["wall_s"] for p in ex.get("points", [])
                   if "sbi_mcmc" in p["estimators"][name]]
            extra = f" (sbi's default MCMC: {np.mean(sbi):.0f})" if sbi else ""
            m: dict[str, Any] = {}
        else:
            tr = v["timings"].get(f"train {name}")
            post = [v["timings"].get(f"infer {name}")] if v["timings"].get(f"infer {name}") else []
            post = [post[0] / len(v["pipeline_posteriors"])] if post else []
            m = v["metrics"]["models"].get(name, {})
        lam = (ex.get("lyapunov") or {}).get(name, {})
        lines.append(f"| {name} | {_fmt(tr, 0)} | {_fmt(np.mean(post) if post else None, 1)}{extra} | "
                     f"{_fmt(m.get('test_log_likelihood'))} | "
                     f"{_fmt(m.get('reconstruction_error'), 3)} | "
                     f"{_fmt(lam.get('fraction_in_box'), 3)} | {_fmt(lam.get('min'), 2)} |")
    lines.append("")
    return lines


# ------------------------------------------------------------------ figures
def figures(results: dict, cfgs: dict[str, RunConfig], uncond_root: Path, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mfinfer.plotting import corner_plot

    fig_data = uncond_root / "figure_data.npz"
    if fig_data.is_file():
        with np.load(fig_data) as f:
            data = dict(f)
        plot_unconditional(data, plt).savefig(out_dir / "unconditional_manifold.png", dpi=110)
        plt.close("all")
    for variant, cfg in cfgs.items():
        if variant not in results["variants"]:
            continue
        run = _run(cfg)
        for k in range(len(cfg.observed.theta)):
            with contextlib.suppress(FileNotFoundError):
                samples = {name: _posterior_samples(cfg, run, k, name)
                           for name in _estimators(cfg)}
                corner_plot(samples, out_dir / f"corner_{variant}_{k}.png",
                            truth=np.asarray(cfg.observed.theta[k]), labels=list(PARAMS))
    fig = plot_calibration(results, plt)
    if fig is not None:
        fig.savefig(out_dir / "calibration.png", dpi=110)
    plt.close("all")


def plot_unconditional(data: dict[str, np.ndarray], plt: Any) -> Any:
    """The attractor (simulator points) with the M-flow's decoded u-grid (where its density
    lives) and the models' samples: a 3-d view and two x–z projections."""
    fig = plt.figure(figsize=(14, 4.6))
    att = data["attractor"][:8000]
    grid = data.get("M-flow/grid_x")
    ax = fig.add_subplot(1, 3, 1, projection="3d")
    ax.scatter(*att.T, s=0.3, c="0.35", alpha=0.35, label="attractor (simulator)")
    if grid is not None:
        ax.plot_wireframe(grid[..., 0], grid[..., 1], grid[..., 2], rstride=2, cstride=2,
                          color="C3", linewidth=0.4, label="M-flow: decoded u-grid")
    ax.view_init(elev=25, azim=-55)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_zlabel("z")
    ax.legend(loc="upper left", fontsize=8)
    ax = fig.add_subplot(1, 3, 2)
    ax.scatter(att[:, 0], att[:, 2], s=0.3, c="0.35", alpha=0.35)
    if grid is not None:
        for line in (*grid[::2], *grid.transpose(1, 0, 2)[::2]):
            ax.plot(line[:, 0], line[:, 2], color="C3", lw=0.4)
    ax.set_title("x–z: attractor and decoded u-grid")
    ax.set_xlabel("x")
    ax.set_ylabel("z")
    ax = fig.add_subplot(1, 3, 3, sharex=ax, sharey=ax)
    ax.scatter(att[:, 0], att[:, 2], s=0.3, c="0.35", alpha=0.35, label="attractor")
    for name, color in (("AF", "C0"), ("M-flow", "C3")):
        s = data.get(f"{name}/samples")
        if s is not None:
            ax.scatter(s[:1500, 0], s[:1500, 2], s=0.6, c=color, alpha=0.5,
                       label=f"{name} samples")
    ax.set_xlabel("x")
    ax.legend(fontsize=8, markerscale=8)
    ax.set_title("x–z: model samples")
    fig.suptitle("Lorenz attractor at θ = (10, 28, 8/3) and the learned manifold (d = 2)")
    fig.tight_layout()
    return fig


def plot_calibration(results: dict, plt: Any) -> Any:
    """Expected coverage of the HPD regions against the nominal level, per variant/estimator."""
    variants = [(n, v["calibration"], v.get("ablation")) for n, v in results["variants"].items()
                if v.get("calibration")]
    if not variants:
        return None
    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants), 4.2), squeeze=False)
    levels = np.linspace(0, 1, 101)
    for ax, (variant, cal, ablation) in zip(axes[0], variants, strict=True):
        n = cal["n_obs"]
        band = 2 * np.sqrt(levels * (1 - levels) / n)
        ax.fill_between(levels, levels - band, levels + band, color="0.85", label="±2σ (binomial)")
        ax.plot(levels, levels, "k--", lw=0.8)
        for name, c in cal["estimators"].items():
            ranks = np.asarray(c["hpd_ranks"])
            ax.plot(levels, [np.mean(ranks < a) for a in levels], label=name)
        if ablation and ablation.get("calibration"):
            ranks = np.asarray(ablation["calibration"]["hpd_ranks"])
            ax.plot(levels, [np.mean(ranks < a) for a in levels], "--",
                    label="M-flow (conditional manifold) + off-manifold term")
        ax.set_title(f"{variant}: {n} observations × {cal['n_events']} events")
        ax.set_xlabel("credibility level of the HPD region")
        ax.set_ylabel("coverage")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--output-dir", help="override the config's output_dir")
    parser.add_argument("--stage", choices=STAGES, action="append",
                        help="run only these stages (repeatable); default: all")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--calibration-obs", type=int, help="override CALIBRATION['n_obs']")
    parser.add_argument("--calibrate", nargs="+", choices=list(VARIANTS),
                        default=list(CALIBRATION["variants"]),
                        help="variants to calibrate (default: %(default)s)")
    parser.add_argument("--out", default=str(HERE), help="folder for results.md and figures")
    parser.add_argument("--table-only", action="store_true", help="only the 'table' stage")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from mfinfer.pipeline import run_all

    cfg = load_config(args.config)
    if args.output_dir:
        cfg = replace(cfg, output_dir=args.output_dir)
    torch.set_num_threads(cfg.threads)
    cfgs = {k: v for k, v in variant_configs(cfg).items() if k in args.variants}
    stages = ["table"] if args.table_only else (args.stage or list(STAGES))
    uncond_root = Path(cfg.output_dir) / f"{cfg.name}-unconditional"
    out_dir = Path(args.out)
    for stage in STAGES:
        if stage not in stages:
            continue
        t0 = time.perf_counter()
        if stage == "unconditional":
            stage_unconditional(cfg, progress=not args.quiet)
        elif stage == "pipeline":
            for c in cfgs.values():
                run_all(c, progress=not args.quiet)
        elif stage == "sbi":
            for c in cfgs.values():
                stage_sbi(c)
        elif stage == "extras":
            for variant, c in cfgs.items():
                stage_extras(c, variant)
        elif stage == "ablation":
            for variant, c in cfgs.items():
                if variant in args.calibrate:
                    stage_ablation(c, variant)
        elif stage == "calibrate":
            for variant, c in cfgs.items():
                if variant in args.calibrate:
                    stage_calibrate(c, variant, args.calibration_obs)
        else:
            results = collect(cfgs, uncond_root)
            given = sys.argv[1:] if argv is None else list(argv)
            command = shlex.join(["python", "analyses/lorenz/run.py", *given])
            out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(results, out_dir / "results.json")
            figures(results, cfgs, uncond_root, out_dir)
            md = out_dir / "results.md"
            kept = md.read_text().partition(DISCUSSION)[2] if md.is_file() else ""
            md.write_text(results_table(results, command) + (f"\n{DISCUSSION}{kept}" if kept else ""))
        print(f"[lorenz] stage {stage}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
