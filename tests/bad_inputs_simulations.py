"""Bad inputs to training from the user's own simulations (``simulations:`` and ``prior:``).

``CASES`` holds ``(id, call, exc_type, keyword)`` (API and config: ``call(tmp_path)`` must raise
``exc_type`` with ``keyword`` in the lower-cased message); ``CLI_CASES`` holds ``(id, argv,
keyword)`` (``mfinfer.cli.main(argv(tmp_path))`` must exit 2 with one line holding ``keyword``).
``tests/test_bad_inputs.py`` runs both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mfinfer.config import RunConfig
from mfinfer.errors import ConfigError, InputError, MissingKeyError
from mfinfer.io.sample_store import read_sample
from mfinfer.io.simulations import SimulationsConfig, write_simulations
from mfinfer.priors import BoxUniform

__all__ = ["CASES", "CLI_CASES"]

PRIOR = BoxUniform((-1.0,), (1.0,))
_AF = {"name": "AF", "kind": "AmbientFlow", "options": {"num_layers": 1, "hidden_features": 8,
                                                        "num_blocks": 1}, "train": {"epochs": 1}}


def _files(tmp: Path, stem: str = "s", n: int = 20, theta: Any = None, names=("a", "b", "c")) -> str:
    """Two files ``<stem>_0.root``, ``<stem>_1.root`` with θ (n, 1) and observables ``names``;
    returns their glob (absolute)."""
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, (n, 1)) if theta is None else np.asarray(theta, float)
    write_simulations(tmp / f"{stem}.root", theta, rng.normal(size=(n, len(names))), names=list(names),
                      weight=np.ones(n), parts=2)
    return str(tmp / f"{stem}_*.root")


def _nan_file(tmp: Path) -> str:
    import uproot

    with uproot.recreate(tmp / "nan.root") as f:
        f.mktree("events", {"theta_0": np.float64, "a": np.float64})
        f["events"].extend({"theta_0": np.zeros(4), "a": np.array([0.0, np.nan, 1.0, np.nan])})
    return str(tmp / "nan.root")


def _read(section: Callable[[Path], dict]) -> Callable[[Path], object]:
    return lambda tmp: read_sample(SimulationsConfig.from_dict(section(tmp)), PRIOR, tmp / "cache")


def _run_config(**fields: Any) -> Callable[[Path], object]:
    base = {"name": "own", "models": [_AF], "prior": {"box": {"low": [-1.0], "high": [1.0]}},
            "simulations": {"files": "s.root", "theta": ["theta_0"], "observables": ["a", "b", "c"]}}
    data = {k: v for k, v in {**base, **fields}.items() if v is not None}
    return lambda tmp: RunConfig.from_dict(data)


def _differ(tmp: Path) -> dict:
    _files(tmp)
    _files(tmp, "t", names=("a", "b", "d"))
    return {"files": [str(tmp / "s_0.root"), str(tmp / "t_1.root")], "theta": "theta_0",
            "observables": ["a", "b"]}


Case = tuple[str, Callable[[Path], object], type[BaseException], str]
CASES: list[Case] = [
    ("simulations-misspelled-branch", _read(lambda t: {"files": _files(t), "theta": "theta_0",
                                                       "observables": ["a", "bb"]}),
     MissingKeyError, "no branch 'bb'"),
    ("simulations-theta-outside-prior", _read(lambda t: {"files": _files(t, theta=np.full((20, 1), 2.0)),
                                                         "theta": "theta_0", "observables": ["a"]}),
     InputError, "20 of 20 rows lie outside the prior"),
    ("simulations-nan-rows", _read(lambda t: {"files": _nan_file(t), "theta": "theta_0",
                                              "observables": ["a"]}),
     InputError, "2 of 4 rows hold nan or inf (first: "),
    ("simulations-trees-differ", _read(_differ), InputError, "the trees 'events' differ"),
    ("simulations-glob-matches-nothing", _read(lambda t: {"files": str(t / "none_*.root"), "theta": "t",
                                                          "observables": ["a"]}),
     FileNotFoundError, "matches no file"),
    ("simulations-score-per-parameter",
     lambda tmp: SimulationsConfig.from_dict({"files": "s.root", "theta": ["t0", "t1"],
                                              "observables": ["a"], "score": ["s0"]}),
     ConfigError, "simulations.score: expected one branch per parameter"),
    ("simulations-unsafe-expression",
     lambda tmp: SimulationsConfig.from_dict({"files": "s.root", "theta": ["t0"],
                                              "observables": ["a.__class__()"]}),
     ConfigError, "attribute access"),
    ("simulations-no-prior", _run_config(prior=None), ConfigError, "prior: missing"),
    ("simulations-prior-and-simulator", _run_config(simulator={"name": "power"}), ConfigError,
     "the simulator defines the prior"),
    ("simulations-observed-without-simulator", _run_config(observed={"theta": [[0.0]]}), ConfigError,
     "observed: needs a simulator"),
    ("simulations-theta-count", _run_config(simulations={"files": "s.root", "theta": ["t0", "t1"],
                                                          "observables": ["a"]}),
     ConfigError, "one branch per parameter of the prior (1)"),
    ("simulations-manifold-dim-missing", _run_config(models=[{"name": "MF", "kind": "ManifoldFlow"}]),
     ConfigError, "simulations.manifold_dim"),
    ("simulations-truth-without-simulator", _run_config(truth=True), ConfigError,
     "truth: true needs the exact posterior"),
    ("simulations-c2st-without-simulator", _run_config(metrics={"c2st": True}), ConfigError,
     "metrics.c2st: true needs the exact posterior"),
    ("simulations-fom-needs-simulator", _run_config(models=[{"name": "FOM", "kind": "FOMFlow"}]),
     ConfigError, "fomflow needs a simulator"),
]


def _config(tmp: Path, simulations: dict, name: str = "own.yaml") -> str:
    path = tmp / name
    path.write_text(yaml.safe_dump({"name": "own", "output_dir": str(tmp / "runs"), "models": [_AF],
                                    "prior": {"box": {"low": [-1.0], "high": [1.0]}},
                                    "simulations": simulations}))
    return str(path)


def _tiny(tmp: Path) -> str:
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny", "simulator": {"name": "power"}, "n_train": 100,
                                    "models": [_AF], "output_dir": str(tmp / "runs")}))
    return str(path)


CliCase = tuple[str, Callable[[Path], list[str]], str]
CLI_CASES: list[CliCase] = [
    ("train-misspelled-branch", lambda t: ["train", _config(t, {"files": _files(t), "theta": "theta_0",
                                                                "observables": ["a", "b", "c_"]}), "--quiet"],
     "no branch 'c_'"),
    ("simulations-train-nan-rows", lambda t: ["train", _config(t, {"files": _nan_file(t), "theta": "theta_0",
                                                       "observables": ["a"]}), "--quiet"],
     "rows hold nan or inf"),
    ("simulate-out-without-simulator", lambda t: ["simulate", _config(t, {"files": "s.root", "theta": "t",
                                                                          "observables": ["a"]}),
                                                  "--out", str(t / "x.root")],
     "--out: needs a simulator"),
    ("simulate-training-with-n", lambda t: ["simulate", _tiny(t), "--out", str(t / "x.root"),
                                            "--training", "--n", "5"], "--training"),
    ("simulate-parts-npz", lambda t: ["simulate", _tiny(t), "--out", str(t / "x.npz"), "--parts", "2"],
     "--parts: applies to .root files only"),
    ("infer-branches-without-simulator",
     lambda t: ["infer", _config(t, {"files": _files(t), "theta": "theta_0", "observables": ["a", "b", "c"]}),
                "--events", str(t / "s_0.root"), "--branches", "a"],
     "--branches: this run names no simulator"),
]
