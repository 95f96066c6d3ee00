"""metrics.c2st: sbi's MLP by default, the random forest on request; chance level on samples of one
distribution, near 1 on separated ones, and the configured classifier in the pipeline's metric."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from mfinfer.errors import ConfigError, InputError
from mfinfer.evaluation import metrics
from mfinfer.evaluation.registry import resolve_options


@pytest.mark.parametrize("classifier", ["mlp", "rf"])
def test_c2st_chance_and_separation(classifier: str) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
    assert abs(metrics.c2st(a, b, classifier=classifier) - 0.5) < 0.07
    far = rng.normal(size=(400, 2)) + np.array([4.0, 0.0])
    assert metrics.c2st(a[:200], far[:200], classifier=classifier) > 0.95


def test_c2st_default_is_the_mlp() -> None:
    assert inspect.signature(metrics.c2st).parameters["classifier"].default == "mlp"
    a = np.zeros((20, 2))
    with pytest.raises(InputError, match="classifier"):
        metrics.c2st(a, a, classifier="svm")  # type: ignore[arg-type]


def test_pipeline_option_chooses_the_classifier() -> None:
    assert resolve_options({})["c2st_classifier"] == "mlp"
    assert resolve_options({"c2st_classifier": "rf"})["c2st_classifier"] == "rf"
    with pytest.raises(ConfigError, match=r"metrics\.c2st_classifier"):
        resolve_options({"c2st_classifier": "forest"})
