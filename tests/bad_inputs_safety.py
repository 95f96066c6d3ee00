"""Bad inputs that could turn mfinfer against its user (issue 20): names that become paths and the
directories a run may delete, configs built to exhaust memory or abort the process, a busy run
directory, calibration settings that make meaningless results, an address that is not a dask
scheduler. (Bad values and files trusted later: ``bad_inputs_values.py``.)

``CASES`` holds ``(id, call, exc_type, keyword)`` (optionally a fifth element, pytest marks):
``call(tmp_path)`` must raise ``exc_type`` with ``keyword`` in the (lower-cased) message.
``CLI_CASES`` holds ``(id, argv, keyword)``: ``mfinfer.cli.main(argv(tmp_path))`` must exit with 2
and one line holding ``keyword``. ``tests/test_bad_inputs.py`` runs them all.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bad_inputs_cli import set_field, write_config

from mfinfer._validation import path_name
from mfinfer.config import ModelConfig, load_config
from mfinfer.errors import ConfigError, InputError
from mfinfer.files import LockedError, directory_lock, remove_owned_dir

__all__ = ["CASES", "CLI_CASES"]

CALIBRATION = Path(__file__).parent / "configs" / "calibration_truth.yaml"
_held: list[int] = []  # lock file descriptors the CLI cases keep open while mfinfer runs


def _load(*edits: Callable[[dict], None]) -> Callable[[Path], object]:
    return lambda tmp: load_config(write_config(tmp, *edits))


def _text(text: str) -> Callable[[Path], object]:
    def call(tmp: Path) -> object:
        path = tmp / "config.yaml"
        path.write_text(text)
        return load_config(path)

    return call


def _bounded(call: Callable[[Path], object], limit: int = 600) -> Callable[[Path], object]:
    """``call``, whose error message must stay under ``limit`` characters (bounded reprs)."""
    def wrapped(tmp: Path) -> object:
        try:
            return call(tmp)
        except Exception as err:
            if len(str(err)) > limit:
                raise AssertionError(f"a message of {len(str(err))} characters") from err
            raise

    return wrapped


def _laughs(levels: int = 9) -> str:
    """A 'billion laughs' YAML: 9 levels of 9 aliases of the level below (9^9 strings)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def _models(*names: str) -> Callable[[dict], None]:
    """Models named ``names``, each a copy of the tiny config's first model."""
    def edit(cfg: dict) -> None:
        cfg["models"] = [dict(cfg["models"][0], name=n) for n in names]

    return edit


# ------------------------------------------------------------------ directories the run owns
def _untouched(tmp: Path, action: Callable[[Path], object], keep: Path) -> object:
    """Run ``action``; ``keep`` (a user's file) must survive whatever it raises."""
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.write_text("the user's work")
    try:
        return action(tmp)
    finally:
        if keep.read_text() != "the user's work":
            raise AssertionError(f"{keep} was deleted or changed")


def _train_over_foreign_dir(tmp: Path) -> object:
    """``models/AF`` exists but the run did not create it (no marker, no identity): training AF
    must refuse to delete it."""
    from mfinfer.pipeline import Run

    run = Run(load_config(write_config(tmp)), 0, progress=False)
    run.simulate()
    return _untouched(tmp, lambda _: run.train(only="AF"), run.dir / "models" / "AF" / "notes.txt")


def _remove_unmarked(tmp: Path) -> object:
    root = tmp / "run"
    return _untouched(tmp, lambda _: remove_owned_dir(root / "models" / "x", root),
                      root / "models" / "x" / "notes.txt")


def _remove_symlink(tmp: Path) -> object:
    root, outside = tmp / "run", tmp / "elsewhere"
    (root / "models").mkdir(parents=True)
    (root / "models" / "x").symlink_to(outside, target_is_directory=True)
    return _untouched(tmp, lambda _: remove_owned_dir(root / "models" / "x", root), outside / "notes.txt")


def _remove_outside(tmp: Path) -> object:
    root = tmp / "run"
    root.mkdir()
    return _untouched(tmp, lambda _: remove_owned_dir(root / "..", root), tmp / "notes.txt")


def _infer_tag(tmp: Path) -> object:
    from mfinfer.pipeline import Run

    return Run(load_config(write_config(tmp)), 0, progress=False).infer(np.zeros((2, 3)), tag="../../x")


# ------------------------------------------------------------------ a busy run directory
def _locked_by(directory: Path, pid: int = 4242) -> int:
    """Hold ``directory/.lock`` as another process would (flock on our own open file, which the
    kernel treats as another holder) and record ``pid`` as the holder; returns the descriptor."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, json.dumps({"pid": pid, "host": "elsewhere"}).encode(), 0)
    return fd


def _lock_busy(tmp: Path) -> object:
    fd = _locked_by(tmp / "run")
    try:
        with directory_lock(tmp / "run"):
            raise AssertionError("a second holder got the lock")
    finally:
        os.close(fd)



# ------------------------------------------------------------------ calibration and dask
def _campaign(**calibration: Any) -> Callable[[Path], object]:
    def call(tmp: Path) -> object:
        from mfinfer.calibration import load_campaign

        data = yaml.safe_load(CALIBRATION.read_text())
        data["calibration"] |= calibration
        path = tmp / "calibration.yaml"
        path.write_text(yaml.safe_dump(data))
        return load_campaign(path, {"output_dir": str(tmp)})

    return call


def _garbage_server() -> str:
    """A TCP server on 127.0.0.1 that answers every connection with HTTP, not dask."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + bytes(range(256)) * 64)

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{server.getsockname()[1]}"


def _scheduler(address: Callable[[], str]) -> Callable[[Path], object]:
    def call(tmp: Path) -> object:
        from mfinfer.parallel import dask_client

        with dask_client(scheduler=address()):
            raise AssertionError("connected")

    return call


_AF = "models.0"

CASES: list[tuple[Any, ...]] = [
    # names that become paths: one rule, checked when a config is read and in the API
    ("name-model-dotdot", _load(_models("..")), ConfigError, "models[..].name: names a file or folder"),
    ("name-model-dot", _load(_models(".")), ConfigError, "got '.'"),
    ("name-model-hidden", _load(_models(".git")), ConfigError, "must start with a letter or digit"),
    ("name-model-backslash", _load(_models("a\\b")), ConfigError, "names a file or folder"),
    ("name-model-slash-collision", _load(_models("M/D", "M-D")), ConfigError, "would share a folder"),
    ("name-model-case-collision", _load(_models("AF", "af")), ConfigError, "would share a folder"),
    ("name-model-too-long", _bounded(_load(_models("a" * 5000))), ConfigError, "at most 100 characters"),
    ("name-run-dotdot", _load(set_field("name", "..")), ConfigError, "name: names a file or folder"),
    ("name-run-trailing-dot", _load(set_field("name", "run.")), ConfigError, "not end with a space or '.'"),
    ("name-api-model-config", lambda tmp: ModelConfig(name="..", kind="AmbientFlow"), ConfigError,
     "names a file or folder"),
    ("name-api-path-name", lambda tmp: path_name("../etc"), InputError, "must start with a letter"),
    ("name-api-infer-tag", _infer_tag, InputError, "tag: names a file or folder"),
    ("owned-train-over-foreign-dir", _train_over_foreign_dir, ConfigError,
     "not deleted: mfinfer did not create this directory"),
    ("owned-remove-unmarked", _remove_unmarked, ConfigError, "no .mfinfer-owned marker"),
    ("owned-remove-symlink", _remove_symlink, ConfigError, "symbolic link"),
    ("owned-remove-outside", _remove_outside, ConfigError, "outside the run directory"),
    # config reading that cannot be turned against the reader
    ("yaml-billion-laughs", _bounded(_text(_laughs())), ConfigError,
     "more than 100000 values once its anchors and aliases"),
    ("yaml-recursive-alias", _text("name: &a [*a]\n"), ConfigError, "recursive"),
    ("yaml-deep-nesting", _text("name: " + "[" * 40 + "]" * 40 + "\n"), ConfigError, "nested more than 32"),
    ("yaml-flow-nesting-1mb", _text("[" * 500_000 + "]" * 500_000), ConfigError, "nested more than 32"),
    ("yaml-block-nesting", _text("".join("  " * i + f"k{i}:\n" for i in range(900)) + "  " * 900 + "1\n"),
     ConfigError, "nested too deeply"),
    ("yaml-too-large", _text("# padding\n" * 120_000), ConfigError, "larger than 1024 kib"),
    ("bound-threads", _load(set_field("threads", 1_000_000)), ConfigError,
     "threads: expected an integer >= 1 and <= 1024, got 1000000"),
    ("bound-n-train", _load(set_field("n_train", 10**12)), ConfigError,
     "n_train: expected an integer >= 2 and"),
    ("bound-n-events", _load(set_field("observed.n_events", 10**10)), ConfigError, "observed.n_events"),
    ("bound-model-width", _load(set_field(f"{_AF}.options.hidden_features", 10**7)), ConfigError,
     "hidden_features: expected an integer >= 1 and <= 10000"),
    ("bound-repr-long-string", _bounded(_load(set_field("device", "g" * 100_000))), ConfigError, "device"),
    ("bound-repr-long-list", _bounded(_load(set_field("seeds", ["x"] * 3_000))), ConfigError, "seeds[0]"),
    ("bound-repr-wide-theta", _bounded(_load(set_field("observed.theta", [[0.0] * 3_000]))), ConfigError,
     "observed.theta[0]"),
    ("lock-held-by-another-process", _lock_busy, LockedError, "in use by process 4242"),
    # calibration: meaningful ranks, bounded counts, a scheduler that is not one
    ("calibration-num-samples-1", _campaign(num_samples=1), ConfigError,
     "calibration.num_samples: expected an integer >= 20"),
    ("calibration-num-samples-fine-levels", _campaign(num_samples=50, levels=[0.5, 0.51]), ConfigError,
     "use at least 99"),
    ("calibration-n-observations-huge", _campaign(n_observations=10**12), ConfigError,
     "calibration.n_observations"),
    ("calibration-scheduler-not-dask", _scheduler(_garbage_server), InputError, "is not a dask scheduler"),
    ("calibration-scheduler-no-port", _scheduler(lambda: "tcp://127.0.0.1"), InputError,
     "expected an address tcp://host:port"),
]



# ------------------------------------------------------------------ the command line
def _cli(command: str, *edits: Callable[[dict], None],
         extra: tuple[str, ...] = ()) -> Callable[[Path], list[str]]:
    return lambda tmp: [command, str(write_config(tmp, *edits)), *extra]


def _cli_locked(tmp: Path) -> list[str]:
    config = write_config(tmp)
    _held.append(_locked_by(tmp / "runs" / "tiny" / "seed_0"))  # held while mfinfer runs
    return ["simulate", str(config)]


def _cli_text(text: str, command: str = "run") -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        path = tmp / "config.yaml"
        path.write_text(text)
        return [command, str(path)]

    return argv


def _cli_calibrate(*extra: str, **calibration: Any) -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        data = yaml.safe_load(CALIBRATION.read_text())
        data["calibration"] |= calibration
        path = tmp / "calibration.yaml"
        path.write_text(yaml.safe_dump(data))
        return ["calibrate", str(path), "--quiet", "--output-dir", str(tmp), *extra]

    return argv


CLI_CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("cli-model-name-dotdot", _cli("train", _models("AF", "..")), "models[..].name: names a file or folder"),
    ("cli-billion-laughs", _cli_text(_laughs()), "more than 100000 values"),
    ("cli-threads-huge", _cli("run", set_field("threads", 1_000_000)), "threads: expected an integer"),
    ("cli-run-dir-locked", _cli_locked, "in use by process 4242"),
    ("cli-calibrate-num-samples-1", _cli_calibrate(num_samples=1), "calibration.num_samples"),
    ("cli-calibrate-scheduler-not-dask", lambda tmp: _cli_calibrate("--scheduler", _garbage_server())(tmp),
     "is not a dask scheduler"),
]
