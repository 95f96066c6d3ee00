"""Bad-input cases for saved files (models, checkpoints, JSON): damaged, truncated, missing,
or holding pickled objects.

``CASES`` holds ``(id, call, exc_type, keyword)``: ``call(tmp_path)`` builds what it needs under
``tmp_path`` and makes the bad call, which must raise ``exc_type`` with ``keyword`` in its message
(case-insensitive). The helpers are shared with ``test_integrity.py``.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mfinfer.errors import CorruptFileError
from mfinfer.files import read_json
from mfinfer.models import AmbientFlow, load_model, save_model
from mfinfer.training import TrainConfig, train

__all__ = ["CASES", "Payload", "flip_tensor_byte", "saved_model", "tensor_data_span", "trained_run"]

SMALL = dict(num_layers=1, hidden_features=8, num_blocks=1)


def tensor_data_span(path: Path) -> tuple[int, int]:
    """``(offset, length)`` in the file of the largest ``data/`` entry of a torch.save zip: raw
    tensor bytes (torch stores entries uncompressed)."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    assert info.compress_type == zipfile.ZIP_STORED
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    assert header[:4] == b"PK\x03\x04"
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def flip_tensor_byte(path: Path) -> int:
    """Flip one bit in the middle of the largest tensor's data in ``path``; returns the offset."""
    start, length = tensor_data_span(path)
    offset = start + length // 2
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    return offset


def saved_model(tmp_path: Path, legacy: bool = False) -> Path:
    """A tiny saved model in ``tmp_path/model``; ``legacy`` drops the SHA-256 from model.json
    (as written before the digests existed), so weights.pt reaches torch.load unchecked."""
    directory = save_model(AmbientFlow(2, **SMALL), tmp_path / "model")
    if legacy:
        meta = json.loads((directory / "model.json").read_text())
        del meta["sha256"]
        (directory / "model.json").write_text(json.dumps(meta))
    return directory


def trained_run(tmp_path: Path) -> tuple[AmbientFlow, np.ndarray, TrainConfig, Path]:
    """A tiny model trained for 2 epochs with a checkpoint in ``tmp_path/run``."""
    x = np.random.default_rng(0).normal(size=(80, 2))
    cfg = TrainConfig(epochs=2, batch_size=20, progress=False, patience=None)
    model = AmbientFlow(2, **SMALL)
    train(model, x, config=cfg, run_dir=tmp_path / "run")
    return model, x, cfg, tmp_path / "run"


def _resume(tmp_path: Path, damage: Callable[[Path], object]) -> object:
    model, x, cfg, run = trained_run(tmp_path)
    damage(run)
    return train(model, x, config=cfg, run_dir=run, resume=True)


def _legacy_weights(tmp_path: Path, write: Callable[[Path], object]) -> object:
    directory = saved_model(tmp_path, legacy=True)
    write(directory / "weights.pt")
    return load_model(directory)


class Payload:
    """A plain class: pickling an instance makes a file that must never be unpickled."""


def _pickle_payload(path: Path) -> None:
    torch.save({"x": Payload(), "w": torch.zeros(2)}, path)


def _drop_key(path: Path, key: str) -> None:
    meta = json.loads(path.read_text())
    del meta[key]
    path.write_text(json.dumps(meta))


def _garbage_json(path: Path) -> Path:
    path.write_text('{"kind": "AmbientFlow", "config": {"data_dim": 2,')
    return path


CASES: list[tuple[str, Callable[[Path], object], type[BaseException], str]] = [
    ("files-weights-bit-flipped",
     lambda p: (flip_tensor_byte(saved_model(p) / "weights.pt"), load_model(p / "model")),
     CorruptFileError, "SHA-256 does not match model.json"),
    ("files-weights-truncated",
     lambda p: (lambda d: ((d / "weights.pt").write_bytes((d / "weights.pt").read_bytes()[:300]),
                           load_model(d)))(saved_model(p)),
     CorruptFileError, "weights.pt: SHA-256"),
    ("files-weights-truncated-legacy-json",
     lambda p: _legacy_weights(p, lambda w: w.write_bytes(w.read_bytes()[:300])),
     CorruptFileError, "truncated or damaged"),
    ("files-weights-empty-legacy-json",
     lambda p: _legacy_weights(p, lambda w: w.write_bytes(b"")),
     CorruptFileError, "empty file"),
    ("files-weights-pickle-payload",
     lambda p: _legacy_weights(p, _pickle_payload),
     CorruptFileError, "will not be loaded"),
    ("files-weights-plain-pickle",
     lambda p: _legacy_weights(p, lambda w: w.write_bytes(pickle.dumps(Payload()))),
     CorruptFileError, "non-tensor objects"),
    ("files-weights-not-a-state-dict",
     lambda p: _legacy_weights(p, lambda w: torch.save([torch.zeros(3)], w)),
     CorruptFileError, "expected a state_dict"),
    ("files-weights-missing",
     lambda p: ((saved_model(p) / "weights.pt").unlink(), load_model(p / "model")),
     FileNotFoundError, "weights.pt: missing"),
    ("files-model-json-missing",
     lambda p: ((saved_model(p) / "model.json").unlink(), load_model(p / "model")),
     FileNotFoundError, "model.json: missing"),
    ("files-model-json-not-json",
     lambda p: (_garbage_json(saved_model(p) / "model.json"), load_model(p / "model")),
     CorruptFileError, "model.json: expected JSON"),
    ("files-model-json-missing-key",
     lambda p: (_drop_key(saved_model(p) / "model.json", "kind"), load_model(p / "model")),
     CorruptFileError, "missing key 'kind'"),
    ("files-model-json-a-list",
     lambda p: ((saved_model(p) / "model.json").write_text("[1, 2]"), load_model(p / "model")),
     CorruptFileError, "expected a JSON object"),
    ("files-checkpoint-bit-flipped-on-resume",
     lambda p: _resume(p, lambda run: flip_tensor_byte(run / "checkpoint.pt")),
     CorruptFileError, "checkpoint.pt: SHA-256 does not match checkpoint.json"),
    ("files-checkpoint-json-garbage-on-resume",
     lambda p: _resume(p, lambda run: (run / "checkpoint.json").write_bytes(b"\x00\xff garbage")),
     CorruptFileError, "checkpoint.json: expected UTF-8 JSON"),
    ("files-checkpoint-pickle-payload-on-resume",
     lambda p: _resume(p, lambda run: ((run / "checkpoint.json").unlink(),
                                       _pickle_payload(run / "checkpoint.pt"))),
     CorruptFileError, "it will not be loaded"),
    ("files-train-config-json-truncated-on-resume",
     lambda p: _resume(p, lambda run: (run / "train_config.json").write_text('{"epochs": ')),
     CorruptFileError, "train_config.json: expected JSON"),
    ("files-read-json-garbage",
     lambda p: read_json(_garbage_json(p / "x.json")),
     CorruptFileError, "x.json: expected JSON, got invalid JSON at line 1"),
    ("files-read-json-empty",
     lambda p: ((p / "e.json").write_text(""), read_json(p / "e.json")),
     CorruptFileError, "e.json: expected JSON, got an empty file"),
    ("files-read-json-not-utf8",
     lambda p: ((p / "b.json").write_bytes(b'{"a": "\xff"}'), read_json(p / "b.json")),
     CorruptFileError, "not UTF-8"),
    ("files-read-json-missing",
     lambda p: read_json(p / "nope.json"),
     FileNotFoundError, "nope.json"),
]
