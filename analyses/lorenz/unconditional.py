"""Stage 1, the paper's Lorenz experiment: at the classic θ, an unconditional AF and M-flow
(d = 2) learn attractor points; manifold distance of their samples, reconstruction error and the
learned manifold decoded on a grid of u."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from analyses.lorenz.estimators import nn_distance
from analyses.lorenz.settings import (
    CLASSIC,
    UNCONDITIONAL,
    cached,
    path_name,
    save_npz,
    stage_rng,
    stage_torch_seed,
    timer,
)
from mfinfer.caching import content_key, json_key, npz_key
from mfinfer.config import ModelConfig, RunConfig
from mfinfer.files import atomic_write_json
from mfinfer.files.ownership import claim_dir, remove_owned_dir


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


def stage_unconditional(cfg: RunConfig, progress: bool) -> dict:
    """Train (or resume) the unconditional models and measure them; writes ``summary.json`` and
    ``figure_data.npz`` in ``<output_dir>/<name>-unconditional``."""
    from mfinfer.models import MODELS, load_model, save_model
    from mfinfer.registry import get_simulator
    from mfinfer.training import train

    seed = cfg.seeds[0]
    root = Path(cfg.output_dir) / f"{cfg.name}-unconditional"

    sim = get_simulator("lorenz", observation="points")
    u = UNCONDITIONAL
    key = content_key("unconditional", u["n_train"], u["n_test"], u["n_reference"], seed)
    data_path = root / "data.npz"
    if npz_key(data_path) != key:
        with timer() as t:
            xs = {part: sim.sample(np.tile(CLASSIC, (u[f"n_{part}"], 1)),
                                   stage_rng(seed, "unconditional", part))
                  for part in ("train", "test", "reference")}
        save_npz(data_path, key=np.array(key), seconds=np.array(t["cpu_s"]), **xs)
    with np.load(data_path) as f:
        data = {k: f[k] for k in ("train", "test", "reference")}
    out: dict[str, Any] = {"settings": {k: v for k, v in u.items() if k != "models"},
                           "theta": list(CLASSIC), "models": {}}
    out["floor"] = float(nn_distance(data["test"], data["reference"]).mean())
    grids: dict[str, np.ndarray] = {}
    for name, mcfg in _uncond_models(cfg).items():
        directory = root / "models" / path_name(name)
        mkey = content_key("uncond-model", key, mcfg.kind, mcfg.options, mcfg.train, seed)
        trained = cached(directory / "train.json", mkey)
        if trained is None or not (directory / "final" / "model.json").is_file():
            if json_key(directory / "identity.json", "key") != mkey and directory.exists():
                # trained with other settings: afresh (else: resume); only a folder this stage made
                # (one from before the ownership markers counts if it holds this stage's identity.json)
                remove_owned_dir(directory, root, legacy=lambda d: json_key(d / "identity.json", "key")
                                 is not None)
            claim_dir(directory, root)
            atomic_write_json({"key": mkey}, directory / "identity.json")
            torch.manual_seed(stage_torch_seed(seed, "unconditional", name))
            model = MODELS[mcfg.kind](3, **({"manifold_dim": 2} if mcfg.kind == "ManifoldFlow"
                                             else {}), **mcfg.options)
            with timer() as t:
                train(model, data["train"], None, mcfg.train_config(seed, "cpu", progress),
                      run_dir=directory, resume=True)
            save_model(model, directory / "final")
            trained = {"key": mkey, "train_wall_s": t["wall_s"], "train_cpu_s": t["cpu_s"]}
            atomic_write_json(trained, directory / "train.json")
        result_path = directory / "result.json"
        rkey = content_key(mkey, u["grid"], "v2")
        result = cached(result_path, rkey)
        if result is None:
            model = load_model(directory / "final").eval()
            gen = torch.Generator().manual_seed(stage_torch_seed(seed, "unconditional", name, "sample"))
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
                save_npz(directory / "grid.npz", grid_x=grid_x.reshape(u["grid"], u["grid"], 3),
                          samples=samples[:3000])
            else:
                result["reconstruction_error"] = 0.0
                save_npz(directory / "grid.npz", samples=samples[:3000])
            atomic_write_json(result, result_path)
        out["models"][name] = {k: v for k, v in result.items() if k != "key"}
        with np.load(directory / "grid.npz") as f:
            grids |= {f"{name}/{k}": f[k] for k in f.files}
    save_npz(root / "figure_data.npz", attractor=data["reference"][:20_000], **grids)
    atomic_write_json(out, root / "summary.json")
    return out

