"""Bad values that must never pass silently (issue 20): files written and later trusted (an sbi NLE,
a calibration record) checked against their digests, NaN weights, a write that fails, non-finite
values at every boundary (branch expressions, selected observables, sample files, ``write_events``,
``--events``), model constructors without layers, and simulators' log-likelihoods far outside
their support.

``CASES`` holds ``(id, call, exc_type, keyword)``: ``call(tmp_path)`` must raise ``exc_type`` with
``keyword`` in the (lower-cased) message. ``CLI_CASES`` holds ``(id, argv, keyword)``:
``mfinfer.cli.main(argv(tmp_path))`` must exit with 2 and one line holding ``keyword``.
``RESULT_CASES`` holds ``(id, call)``: ``call(tmp_path)`` returns log-likelihoods that must be
finite or -inf, never NaN or +inf. ``tests/test_bad_inputs.py`` runs them all.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from bad_inputs_cli import write_config

from mfinfer import AmbientFlow, FOMFlow, Gaussian, ManifoldFlow, get_simulator
from mfinfer.errors import ConfigError, CorruptFileError, InputError
from mfinfer.files import atomic_write

__all__ = ["CASES", "CLI_CASES", "RESULT_CASES"]


# ------------------------------------------------------------------ files trusted later
def _nle(tmp: Path, name: str, seed: int) -> tuple[Path, np.ndarray, np.ndarray, Any]:
    """An untrained sbi NLE network saved with save_nle in ``tmp/name`` (seconds to build)."""
    import torch
    from sbi.neural_nets import likelihood_nn

    from mfinfer.caching import array_digest
    from mfinfer.interop.nle import save_nle

    rng = np.random.default_rng(0)
    theta, x = rng.uniform(-1, 1, (50, 1)), rng.normal(size=(50, 2))
    torch.manual_seed(seed)
    net = likelihood_nn("maf", hidden_features=8, num_transforms=1)(
        torch.as_tensor(theta, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32))
    save_nle(net, {"density_estimator": "maf", "data_sha256": array_digest(x, theta)}, tmp / name)
    return tmp / name, theta, x, net


def _nle_swapped(tmp: Path) -> object:
    from mfinfer.interop.nle import load_nle

    a, theta, x, _ = _nle(tmp, "a", 0)
    b, *_ = _nle(tmp, "b", 1)
    (a / "weights.pt").write_bytes((b / "weights.pt").read_bytes())  # another NLE's weights
    return load_nle(a, theta, x)


def _nle_unchecked(tmp: Path) -> object:
    from mfinfer.interop.nle import load_nle

    a, theta, x, _ = _nle(tmp, "a", 0)
    meta = json.loads((a / "nle.json").read_text())
    del meta["sha256"]
    (a / "nle.json").write_text(json.dumps(meta))
    return load_nle(a, theta, x)


def _nan_weights(net: Any) -> Any:
    import torch

    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("nan")
    return net


def _nle_save_nan(tmp: Path) -> object:
    from mfinfer.interop.nle import save_nle

    *_, net = _nle(tmp, "a", 0)
    return save_nle(_nan_weights(net), {}, tmp / "b")


def _nle_nan_events(tmp: Path) -> object:
    from mfinfer.interop.nle import NLELikelihood

    *_, net = _nle(tmp, "a", 0)
    return NLELikelihood(net, np.array([[0.0, 1.0], [np.nan, 0.0]]))


def _model_nan_weights(tmp: Path) -> object:
    from mfinfer.inference import ModelLikelihood

    return ModelLikelihood(_nan_weights(AmbientFlow(3, param_dim=1, num_layers=1, hidden_features=8)),
                           np.zeros((2, 3)))


def _edited_record(tmp: Path) -> object:
    """A calibration record changed by hand with its key kept: reading it must fail (a rerun
    recomputes it: ``is_current`` is False); the untouched record reads back."""
    from mfinfer.calibration.observation import ObservationTask, Source, record_digest
    from mfinfer.calibration.report import read_records

    task = ObservationTask({"name": "power"}, 0, 5, 20, "smc", records=str(tmp / "records"))
    source = Source("truth")
    record = {"key": task.key(source, 0), "model": "truth", "observation": 0, "theta": [0.1],
              "num_samples": 20, "ranks": [3], "hpd_rank": 4, "tarp": 0.5, "dap_sample": [0.0],
              "converged": True}
    path = task.path("truth", 0)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**record, "sha256": record_digest(record)}))
    read_records(task, source, 1)  # intact: read back
    path.write_text(json.dumps({**record, "hpd_rank": 19, "sha256": record_digest(record)}))
    if task.is_current(source, 0):
        raise AssertionError("an edited record counts as current")
    return read_records(task, source, 1)


def _disk_full(tmp: Path) -> object:
    def write(f: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return atomic_write(tmp / "out" / "metrics.json", write)


def _nanoaod_div0(tmp: Path) -> object:
    from bad_inputs_io import lepton_file

    from mfinfer.io import read_lepton_events

    return read_lepton_events(lepton_file(tmp), get_simulator("higgs4l"),
                              {"branches": {"Electron_pt": "Electron_pt / Electron_mass"}})


def _user_div0(tmp: Path) -> object:
    from bad_inputs_io import _user_file

    from mfinfer.io import read_user_events

    return read_user_events(_user_file(tmp), "Events", {"c": "x / (y - 1)"})


def _write(**arrays: Any) -> Callable[[Path], object]:
    def call(tmp: Path) -> object:
        from mfinfer.io import write_events

        x = arrays.get("x", np.zeros((3, 2)))
        return write_events(tmp / "w.root", x, arrays.get("theta"), extra=arrays.get("extra"))

    return call


def _read_nan_sample(tmp: Path) -> object:
    """An mfinfer sample file holding a NaN (written with the writer's check switched off, as an
    older mfinfer or another tool could have), read back."""
    from unittest import mock

    from mfinfer.io import read_events, write_events

    with mock.patch("mfinfer.io.root.nonfinite_rows", return_value=np.empty(0, dtype=np.int64)):
        path = write_events(tmp / "old.root", _NAN_ROW)
    return read_events(path)


_NAN_ROW = np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 1.0]])

CASES: list[tuple[Any, ...]] = [
    # files written and later trusted are verified
    ("nle-weights-of-another", _nle_swapped, CorruptFileError, "sha-256 does not match nle.json"),
    ("nle-sidecar-without-digest", _nle_unchecked, CorruptFileError, "holds no sha-256 of weights.pt"),
    ("nle-save-nan-weights", _nle_save_nan, InputError, "estimator: 1 weight tensor(s) hold nan or inf"),
    ("nle-likelihood-nan-events", _nle_nan_events, InputError, "x: 1 of 2 row(s) contain nan"),
    ("likelihood-nan-model-weights", _model_nan_weights, InputError, "model: 1 weight tensor(s)"),
    ("calibration-record-edited", _edited_record, ConfigError, "changed after it was written"),
    ("os-disk-full-names-path", _disk_full, OSError, "no space left on device while writing"),
    # non-finite values at every boundary
    ("finite-expression-div0", _user_div0, InputError,
     "user.root: column 'c' = 'x / (y - 1)' in tree 'events' is nan or inf in 3 of 3 events"),
    ("finite-lepton-expression-div0", _nanoaod_div0, InputError,
     "input 'electron_pt' = 'electron_pt / electron_mass' in tree 'events' is nan or inf in 2 of 2"),
    ("finite-write-nan-x", _write(x=_NAN_ROW), InputError, "x: 1 of 3 events hold nan or inf"),
    ("finite-write-inf-theta", _write(theta=np.array([0.0, np.inf, 0.0])), InputError,
     "theta: 1 of 3 events"),
    ("finite-write-nan-extra", _write(extra={"weight": np.array([1.0, np.nan, 1.0])}), InputError,
     "extra['weight']: 1 of 3 events"),
    ("finite-read-nan-sample", _read_nan_sample, InputError,
     "old.root: the observables in tree 'events' are nan or inf in 1 of 3 events (first: entry 1)"),
    ("ctor-af-no-layers", lambda tmp: AmbientFlow(3, num_layers=0), InputError,
     "ambientflow: num_layers: expected an integer >= 1, got 0"),
    ("ctor-af-zero-width", lambda tmp: AmbientFlow(3, hidden_features=0), InputError, "hidden_features"),
    ("ctor-af-zero-blocks", lambda tmp: AmbientFlow(3, num_blocks=0), InputError, "num_blocks"),
    ("ctor-af-nan-tail", lambda tmp: AmbientFlow(3, tail_bound=float("nan")), InputError,
     "tail_bound: expected a finite number > 0"),
    ("ctor-af-data-dim-float", lambda tmp: AmbientFlow(2.5), InputError, "data_dim"),  # type: ignore[arg-type]
    ("ctor-af-negative-param-dim", lambda tmp: AmbientFlow(3, param_dim=-1), InputError, "param_dim"),
    ("ctor-mflow-no-outer", lambda tmp: ManifoldFlow(3, 2, outer_layers=0), InputError, "outer_layers"),
    ("ctor-mflow-no-inner", lambda tmp: ManifoldFlow(3, 2, inner_layers=0), InputError, "inner_layers"),
    ("ctor-fom-no-layers", lambda tmp: FOMFlow(get_simulator("circle"), inner_layers=0), InputError,
     "fomflow: inner_layers"),
    ("prior-gaussian-nan-scale", lambda tmp: Gaussian((0.0,), (float("nan"),)), InputError,
     "scale (std): expected a non-empty vector of finite numbers, got [nan]"),
]


def _finite(log_like: Callable[[], np.ndarray]) -> Callable[[Path], np.ndarray]:
    return lambda tmp: log_like()


def _far(name: str, column: int, value: float) -> Callable[[], np.ndarray]:
    def call() -> np.ndarray:
        sim = get_simulator(name)
        theta = sim.prior.sample(1, np.random.default_rng(0))
        x = sim.sample(theta, np.random.default_rng(1))
        x[0, column] = value
        return sim.log_likelihood(x, theta)

    return call


RESULT_CASES: list[tuple[str, Callable[[Path], np.ndarray]]] = [
    ("power-x-1e100", _finite(_far("power", 0, 1e100))),
    ("power-x-minus-1e300", _finite(_far("power", 2, -1e300))),
    ("higgs4l-x-1e30", _finite(_far("higgs4l", 0, 1e30))),
    ("higgs4l-x-minus-1e30", _finite(_far("higgs4l", 0, -1e30))),
    ("higgs4l-x-1e300-pz", _finite(_far("higgs4l", 3, 1e300))),
]


# ------------------------------------------------------------------ the command line
def _cli_npz_nan(tmp: Path) -> list[str]:
    path = tmp / "events.npz"
    np.savez(path, x=np.array([[0.1, 0.2, 0.3], [np.nan, 0.0, 0.0]]))
    return ["infer", str(write_config(tmp)), "--events", str(path), "--quiet"]


CLI_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("cli-events-npz-nan", _cli_npz_nan, "events.npz: 1 of 2 row(s) contain nan or inf"),
]
