"""Training from on-disk (memory-mapped) arrays: the same weights as in memory, read batch by batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mfinfer.training.disk_rows as disk_rows
from mfinfer.caching import array_digest
from mfinfer.models import AmbientFlow
from mfinfer.training import TrainConfig, train

CFG = TrainConfig(epochs=2, batch_size=32, progress=False, seed=1)


def _data(n: int = 160) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, (n, 2))
    x = np.c_[theta + 0.3 * rng.normal(size=(n, 2)), 5 * rng.normal(size=(n, 1)) + 3]
    return x, theta, rng.uniform(0.5, 2.0, n), rng.normal(size=(n, 2))


def _on_disk(tmp_path, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
        out[name] = np.load(tmp_path / f"{name}.npy", mmap_mode="r")
    return out


def _trained(x, theta, **kw) -> tuple[dict[str, torch.Tensor], list[dict]]:
    torch.manual_seed(0)
    model = AmbientFlow(3, param_dim=2, num_layers=2, hidden_features=8, num_blocks=1)
    history = train(model, x, theta, kw.pop("config", CFG), **kw)
    return model.state_dict(), history


@pytest.mark.parametrize("extra", ["none", "weights", "score"])
def test_memmap_trains_to_the_weights_of_the_same_data_in_memory(tmp_path, extra):
    x, theta, w, s = _data()
    disk = _on_disk(tmp_path, x=x, theta=theta, s=s)
    kw_mem: dict = {"weights": w} if extra == "weights" else {}
    kw_disk: dict = dict(kw_mem)
    if extra == "score":
        kw_mem = {"score": s, "config": TrainConfig(**{**CFG.__dict__, "score_weight": 0.1})}
        kw_disk = {**kw_mem, "score": disk["s"]}
    state_mem, hist_mem = _trained(x, theta, **kw_mem)
    state_disk, hist_disk = _trained(disk["x"], disk["theta"], run_dir=tmp_path / "run", **kw_disk)
    assert isinstance(disk["x"], np.memmap)
    assert [h["val"] for h in hist_disk] == [h["val"] for h in hist_mem]
    for k in state_mem:
        assert torch.equal(state_mem[k], state_disk[k]), k


def test_memmap_digest_is_the_in_memory_digest(tmp_path, monkeypatch):
    import mfinfer.caching as caching

    x = np.random.default_rng(1).normal(size=(1000, 3)).astype(np.float32)
    disk = _on_disk(tmp_path, x=x)
    monkeypatch.setattr(caching, "DIGEST_CHUNK_ROWS", 300)  # 4 chunks, the last one short
    assert array_digest(disk["x"]) == array_digest(x) == array_digest(torch.as_tensor(x))
    assert array_digest(disk["x"][:999]) != array_digest(x)


def test_memmap_training_never_converts_the_whole_array(tmp_path, monkeypatch):
    """Every tensor made from numpy during training holds at most a batch's (or the capped
    standardisation subset's) rows: the full float32 copy of x is never made."""
    n, cap = 4000, 500
    rng = np.random.default_rng(2)
    theta = rng.uniform(-1, 1, (n, 2))
    x = np.c_[theta, rng.normal(size=(n, 1))].astype(np.float32)
    disk = _on_disk(tmp_path, x=x, theta=theta)
    monkeypatch.setattr(disk_rows, "STANDARDIZE_ROWS", cap)
    import mfinfer.training.trainer as trainer
    monkeypatch.setattr(trainer, "STANDARDIZE_ROWS", cap)
    monkeypatch.setattr(disk_rows, "CHUNK_ROWS", 1000)
    import mfinfer.caching as caching
    monkeypatch.setattr(caching, "DIGEST_CHUNK_ROWS", 1000)
    seen: list[int] = []  # the rows of every array converted or scanned whole

    def track(module, name):
        original = getattr(module, name)

        def tracked(a, *args, **kw):
            if isinstance(a, np.ndarray) and a.ndim:
                seen.append(len(a))
            return original(a, *args, **kw)
        monkeypatch.setattr(module, name, tracked)

    for name in ("as_tensor", "from_numpy", "tensor"):
        track(torch, name)
    for name in ("isfinite", "ascontiguousarray", "asarray"):
        track(np, name)
    model = AmbientFlow(3, param_dim=2, num_layers=1, hidden_features=4, num_blocks=1)
    cfg = TrainConfig(epochs=1, batch_size=200, validation_fraction=0.5, progress=False)
    history = train(model, disk["x"], disk["theta"], cfg)
    assert np.isfinite(history[-1]["val"])
    assert seen, "training read nothing through the tracked conversions"
    assert max(seen) <= 1000, max(seen)  # a validation chunk; batches 200, the fit's subset 500
    std = model.standardize  # fitted to `cap` training rows, not all of them
    assert std is not None and torch.isfinite(std.scale).all()


def test_a_simulations_sample_trains_from_disk_as_in_memory(tmp_path):
    """The ``simulations:`` reader's arrays are memory maps, so a run from files takes the on-disk
    path, and trains to the weights of the same numbers in memory."""
    from mfinfer.io.sample_store import read_sample
    from mfinfer.io.simulations import SimulationsConfig, write_simulations
    from mfinfer.priors import BoxUniform

    x, theta, _, _ = _data()
    write_simulations(tmp_path / "s.root", theta, x, names=["a", "b", "c"], parts=2)
    section = SimulationsConfig.from_dict({"files": str(tmp_path / "s_*.root"),
                                           "theta": ["theta_0", "theta_1"], "observables": ["a", "b", "c"]})
    sample = read_sample(section, BoxUniform((-1.0, -1.0), (1.0, 1.0)), tmp_path / "cache")
    assert isinstance(sample["x"], np.memmap) and isinstance(sample["theta"], np.memmap)
    state_disk, _ = _trained(sample["x"], sample["theta"])
    state_mem, _ = _trained(np.array(sample["x"]), np.array(sample["theta"]))
    assert all(torch.equal(state_mem[k], state_disk[k]) for k in state_mem)
