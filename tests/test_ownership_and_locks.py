"""What a run may delete and when it may work (issue 20): a model named '..' or '.' no longer
deletes the seed directory or the other models; a model directory is deleted for retraining only
when the run created it (marker) or recorded it (legacy identity.json); the run-directory lock
names its holder, is re-entrant in one process, and a lock file left by a dead process is reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bad_inputs_cli import TINY

from mfinfer.config import load_config
from mfinfer.errors import ConfigError
from mfinfer.files import LockedError, claim_dir, directory_lock, remove_owned_dir
from mfinfer.files.ownership import OWNER_MARKER
from mfinfer.pipeline import Run


def _config(tmp: Path, models: list[dict]) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    first = cfg["models"][0]
    cfg |= {"output_dir": str(tmp / "runs"), "n_train": 200,
            "models": [{**first, **m, "train": {"epochs": 1, "batch_size": 100}} for m in models]}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _tree(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if ".lock" not in p.name}


@pytest.mark.parametrize("name", ["..", "."])
def test_a_dot_model_name_deletes_nothing(tmp_path, name):
    """The reproduction of issue 20: train AF, then add a model named '..' (which used to delete
    seed_0/) or '.' (which deleted every other model): refused, every file kept."""
    run = Run(load_config(_config(tmp_path, [{"name": "AF"}])), 0, progress=False)
    run.simulate()
    run.train()
    before = _tree(run.dir)
    assert f"models/AF/{OWNER_MARKER}" in before and "models/AF/final/weights.pt" in before
    with pytest.raises(ConfigError, match=r"models\[1\]\.name|names a file or folder"):
        load_config(_config(tmp_path, [{"name": "AF"}, {"name": name}]))
    assert _tree(run.dir) == before


def test_retraining_deletes_only_what_the_run_made(tmp_path):
    run = Run(load_config(_config(tmp_path, [{"name": "AF"}])), 0, progress=False)
    run.simulate()
    run.train()
    directory = run.model_dir(run.config.models[0])
    (directory / "stale.txt").write_text("from the old training")
    run.train(force=True)  # marked: deleted and trained afresh
    assert not (directory / "stale.txt").exists() and (directory / OWNER_MARKER).is_file()
    # a directory from before the markers: accepted when its identity.json names the model
    (directory / OWNER_MARKER).unlink()
    run.train(force=True)
    assert (directory / OWNER_MARKER).is_file()
    # ... and refused when it names another
    (directory / OWNER_MARKER).unlink()
    identity = json.loads((directory / "identity.json").read_text())
    identity["inputs"]["name"] = "someone else"
    (directory / "identity.json").write_text(json.dumps(identity))
    with pytest.raises(ConfigError, match="not deleted: mfinfer did not create this directory"):
        run.train(force=True)
    assert (directory / "final" / "weights.pt").is_file()


def test_claim_marks_only_directories_it_creates(tmp_path):
    root = tmp_path / "run"
    (root / "mine").mkdir(parents=True)
    claim_dir(root / "mine", root)  # existed already: never adopted
    with pytest.raises(ConfigError, match=r"no \.mfinfer-owned marker"):
        remove_owned_dir(root / "mine", root)
    claim_dir(root / "new" / "deep", root)
    (root / "moved").mkdir()
    os.replace(root / "new" / "deep" / OWNER_MARKER, root / "moved" / OWNER_MARKER)
    with pytest.raises(ConfigError, match=r"no \.mfinfer-owned marker"):  # a marker of another path
        remove_owned_dir(root / "moved", root)
    claim_dir(root / "fresh", root)
    remove_owned_dir(root / "fresh", root)
    assert not (root / "fresh").exists() and (root / "mine").is_dir()
    with pytest.raises(ConfigError, match="outside the run directory"):
        claim_dir(tmp_path / "elsewhere", root)


def test_lock_is_reentrant_names_its_holder_and_outlives_no_one(tmp_path):
    directory = tmp_path / "run"
    with directory_lock(directory), directory_lock(directory):  # nested stages of one process
        record = json.loads((directory / ".lock").read_text())
        assert record["pid"] == os.getpid()
    # a lock file left by a process that is gone (no flock held): reused at once
    (directory / ".lock").write_text(json.dumps({"pid": 999_999_999, "host": "gone"}))
    with directory_lock(directory):
        pass
    # another process holds it: its PID is named; the lock is free again once it exits
    code = ("import fcntl, json, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.pwrite(fd, json.dumps({'pid': os.getpid(), "
            "'host': 'h'}).encode() + b' ' * 40, 0); print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(directory / ".lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"in use by process {holder.pid}"), directory_lock(directory):
            pass
    finally:
        holder.kill()
        holder.wait()
    with directory_lock(directory, wait=5):
        pass
