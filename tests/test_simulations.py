"""Training samples from the user's ROOT files: the ``simulations:`` section and its reader.

Tiny files in ``tmp_path``: the arrays read back exactly, in chunks, from several files, in parallel;
the cache is keyed by the files' bytes; every error names the branch, the file and the entry.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mfinfer.errors import ConfigError, InputError, MissingKeyError
from mfinfer.io import sample_store
from mfinfer.io.sample_store import read_observables, read_sample
from mfinfer.io.simulations import SimulationsConfig, write_simulations
from mfinfer.priors import BoxUniform

PRIOR = BoxUniform((-1.0, -1.0), (1.0, 1.0))


def _sample(n: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"theta": rng.uniform(-1, 1, (n, 2)), "x": rng.normal(size=(n, 3)),
            "weight": rng.uniform(0.5, 2.0, n), "score": rng.normal(size=(n, 2))}


def _write(tmp_path: Path, parts: int = 3, **changes: np.ndarray) -> dict:
    s = {**_sample(), **changes}
    _, section = write_simulations(tmp_path / "sims.root", s["theta"], s["x"], names=["a", "b", "c"],
                                   weight=s["weight"], score=s["score"], parts=parts)
    return {"section": section, **s}


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the globs are relative to the working directory


def test_several_files_read_back_exactly_in_chunks(tmp_path: Path) -> None:
    w = _write(tmp_path)
    cfg = SimulationsConfig.from_dict({**w["section"], "step_size": 37})  # chunks cross file bounds
    got = read_sample(cfg, PRIOR, tmp_path / "cache")
    assert sorted(got) == ["score", "theta", "weight", "x"]
    for key in got:
        np.testing.assert_array_equal(got[key], w[key])
        assert isinstance(got[key], np.memmap), "the sample is read from disk, batch by batch"


def test_expressions_and_a_single_glob(tmp_path: Path) -> None:
    w = _write(tmp_path, parts=1)
    cfg = SimulationsConfig.from_dict({"files": "sims.root", "theta": ["theta_1", "theta_0"],
                                       "observables": {"ab": "a * b", "c2": "sqrt(c**2)"}})
    got = read_sample(cfg, PRIOR, "cache")
    np.testing.assert_array_equal(got["theta"], w["theta"][:, ::-1])
    np.testing.assert_allclose(got["x"], np.stack([w["x"][:, 0] * w["x"][:, 1], abs(w["x"][:, 2])], 1))
    assert "weight" not in got and "score" not in got


def test_cache_is_keyed_by_the_files_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _write(tmp_path)
    cfg = SimulationsConfig.from_dict(w["section"])
    read_sample(cfg, PRIOR, "cache")
    calls = []
    real = sample_store._read_file
    monkeypatch.setattr(sample_store, "_read_file", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    read_sample(cfg, PRIOR, "cache")
    assert calls == [], "the same files are read once"
    theta = w["theta"].copy()
    theta[5, 0] = 0.123
    write_simulations(tmp_path / "sims.root", theta, w["x"], names=["a", "b", "c"], weight=w["weight"],
                      score=w["score"], parts=3)
    got = read_sample(cfg, PRIOR, "cache")
    assert len(calls) == 3 and got["theta"][5, 0] == 0.123
    assert len(list(Path("cache").iterdir())) == 1, "the stale sample is removed"


def test_files_are_read_on_a_dask_client(tmp_path: Path) -> None:
    class Inline:  # a client that runs each task at once (a real one: test_parallel_read_on_dask)
        submitted = 0

        def submit(self, fn, *args, pure=True):
            Inline.submitted += 1
            return fn(*args)

        def gather(self, futures):
            return list(futures)

    w = _write(tmp_path)
    got = read_sample(SimulationsConfig.from_dict(w["section"]), PRIOR, "cache", client=Inline())
    assert Inline.submitted == 3
    np.testing.assert_array_equal(got["x"], w["x"])


@pytest.mark.slow
def test_parallel_read_on_dask(tmp_path: Path) -> None:
    from mfinfer.parallel import dask_client

    w = _write(tmp_path)
    with dask_client(2, quiet=True) as client:
        got = read_sample(SimulationsConfig.from_dict(w["section"]), PRIOR, "cache", client=client)
    np.testing.assert_array_equal(got["theta"], w["theta"])


def test_a_misspelled_branch_names_the_nearest(tmp_path: Path) -> None:
    w = _write(tmp_path)
    cfg = SimulationsConfig.from_dict({**w["section"], "observables": ["a", "bb", "c"]})
    with pytest.raises(MissingKeyError, match=r"no branch 'bb'.*nearest first\): 'b'"):
        read_sample(cfg, PRIOR, "cache")


def test_theta_outside_the_prior_gives_count_and_first_entry(tmp_path: Path) -> None:
    theta = _sample()["theta"]
    theta[[150, 160], 1] = 3.0  # both in the second file (entries 50 and 60 there)
    w = _write(tmp_path, theta=theta)
    with pytest.raises(InputError, match=r"2 of 300 rows lie outside.*sims_1.root entry 50"):
        read_sample(SimulationsConfig.from_dict(w["section"]), PRIOR, "cache")


def _raw_tree(path: Path, columns: dict[str, np.ndarray]) -> None:
    """A flat tree ``events`` written by uproot alone (write_events refuses NaN)."""
    import uproot

    with uproot.recreate(path) as f:
        f.mktree("events", {k: np.float64 for k in columns})
        f["events"].extend(columns)


def test_nan_rows_give_count_file_and_entry(tmp_path: Path) -> None:
    s = _sample(20)
    for i, rows in enumerate((slice(0, 10), slice(10, 20))):
        c = s["x"][rows].copy()
        if i == 1:
            c[[3, 5, 6], 2] = np.nan
        _raw_tree(tmp_path / f"raw_{i}.root", {"t0": s["theta"][rows, 0], "t1": s["theta"][rows, 1],
                                               "a": c[:, 0], "b": c[:, 1], "c": c[:, 2]})
    cfg = SimulationsConfig.from_dict({"files": "raw_*.root", "theta": ["t0", "t1"],
                                       "observables": ["a", "b", "c"]})
    with pytest.raises(InputError, match=r"3 of 20 rows hold NaN.*raw_1.root entry 3, c"):
        read_sample(cfg, PRIOR, "cache")
    assert list(Path("cache").iterdir()) == [], "a failed read leaves no half-written sample"


def test_files_whose_trees_differ_are_named(tmp_path: Path) -> None:
    w = _write(tmp_path, parts=2)
    s = _sample(10)
    write_simulations(tmp_path / "sims_9.root", s["theta"], s["x"], names=["a", "b", "d"],
                      weight=s["weight"], score=s["score"])
    with pytest.raises(InputError, match=r"sims_0.root has \['c'\].*sims_9.root has \['d'\]"):
        read_sample(SimulationsConfig.from_dict(w["section"]), PRIOR, "cache")


def test_section_errors_name_the_field() -> None:
    base = {"files": "s.root", "theta": ["t0", "t1"], "observables": ["a"]}
    with pytest.raises(ConfigError, match=r"simulations.score: expected one branch per parameter"):
        SimulationsConfig.from_dict({**base, "score": ["s0"]})
    with pytest.raises(ConfigError, match=r"simulations.obsevables: unknown field.*'observables'"):
        SimulationsConfig.from_dict({**base, "obsevables": ["a"]})
    with pytest.raises(ConfigError, match=r"simulations.theta\[1\].*attribute"):
        SimulationsConfig.from_dict({**base, "theta": ["t0", "t1.__class__()"]})
    with pytest.raises(FileNotFoundError, match=r"simulations.files\[0\]: 's.root' matches no file"):
        read_sample(SimulationsConfig.from_dict(base), PRIOR, "cache")


def test_observed_events_are_read_like_the_training_files(tmp_path: Path) -> None:
    w = _write(tmp_path, parts=1)
    cfg = SimulationsConfig.from_dict(w["section"])
    np.testing.assert_array_equal(read_observables(tmp_path / "sims.root", cfg), w["x"])
    assert os.path.exists(tmp_path / "sims.root")


def _lepton_simulations(path: Path, n: int = 6) -> np.ndarray:
    """``n`` NanoAOD-style 2e2mu events (jagged Electron_*/Muon_*, one event with a third muon) with
    flat θ branches ``a2``, ``a3`` and ``genWeight``; returns θ (n, 2)."""
    import awkward as ak
    import uproot

    rng = np.random.default_rng(3)
    theta = rng.uniform(-0.5, 0.5, (n, 2))
    colls = {}
    for prefix, extra in (("Electron", 0), ("Muon", 1)):
        counts = [2] * n
        counts[0] += extra  # an extra muon in event 0: at_least keeps it, exactly drops it
        k = sum(counts)
        fields = {"pt": rng.uniform(10, 50, k), "eta": rng.uniform(-2, 2, k), "phi": rng.uniform(-3, 3, k),
                  "mass": np.zeros(k), "charge": np.tile([-1, 1], k)[:k].astype(np.int32)}
        colls[prefix] = ak.zip({f: ak.unflatten(v, counts) for f, v in fields.items()})
    with uproot.recreate(path) as f:
        f.mktree("Events", {"Electron": colls["Electron"].type, "Muon": colls["Muon"].type,
                            "a2": np.float64, "a3": np.float64, "genWeight": np.float64})
        f["Events"].extend({"Electron": colls["Electron"], "Muon": colls["Muon"], "a2": theta[:, 0],
                            "a3": theta[:, 1], "genWeight": np.full(n, 2.0)})
    return theta


def test_lepton_collections_through_a_selection(tmp_path: Path) -> None:
    from mfinfer.sources import data_source

    theta = _lepton_simulations(tmp_path / "leptons.root")
    section = SimulationsConfig.from_dict({"files": "leptons.root", "theta": ["a2", "a3"],
                                           "observables": {"events": {"preset": "nanoaod"}},
                                           "selection": "higgs4l", "weight": "genWeight"})
    assert section.tree == "Events" and section.data_dim is None
    source = data_source(None, section, {"box": {"low": [-2.0, -3.0], "high": [2.0, 3.0]}})
    assert (source.spec.data_dim, source.spec.manifold_dim) == (38, 11)  # the selection's simulator's
    got = source.sample(tmp_path / "cache")
    assert got["x"].shape == (5, 38), "event 0 (three muons) fails require: exactly"
    np.testing.assert_array_equal(got["theta"], theta[1:])
    np.testing.assert_array_equal(got["weight"], np.full(5, 2.0))
