"""TrainConfig checks itself: every field's type and range (field metadata), whether it comes
from the API, a YAML ``train:`` section or ``--set``; the schedule is checked there only."""

from __future__ import annotations

import dataclasses
import math

import pytest

from mfinfer.config import ModelConfig
from mfinfer.errors import ConfigError
from mfinfer.models.base import SCHEDULES
from mfinfer.training import TrainConfig

# (id, keyword arguments, exception type, message fragment): the bad-input table style
BAD = [
    ("mse-weight-negative", {"mse_weight": -5.0}, ConfigError,
     "TrainConfig.mse_weight: expected a finite number >= 0, got -5.0"),
    ("clip-grad-negative", {"clip_grad": -1.0}, ConfigError,
     "TrainConfig.clip_grad: expected a finite number > 0"),
    ("clip-grad-zero", {"clip_grad": 0.0}, ConfigError, "clip_grad: expected a finite number > 0, got 0.0"),
    ("validation-fraction-above-one", {"validation_fraction": 1.5}, ConfigError,
     "validation_fraction: expected a finite number >= 0 and < 1, got 1.5"),
    ("validation-fraction-one", {"validation_fraction": 1.0}, ConfigError, "validation_fraction"),
    ("validation-fraction-negative", {"validation_fraction": -0.1}, ConfigError, "validation_fraction"),
    ("patience-zero", {"patience": 0}, ConfigError, "TrainConfig.patience: expected an integer >= 1, got 0"),
    ("epochs-zero", {"epochs": 0}, ConfigError, "TrainConfig.epochs: expected an integer >= 1"),
    ("epochs-float", {"epochs": 2.5}, ConfigError, "epochs: expected an integer >= 1, got 2.5 (float)"),
    ("batch-size-bool", {"batch_size": True}, ConfigError, "batch_size: expected an integer"),
    ("lr-zero", {"lr": 0.0}, ConfigError, "TrainConfig.lr: expected a finite number > 0"),
    ("lr-nan", {"lr": math.nan}, ConfigError, "lr: expected a finite number > 0, got nan"),
    ("lr-string", {"lr": "1e-3"}, ConfigError, "lr: expected a finite number > 0, got '1e-3' (str)"),
    ("weight-decay-negative", {"weight_decay": -1e-5}, ConfigError,
     "weight_decay: expected a finite number >= 0"),
    ("seed-negative", {"seed": -1}, ConfigError, "TrainConfig.seed: expected an integer >= 0"),
    ("schedule-unknown", {"schedule": "fast"}, ConfigError,
     "TrainConfig.schedule: must be one of ('nll', 'pie', 'sequential'"),
    ("standardize-string", {"standardize": "yes"}, ConfigError, "standardize: expected true or false"),
    ("device-number", {"device": 0}, ConfigError, "device: expected a string"),
]


@pytest.mark.parametrize(("kwargs", "exc_type", "message"), [pytest.param(*c[1:], id=c[0]) for c in BAD])
def test_bad_settings_are_refused_naming_field_range_and_value(kwargs, exc_type, message):
    with pytest.raises(exc_type) as info:
        TrainConfig(**kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)  # `except ValueError` keeps working


def test_edges_of_the_ranges_are_accepted():
    cfg = TrainConfig(mse_weight=0.0, validation_fraction=0.0, patience=None, weight_decay=0.0, seed=0,
                      epochs=1, batch_size=1, lr=1, schedule=None)
    assert cfg.lr == 1 and cfg.patience is None
    for schedule in SCHEDULES:
        assert TrainConfig(schedule=schedule).schedule == schedule


def test_every_range_in_the_metadata_is_enforced():
    """Generic over the fields, so a new field with a range (one line) is covered here too."""
    checked = 0
    for f in dataclasses.fields(TrainConfig):
        spec = f.metadata
        for bound, outside in (("min", lambda v: v - 1), ("gt", lambda v: v), ("lt", lambda v: v)):
            if bound not in spec:
                continue
            value = outside(spec[bound])
            value = float(value) if isinstance(f.default, float) else int(value)
            with pytest.raises(ConfigError, match=rf"TrainConfig\.{f.name}: expected"):
                TrainConfig(**{f.name: value})
            checked += 1
    assert checked >= 9


def test_train_section_gets_the_same_checks_with_its_path():
    with pytest.raises(ConfigError, match=r"^models\[AF\]\.train\.mse_weight: expected a finite number >= 0"):
        ModelConfig(name="AF", kind="AmbientFlow", train={"mse_weight": -5})
    with pytest.raises(ConfigError, match=r"models\[AF\]\.train\.epoch: unknown field; allowed: \['epochs'"):
        ModelConfig(name="AF", kind="AmbientFlow", train={"epoch": 2})
    with pytest.raises(ConfigError, match=r"models\[AF\]\.train\.seed: set by the run"):
        ModelConfig(name="AF", kind="AmbientFlow", train={"seed": 2})


def test_one_train_config_per_model_with_the_run_seed_and_device():
    model = ModelConfig(name="AF", kind="AmbientFlow", train={"epochs": 3, "progress": False})
    assert model.settings is model.settings  # built once
    cfg = model.train_config(seed=7, device="cpu")
    assert (cfg.epochs, cfg.seed, cfg.device, cfg.progress) == (3, 7, "cpu", False)
    assert "progress" not in cfg.identity() and "device" not in cfg.identity()
    assert cfg.identity()["seed"] == 7


#: The identity of a default TrainConfig when runs were first keyed: a field added since enters
#: only away from its default, so existing run directories keep their content keys and resume.
KEYED = ["schedule", "epochs", "batch_size", "lr", "weight_decay", "clip_grad", "validation_fraction",
         "patience", "mse_weight", "standardize", "seed"]


def test_a_new_setting_at_its_default_leaves_the_identity_unchanged():
    assert list(TrainConfig().identity()) == KEYED
    later = [f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("keyed") == "when set"]
    assert all(f.name in KEYED or f.name in later or f.name in ("device", "progress")
               for f in dataclasses.fields(TrainConfig)), "a new field needs metadata keyed: 'when set'"
    for name in later:
        default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)
        assert TrainConfig(**{name: default + 1.0}).identity()[name] == default + 1.0
