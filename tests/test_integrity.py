"""File integrity: SHA-256-checked model and checkpoint pairs, atomic writes that survive SIGKILL,
stale temps cleaned, file modes, and clear errors for damaged files."""

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_inputs_files import (
    CASES,
    Payload,
    flip_tensor_byte,
    saved_model,
    tensor_data_span,
    trained_run,
)

from mfinfer.errors import CorruptFileError
from mfinfer.files import (
    TEMP_DIR,
    atomic,
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    atomic_write_pair,
    clean_temp,
    open_pair,
    read_json,
    sha256_file,
    torch_load_tensors,
)
from mfinfer.models import load_model
from mfinfer.training import train

ROOT = Path(__file__).resolve().parents[1]


def _assert_no_unsafe_advice(excinfo):
    text = "".join(traceback.format_exception(excinfo.value))
    assert "weights_only=False" not in text and "weights_only` set to `False" not in text


# (a) a flipped byte in weights.pt is refused ------------------------------------------------

def test_flipped_weight_byte_is_detected(tmp_path):
    directory = saved_model(tmp_path)
    meta = json.loads((directory / "model.json").read_text())
    assert meta["sha256"] == {"weights.pt": sha256_file(directory / "weights.pt")}
    before = load_model(directory).state_dict()
    # the flipped byte lies inside a parameter's raw bytes: torch.load alone reads other weights
    start, length = tensor_data_span(directory / "weights.pt")
    raw = (directory / "weights.pt").read_bytes()[start:start + length]
    assert any(raw == v.numpy().tobytes() for v in before.values())
    flip_tensor_byte(directory / "weights.pt")
    silently = torch.load(directory / "weights.pt", weights_only=True)
    assert not all(torch.equal(silently[k], before[k]) for k in before)
    with pytest.raises(CorruptFileError, match=r"weights\.pt: SHA-256 does not match model\.json") as err:
        load_model(directory)
    assert str(directory / "weights.pt") in str(err.value)
    assert "re-train" in str(err.value) and isinstance(err.value, OSError)


def test_model_json_without_digest_still_loads(tmp_path):
    directory = saved_model(tmp_path)
    reference = load_model(directory).state_dict()
    legacy = saved_model(tmp_path, legacy=True)  # same directory, rewritten without the digest
    assert "sha256" not in json.loads((legacy / "model.json").read_text())
    state = load_model(legacy).state_dict()
    assert state.keys() == reference.keys()


# (b) a damaged checkpoint is refused on resume ---------------------------------------------

def test_flipped_checkpoint_byte_is_detected_on_resume(tmp_path):
    model, x, cfg, run = trained_run(tmp_path)
    sidecar = json.loads((run / "checkpoint.json").read_text())
    assert sidecar["sha256"] == {"checkpoint.pt": sha256_file(run / "checkpoint.pt")}
    assert train(model, x, config=cfg, run_dir=run, resume=True)  # intact: resumes (nothing left)
    flip_tensor_byte(run / "checkpoint.pt")
    with pytest.raises(CorruptFileError, match=r"checkpoint\.pt: SHA-256 does not match checkpoint\.json"):
        train(model, x, config=cfg, run_dir=run, resume=True)


def test_checkpoint_without_sidecar_resumes(tmp_path):
    model, x, cfg, run = trained_run(tmp_path)
    (run / "checkpoint.json").unlink()  # a run directory from before the sidecar existed
    assert len(train(model, x, config=cfg, run_dir=run, resume=True)) == 2
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:-40])
    with pytest.raises(CorruptFileError, match=r"checkpoint\.pt: expected a PyTorch file.*truncated"):
        train(model, x, config=cfg, run_dir=run, resume=True)


# (c) SIGKILL during an atomic write ---------------------------------------------------------

SLOW_WRITER = textwrap.dedent("""
    import sys, time
    from mfinfer.files import atomic_write

    def write(f):
        f.write(b"n" * 4_000_000)
        f.flush()
        print("half", flush=True)
        time.sleep(120)
        f.write(b"never")

    atomic_write(sys.argv[1], write)
""")


def _killed_mid_write(target: Path, check_live: bool) -> Path:
    """Run a writer of ``target`` and SIGKILL it mid-write; returns its temp in ``.tmp/``.
    ``check_live``: check first that ``clean_temp`` keeps the temp of the live writer (it then
    counts the directory as cleaned for this process)."""
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)], stdout=subprocess.PIPE,
                            cwd=ROOT, text=True)
    try:
        assert proc.stdout.readline() == "half\n"
        temps = list((target.parent / TEMP_DIR).iterdir())
        assert len(temps) == 1 and temps[0].name.startswith(f"{target.name}.")
        if check_live:
            assert clean_temp(target.parent) == [] and temps[0].exists()  # its writer is alive: kept
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    return temps[0]


@pytest.mark.parametrize("cleaner", ["clean_temp", "next_write"])
def test_kill_mid_write_keeps_old_file_and_temp_is_cleaned(tmp_path, cleaner):
    target = tmp_path / "big.bin"
    target.write_bytes(b"old content")
    temp = _killed_mid_write(target, check_live=cleaner == "clean_temp")
    assert target.read_bytes() == b"old content"
    assert temp.stat().st_size >= 4_000_000  # the half-written temp was left behind
    if cleaner == "clean_temp":
        assert clean_temp(tmp_path) == [temp]
    else:  # the first write into the directory in a process cleans it
        atomic_write(tmp_path / "other.txt", lambda f: f.write("x"), "w")
    assert not temp.exists()
    assert not (tmp_path / TEMP_DIR).exists()  # an empty .tmp/ is removed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["big.bin"] + (["other.txt"] if cleaner == "next_write" else []))


def test_clean_temp_rules(tmp_path):
    """Foreign-host temps go after a day; our pid's temps only if older than this process; files
    not named like our temps stay."""
    tmpdir = tmp_path / TEMP_DIR
    tmpdir.mkdir()
    day = 24 * 3600
    names = {
        "old-foreign": ("a.bin.00000000-1.abc.tmp", 2 * day),
        "new-foreign": ("a.bin.00000000-1.abd.tmp", 60),
        "ours-before-start": (f"a.bin.{atomic._HOST}-{os.getpid()}.abe.tmp", day),
        "ours-now": (f"a.bin.{atomic._HOST}-{os.getpid()}.abf.tmp", 0),
        "not-ours": ("notes.txt", 2 * day),
    }
    now = time.time()
    for name, age in names.values():
        (tmpdir / name).write_bytes(b"x")
        os.utime(tmpdir / name, (now - age, now - age))
    removed = {p.name for p in clean_temp(tmp_path)}
    assert removed == {names["old-foreign"][0], names["ours-before-start"][0]}
    assert sorted(p.name for p in tmpdir.iterdir()) == sorted(
        names[k][0] for k in ("new-foreign", "ours-now", "not-ours"))


def test_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "a.json").write_text("{}")

    def boom(f):
        f.write("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(tmp_path / "a.json", boom, "w")
    assert read_json(tmp_path / "a.json") == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


# (d) file modes --------------------------------------------------------------------------

@pytest.mark.parametrize("umask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        paths = [
            atomic_write(tmp_path / "a.bin", lambda f: f.write(b"a")),
            atomic_write_json({"a": 1}, tmp_path / "a.json"),
            atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "a.pt"),
            saved_model(tmp_path) / "weights.pt",
            tmp_path / "model" / "model.json",
        ]
    finally:
        os.umask(old)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


# (e) pairs: the sidecar is renamed last; readers never use half a pair --------------------

@pytest.fixture
def renames(monkeypatch) -> list[tuple[str, str]]:
    """Every os.replace as (source folder, target name), in order."""
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src, dst):
        seen.append((Path(src).parent.name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    return seen


def test_pair_sidecar_is_renamed_last(tmp_path, renames):
    digests = atomic_write_pair({tmp_path / "a.bin": lambda f: f.write(b"a" * 10),
                                 tmp_path / "b.bin": lambda f: f.write(b"b" * 10)},
                                tmp_path / "pair.json", {"n": 1})
    assert [name for _, name in renames] == ["a.bin", "b.bin", "pair.json"]
    meta = json.loads((tmp_path / "pair.json").read_text())
    assert meta == {"n": 1, "sha256": digests}
    assert digests == {n: sha256_file(tmp_path / n) for n in ("a.bin", "b.bin")}
    renames.clear()
    saved_model(tmp_path)
    assert [name for _, name in renames] == ["weights.pt", "model.json"]


DIE_BEFORE_SIDECAR = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from mfinfer.files import atomic_write_pair

    real = os.replace
    def replace(src, dst):
        if Path(dst).name == "pair.json":
            os._exit(9)  # killed between the data's rename and the sidecar's
        real(src, dst)
    os.replace = replace
    d = Path(sys.argv[1])
    atomic_write_pair({d / "data.bin": lambda f: f.write(sys.argv[2].encode())}, d / "pair.json",
                      {"n": int(sys.argv[2])})
""")


def _die_before_sidecar(directory: Path, n: int) -> None:
    assert subprocess.run([sys.executable, "-c", DIE_BEFORE_SIDECAR, str(directory), str(n)],
                          cwd=ROOT).returncode == 9


@pytest.mark.parametrize("cleaner", ["reader", "clean_temp"])
def test_kill_between_renames_is_rolled_forward(tmp_path, cleaner):
    atomic_write_pair({tmp_path / "data.bin": lambda f: f.write(b"1")}, tmp_path / "pair.json", {"n": 1})
    _die_before_sidecar(tmp_path, 2)
    assert (tmp_path / "data.bin").read_bytes() == b"2"  # new data, old sidecar, new one in .tmp/
    assert json.loads((tmp_path / "pair.json").read_text())["n"] == 1
    if cleaner == "clean_temp":
        assert clean_temp(tmp_path) == []  # nothing deleted: the committed sidecar was put in place
        assert json.loads((tmp_path / "pair.json").read_text())["n"] == 2
    with open_pair(tmp_path / "pair.json", ["data.bin"]) as (meta, files):
        assert meta["n"] == 2 and files["data.bin"].read() == b"2"
    assert not (tmp_path / TEMP_DIR).exists()


def test_half_pair_without_its_sidecar_is_refused(tmp_path):
    atomic_write_pair({tmp_path / "data.bin": lambda f: f.write(b"1")}, tmp_path / "pair.json", {"n": 1})
    _die_before_sidecar(tmp_path, 2)
    for temp in (tmp_path / TEMP_DIR).iterdir():  # the committed sidecar is lost too
        temp.unlink()
    with pytest.raises(CorruptFileError, match=r"data\.bin: SHA-256 does not match pair\.json"):
        with open_pair(tmp_path / "pair.json", ["data.bin"]):
            pass


def test_concurrent_reader_never_sees_half_a_pair(tmp_path):
    def write(n):
        atomic_write_pair({tmp_path / "data.bin": lambda f: f.write(str(n).encode() * 1000)},
                          tmp_path / "pair.json", {"n": n})

    write(0)
    stop = threading.Event()
    errors = []

    def writer():
        n = 1
        while not stop.is_set():
            write(n)
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(300):
            try:
                with open_pair(tmp_path / "pair.json", ["data.bin"]) as (meta, files):
                    assert files["data.bin"].read() == str(meta["n"]).encode() * 1000
            except CorruptFileError as err:  # pragma: no cover - the failure being tested for
                errors.append(err)
    finally:
        stop.set()
        thread.join()
    assert not errors


# (f) damaged files give CorruptFileError naming the path ----------------------------------

def test_damaged_json_names_the_path(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"a": [1, 2')
    with pytest.raises(CorruptFileError, match=r"m\.json: expected JSON, got invalid JSON") as err:
        read_json(path)
    assert str(path) in str(err.value) and isinstance(err.value, OSError)
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(CorruptFileError, match=r"m\.json: expected UTF-8 JSON text"):
        read_json(path)
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "pickle-payload", "plain-pickle"])
def test_damaged_weights_name_the_path(tmp_path, damage):
    directory = saved_model(tmp_path, legacy=True)  # no digest: the bytes reach torch.load
    weights = directory / "weights.pt"
    data = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        weights.write_bytes(b"")
    elif damage == "garbage":
        weights.write_bytes(np.random.default_rng(0).bytes(2000))
    elif damage == "pickle-payload":
        torch.save({"x": object()}, weights)
    else:
        weights.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CorruptFileError) as err:
        load_model(directory)
    assert str(weights) in str(err.value)
    if "pickle" in damage:
        assert "will not be loaded" in str(err.value)
    _assert_no_unsafe_advice(err)


def test_torch_load_tensors_refuses_objects(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"x": Payload()}, path)
    with pytest.raises(CorruptFileError, match=r"obj\.pt: .*non-tensor objects.*will not be loaded") as err:
        torch_load_tensors(path, path)
    _assert_no_unsafe_advice(err)
    torch.save({"w": torch.ones(3), "n": 4, "h": [{"a": 1.5}]}, path)
    assert torch_load_tensors(path, path)["n"] == 4


# (g) posteriors and ROOT event files use the shared writers -------------------------------

def _small_posterior():
    from mfinfer.inference import Posterior

    samples = np.random.default_rng(0).normal(size=(50, 2))
    return Posterior(samples, None, labels=["a", "b"], metadata={"point": 1})


def test_posterior_is_a_checked_pair(tmp_path, renames):
    from mfinfer.inference import Posterior

    npz = _small_posterior().save(tmp_path / "p")
    assert [name for _, name in renames] == ["p.npz", "p.json"] and not (tmp_path / TEMP_DIR).exists()
    summary = json.loads((tmp_path / "p.json").read_text())
    assert summary["sha256"] == {"p.npz": sha256_file(npz)}
    np.testing.assert_array_equal(Posterior.load(npz).samples, _small_posterior().samples)

    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"p\.npz: SHA-256 does not match p\.json"):
        Posterior.load(npz)
    npz.write_bytes(b"")
    del summary["sha256"]  # a posterior saved before the digests: read unchecked
    (tmp_path / "p.json").write_text(json.dumps(summary))
    with pytest.raises(CorruptFileError, match=r"p\.npz: expected an npz file"):
        Posterior.load(npz)


def test_legacy_posterior_loads_and_nan_samples_are_refused(tmp_path):
    from mfinfer.inference import Posterior

    post = _small_posterior()
    npz = post.save(tmp_path / "p")
    summary = json.loads((tmp_path / "p.json").read_text())
    del summary["sha256"]
    (tmp_path / "p.json").write_text(json.dumps(summary))
    np.testing.assert_array_equal(Posterior.load(npz).samples, post.samples)

    samples = post.samples.copy()
    samples[3, 1] = np.nan
    np.savez(npz, samples=samples)
    with pytest.raises(CorruptFileError, match=r"p\.npz: 'samples' holds 1 NaN"):
        Posterior.load(npz)
    (tmp_path / "q.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"q\.npz: missing; expected q\.npz and q\.json"):
        Posterior.load(tmp_path / "q")


def test_write_events_uses_the_atomic_writer(tmp_path, renames):
    from mfinfer.io.root import read_events, write_events

    x = np.arange(8.0).reshape(4, 2)
    path = write_events(tmp_path / "ev.root", x, metadata={"seed": 3})
    assert renames == [(TEMP_DIR, "ev.root")] and sorted(p.name for p in tmp_path.iterdir()) == ["ev.root"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    x2, theta, meta = read_events(path)
    assert np.array_equal(x, x2) and theta is None and meta == {"seed": 3}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_cases_are_well_formed():
    ids = [c[0] for c in CASES]
    assert len(ids) >= 10 and len(set(ids)) == len(ids)
