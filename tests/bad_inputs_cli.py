"""Bad configs and bad command lines: each case must fail clearly, before any training.

``CASES`` holds ``(id, call, exc_type, keyword)``: ``call(tmp_path)`` writes a config under
``tmp_path`` (``tests/configs/tiny.yaml`` with one change) and loads it; it must raise ``exc_type``
with ``keyword`` in the (lower-cased) message. ``CLI_CASES`` holds ``(id, argv, keyword)``:
``mfinfer.cli.main(argv(tmp_path))`` must return 2 with one line on stderr that holds ``keyword``
and no traceback. ``tests/test_config.py`` and ``tests/test_bad_inputs.py`` run them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mfinfer.config import load_config
from mfinfer.errors import ConfigError

__all__ = ["CASES", "CLI_CASES", "del_field", "set_field", "write_config"]

TINY = Path(__file__).parent / "configs" / "tiny.yaml"
HIGGS_TINY = Path(__file__).parent / "configs" / "higgs4l_tiny.yaml"

Edit = Callable[[dict], None]
Case = tuple[str, Callable[[Path], object], type[BaseException], str]
CliCase = tuple[str, Callable[[Path], list[str]], str]


def _set(path: str, value: Any) -> Edit:
    """An edit that sets a dotted path (``models.0.options.num_layers``) of the config."""
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]

    def edit(cfg: dict) -> None:
        node: Any = cfg
        for p in parents:
            node = node[p]
        node[last] = value

    return edit


def _del(path: str) -> Edit:
    *parents, last = path.split(".")

    def edit(cfg: dict) -> None:
        node: Any = cfg
        for p in parents:
            node = node[int(p) if p.isdigit() else p]
        del node[last]

    return edit


set_field, del_field = _set, _del  # public names; the tables use the short ones


def write_config(tmp: Path, *edits: Edit, base: Path = TINY, name: str = "config.yaml") -> Path:
    """``base`` with its output under ``tmp/runs`` and ``edits`` applied, written to ``tmp/name``."""
    cfg = yaml.safe_load(base.read_text())
    cfg["output_dir"] = str(tmp / "runs")
    for edit in edits:
        edit(cfg)
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _load(*edits: Edit, base: Path = TINY) -> Callable[[Path], object]:
    return lambda tmp: load_config(write_config(tmp, *edits, base=base))


def _text(text: str | bytes) -> Callable[[Path], object]:
    """Load a config file holding exactly ``text``."""
    def call(tmp: Path) -> object:
        path = tmp / "config.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return load_config(path)

    return call


def _cuda_unavailable(tmp: Path) -> object:
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    return load_config(write_config(tmp, _set("device", "cuda")))


_AF = "models.0"
CASES: list[Case] = [
    # top-level fields: types and ranges
    ("config-n-train-str", _load(_set("n_train", "abc")), ConfigError, "n_train: expected an integer >= 2"),
    ("config-n-train-zero", _load(_set("n_train", 0)), ConfigError,
     "n_train: expected an integer >= 2 and <= 1000000000, got 0"),
    ("config-n-train-bool", _load(_set("n_train", True)), ConfigError, "got true (bool)"),
    ("config-n-train-float", _load(_set("n_train", 100.5)), ConfigError, "n_train"),
    ("config-seeds-str", _load(_set("seeds", "ab")), ConfigError, "seeds: expected a list of integers"),
    ("config-seeds-float", _load(_set("seeds", [1.5])), ConfigError, "seeds[0]: expected an integer"),
    ("config-seeds-negative", _load(_set("seeds", [0, -1])), ConfigError, "seeds[1]"),
    ("config-seeds-empty", _load(_set("seeds", [])), ConfigError, "seeds: expected a non-empty list"),
    ("config-seeds-duplicate", _load(_set("seeds", [1, 1])), ConfigError, "distinct"),
    ("config-truth-str", _load(_set("truth", "yes")), ConfigError, "truth: expected true or false"),
    ("config-threads-zero", _load(_set("threads", 0)), ConfigError, "threads: expected an integer >= 1"),
    ("config-device-gpu", _load(_set("device", "gpu")), ConfigError, "device: must be 'auto'"),
    ("config-device-cuda-unavailable", _cuda_unavailable, ConfigError, "use device 'auto' or 'cpu'"),
    ("config-output-dir-empty", _load(_set("output_dir", "")), ConfigError, "output_dir"),
    ("config-name-path", _load(_set("name", "a/b")), ConfigError, "name: names a file or folder"),
    ("config-unknown-field", _load(_set("simulatr", {"name": "power"})), ConfigError,
     "config.simulatr: unknown field; allowed: ['simulator'"),
    ("config-missing-field", _load(_del("n_train")), ConfigError,
     "n_train: missing; give the number of training simulations"),
    # the simulator
    ("config-simulator-unknown", _load(_set("simulator", {"name": "nope"})), ConfigError,
     "no simulator named 'nope'"),
    ("config-simulator-str", _load(_set("simulator", "power")), ConfigError, "simulator: expected a mapping"),
    ("config-simulator-bad-option", _load(_set("simulator.options", {"bogus": 1})), ConfigError, "bogus"),
    ("config-simulator-unknown-key", _load(_set("simulator.opts", {})), ConfigError,
     "simulator.opts: unknown field"),
    # observed data
    ("config-theta-scalar", _load(_set("observed.theta", 0.5)), ConfigError,
     "observed.theta: expected a list of lists of finite numbers, got 0.5 (float)"),
    ("config-theta-flat", _load(_set("observed.theta", [0.5])), ConfigError,
     "observed.theta[0]: expected a list of finite numbers, got 0.5"),
    ("config-theta-str", _load(_set("observed.theta", [["a"]])), ConfigError, "observed.theta[0][0]"),
    ("config-theta-row-length", _load(_set("observed.theta", [[0.0], [0.0, 1.0]])), ConfigError,
     "observed.theta[1]: expected 1 number, one per parameter"),
    ("config-theta-outside-prior", _load(_set("observed.theta", [[0.0], [3.0]])), ConfigError,
     "observed.theta[1]: [3.0] is outside the prior"),
    ("config-n-events-zero", _load(_set("observed.n_events", 0)), ConfigError, "observed.n_events"),
    # models
    ("config-models-empty", _load(_set("models", [])), ConfigError, "models: expected a non-empty list"),
    ("config-models-mapping", _load(_set("models", {"AF": {}})), ConfigError, "models: expected a list"),
    ("config-model-str", _load(_set("models", ["AF"])), ConfigError, "models[0]: expected a mapping"),
    ("config-model-kind", _load(_set(f"{_AF}.kind", "AmbientFlo")), ConfigError,
     "models[AF].kind: must be one of"),
    ("config-model-duplicate-names", _load(_set("models.1.name", "AF")), ConfigError, "names must be unique"),
    ("config-model-named-truth", _load(_set(f"{_AF}.name", "truth")), ConfigError, "not 'truth'"),
    ("config-model-unknown-field", _load(_set(f"{_AF}.option", {})), ConfigError,
     "models[AF].option: unknown field"),
    ("config-model-unknown-option", _load(_set(f"{_AF}.options.num_layer", 2)), ConfigError,
     "models[AF].options.num_layer: unknown option of AmbientFlow; allowed: ['num_layers'"),
    ("config-model-option-str", _load(_set(f"{_AF}.options.num_layers", "two")), ConfigError,
     "models[AF].options.num_layers: expected an integer >= 1"),
    ("config-model-option-zero", _load(_set("models.1.options.hidden_features", 0)), ConfigError,
     "models[MF-seq].options.hidden_features"),
    ("config-model-option-bool", _load(_set("models.1.options.encoder", "yes")), ConfigError,
     "models[MF-seq].options.encoder: expected true or false"),
    ("config-model-option-param-dim", _load(_set(f"{_AF}.options.param_dim", 3)), ConfigError,
     "models[AF].options.param_dim: set from the simulator"),
    ("config-model-mode", _load(_set(f"{_AF}.mode", "pie")), ConfigError, "models[AF].mode"),
    ("config-model-mode-unknown", _load(_set(f"{_AF}.mode", "fast")), ConfigError,
     "models[AF].mode: must be one of ('manifold', 'pie')"),
    ("config-train-unknown", _load(_set(f"{_AF}.train.epoch", 2)), ConfigError,
     "models[AF].train.epoch: unknown field; allowed: ['epochs'"),
    ("config-train-epochs-str", _load(_set(f"{_AF}.train.epochs", "2")), ConfigError,
     "models[AF].train.epochs: expected an integer"),
    ("config-train-schedule", _load(_set(f"{_AF}.train.schedule", "fast")), ConfigError,
     "schedule: must be one of ('nll'"),
    ("config-train-lr-zero", _load(_set(f"{_AF}.train.lr", 0)), ConfigError, "models[AF].train.lr"),
    ("config-train-validation-fraction", _load(_set(f"{_AF}.train.validation_fraction", 1.0)), ConfigError,
     "validation_fraction: expected a finite number >= 0 and < 1"),
    ("config-train-seed", _load(_set(f"{_AF}.train.seed", 3)), ConfigError, "set by the run"),
    # posterior (an old mcmc: section is read with a warning: tests/test_posterior_spec.py) and metrics
    ("config-posterior-walkers-odd", _load(_set("posterior.emcee.num_walkers", 7)), ConfigError,
     "posterior.emcee.num_walkers"),
    ("config-posterior-walkers-few", _load(_set("posterior.emcee.num_walkers", 2), base=HIGGS_TINY),
     ConfigError, "2 * param_dim = 4"),
    ("config-posterior-samples-zero", _load(_set("posterior.num_samples", 0)), ConfigError,
     "posterior.num_samples"),
    ("config-posterior-max-steps", _load(_set("posterior.emcee.max_steps", 5)), ConfigError,
     "posterior.emcee.max_steps: expected an integer >= 10"),
    ("config-posterior-unknown", _load(_set("posterior.walkers", 8)), ConfigError,
     "posterior.walkers: unknown option"),
    ("config-posterior-null", _load(_set("posterior", None)), ConfigError, "posterior: expected a mapping"),
    ("config-posterior-method", _load(_set("posterior.method", "hmc")), ConfigError,
     "posterior.method: must be one of ('auto', 'grid', 'smc', 'emcee'), got 'hmc'"),
    ("config-posterior-other-method", _load(_set("posterior.method", "grid")), ConfigError,
     "posterior.emcee: options of method 'emcee', but method is 'grid'"),
    ("config-metrics-unknown", _load(_set("metrics", {"kde": 0.1})), ConfigError, "unknown fields ['kde']"),
    ("config-metrics-type", _load(_set("metrics", {"c2st": "yes"})), ConfigError, "metrics.c2st"),
    ("config-metrics-bandwidth", _load(_set("metrics", {"kde_bandwidth": -1})), ConfigError,
     "metrics.kde_bandwidth: expected a finite number > 0"),
    # the file itself
    ("config-file-missing", lambda tmp: load_config(tmp / "missing.yaml"), FileNotFoundError,
     "config file not found"),
    ("config-file-directory", lambda tmp: load_config(tmp), IsADirectoryError, "is a directory"),
    ("config-yaml-syntax", _text("name: tiny\nsimulator: {name: power\n"), ConfigError,
     "invalid yaml at line 3, column 1"),
    ("config-binary", _text(bytes(range(256))), ConfigError, "not a text file"),
    ("config-a-list", _text("- name: tiny\n"), ConfigError, "expected a mapping of fields"),
    ("config-empty", _text(""), ConfigError, "missing required field(s)"),
    ("config-override-seeds",
     lambda tmp: load_config(write_config(tmp), {"seeds": ["x"]}), ConfigError, "seeds[0]"),
    # the events: section (mfinfer.io.events)
    ("config-events-preset-unknown", _load(_set("events", {"preset": "nano"}), base=HIGGS_TINY), ConfigError,
     "events.preset: must be one of ['nanoaod', 'cms-tutorial'], got 'nano' (did you mean 'nanoaod'?)"),
    ("config-events-not-a-mapping", _load(_set("events", "nanoaod"), base=HIGGS_TINY), ConfigError,
     "events: expected a mapping such as {preset: nanoaod}"),
    ("config-events-no-selection", _load(_set("events", {"preset": "nanoaod"})), ConfigError,
     "events: simulator 'power' defines no event_selection()"),
    ("config-events-branch-not-an-input",
     _load(_set("events", {"preset": "nanoaod", "branches": {"Muon_px": "mu_px"}}), base=HIGGS_TINY),
     ConfigError, "events.branches.Muon_px: not an input of the selection"),
]


# ------------------------------------------------------------------ the command line
def _cli(command: str, *edits: Edit, extra: tuple[str, ...] = ()) -> Callable[[Path], list[str]]:
    return lambda tmp: [command, str(write_config(tmp, *edits)), *extra]


def _infer_events(make: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    """``infer CONFIG --events FILE`` for a file that ``make(tmp)`` writes."""
    return lambda tmp: ["infer", str(write_config(tmp)), "--events", str(make(tmp)), "--quiet", *extra]


def _infer_leptons(events: dict, schema: str, *extra: str,
                   weights: tuple[float, ...] = (1.0, 1.0)) -> Callable[[Path], list[str]]:
    """``infer CONFIG --events FILE`` on the tiny H→4ℓ config with an ``events:`` section and a
    two-event lepton file of the given schema (nothing is trained: reading must fail first)."""
    def argv(tmp: Path) -> list[str]:
        from bad_inputs_io import lepton_file

        cfg = write_config(tmp, _set("events", events), base=HIGGS_TINY)
        return ["infer", str(cfg), "--events", str(lepton_file(tmp, schema, weights)), "--quiet", *extra]

    return argv


def _garbage(tmp: Path, name: str = "garbage.root") -> Path:
    path = tmp / name
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _npz(tmp: Path, **arrays: np.ndarray) -> Path:
    path = tmp / "events.npz"
    np.savez(path, **arrays)
    return path


def _empty_tree(tmp: Path) -> Path:
    import uproot

    path = tmp / "empty_tree.root"
    with uproot.recreate(path) as f:
        f.mktree("Events", {"a": np.float64, "b": np.float64, "c": np.float64})
    return path


def _unwritable(tmp: Path) -> list[str]:
    """An output_dir that cannot be created: in a read-only directory, or (as root, who may write
    anywhere) under a regular file."""
    if os.geteuid() == 0:
        blocker = tmp / "locked"
        blocker.write_text("a file, not a directory")
    else:
        blocker = tmp / "locked"
        blocker.mkdir()
        blocker.chmod(0o500)
    return ["simulate", str(write_config(tmp, _set("output_dir", str(blocker / "runs"))))]


_UNWRITABLE = "not a directory" if hasattr(os, "geteuid") and os.geteuid() == 0 else "permission denied"

CLI_CASES: list[CliCase] = [
    ("cli-config-missing", lambda tmp: ["run", str(tmp / "missing.yaml")], "config file not found"),
    ("cli-config-directory", lambda tmp: ["train", str(tmp)], "is a directory"),
    ("cli-yaml-syntax", lambda tmp: ["run", str(_text_file(tmp, "a: [1,\n"))], "invalid yaml"),
    ("cli-n-train-str", _cli("run", _set("n_train", "abc")), "n_train: expected an integer"),
    ("cli-theta-scalar", _cli("simulate", _set("observed.theta", 0.5)), "observed.theta"),
    ("cli-unknown-option", _cli("train", _set(f"{_AF}.options.num_layer", 2)),
     "models[AF].options.num_layer: unknown option"),
    ("cli-posterior-odd", _cli("infer", _set("posterior.emcee.num_walkers", 7)),
     "posterior.emcee.num_walkers"),
    ("cli-metrics-unknown", _cli("evaluate", _set("metrics", {"kde": 1})), "unknown fields ['kde']"),
    ("cli-device-gpu", _cli("run", extra=("--device", "gpu")), "device: must be"),
    ("cli-seeds-not-int", _cli("run", extra=("--seeds", "x")), "--seeds: expected an integer >= 0, got 'x'"),
    ("cli-seeds-duplicate", _cli("run", extra=("--seeds", "1", "1")), "distinct"),
    ("cli-workers-zero", _cli("run", extra=("--workers", "0")), "--workers: expected an integer >= 1"),
    ("cli-unknown-stage", _cli("run", extra=("--stages", "fit")), "invalid choice: 'fit'"),
    ("cli-train-unknown-model", _cli("train", extra=("--model", "NOPE")),
     "no model named 'nope' in"),
    ("cli-simulate-n-zero", lambda tmp: ["simulate", str(write_config(tmp)), "--out", str(tmp / "x.npz"),
                                         "--n", "0"], "--n: expected an integer >= 1, got 0"),
    ("cli-simulate-n-without-out", _cli("simulate", extra=("--n", "5")), "apply only with --out"),
    ("cli-simulate-out-suffix", _cli("simulate", extra=("--out", "x.csv")),
     "--out: expected a .root or .npz"),
    ("cli-simulate-theta-outside", _cli("simulate", extra=("--out", "x.npz", "--theta", "3")),
     "outside the prior"),
    ("cli-infer-events-missing", _infer_events(lambda tmp: tmp / "missing.root"), "no such root file"),
    ("cli-infer-events-garbage", _infer_events(_garbage), "garbage.root: truncated or corrupt"),
    ("cli-infer-events-directory", _infer_events(lambda tmp: tmp), "got a directory"),
    ("cli-infer-npz-garbage", _infer_events(lambda tmp: _garbage(tmp, "garbage.npz")),
     "not a readable .npz file of events (not a .npz (zip) archive)"),
    ("cli-infer-npz-no-x", _infer_events(lambda tmp: _npz(tmp, y=np.zeros((3, 3)))), "no array 'x'"),
    ("cli-infer-npz-wrong-columns", _infer_events(lambda tmp: _npz(tmp, x=np.zeros((3, 2)))),
     "expected events of shape (n >= 1, 3)"),
    ("cli-infer-empty-selection", _infer_events(_empty_tree, "--tree", "Events", "--branches", "a", "b", "c"),
     "no events selected"),
    ("cli-infer-leptons-no-selection", _infer_events(lambda tmp: tmp / "any.root", "--leptons"),
     "defines no event_selection()"),
    ("cli-output-dir-unwritable", _unwritable, _UNWRITABLE),
    ("cli-infer-events-preset-mismatch", _infer_leptons({"preset": "nanoaod"}, "cms-tutorial"),
     "does not match preset 'nanoaod'"),
    ("cli-infer-events-branch-map-missing",
     _infer_leptons({"preset": "cms-tutorial", "branches": {"Muon_E": "Muon_Energy"}}, "cms-tutorial"),
     "lacks the branches 'muon_energy' (for muon_e = 'muon_energy')"),
    ("cli-infer-events-weight-nan",
     _infer_leptons({"preset": "nanoaod", "weight": "genWeight"}, "nanoaod", weights=(float("nan"), 1.0)),
     "weight 'genweight' in tree 'events' is nan or inf at 1 of the 2 selected events"),
    ("cli-infer-strict-without-events", _cli("infer", extra=("--strict",)),
     "--strict: applies only with --events"),
    ("cli-infer-strict-and-drop",
     _cli("infer", extra=("--events", "x.npz", "--strict", "--on-manifold-only")),
     "not allowed with argument"),
]


def _text_file(tmp: Path, text: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(text)
    return path
