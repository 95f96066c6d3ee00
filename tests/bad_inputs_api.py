"""Bad inputs to the Python API (models, training, inference, metrics, priors, simulators).

Each case is ``(id, call, exception type, keyword)``: ``call(tmp_path)`` makes the bad call and the
error message must contain ``keyword`` (case-insensitive). ``tests/test_bad_inputs.py`` runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mfinfer import (
    AmbientFlow,
    BoxUniform,
    FOMFlow,
    Gaussian,
    LikelihoodEstimator,
    ManifoldFlow,
    Posterior,
    get_simulator,
    sample_posterior,
)
from mfinfer.errors import ConfigError, InputError
from mfinfer.evaluation import metrics
from mfinfer.inference import ModelLikelihood, SimulatorLikelihood
from mfinfer.training import TrainConfig, train

Case = tuple[str, Callable[[Path], object], type[BaseException], str]

SMALL = {"hidden_features": 8, "num_blocks": 1}
NAN3 = np.array([[0.1, np.nan, 0.2]])


def _mflow(**kw: object) -> ManifoldFlow:
    return ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL, **kw)  # type: ignore[arg-type]


def _af() -> AmbientFlow:
    return AmbientFlow(3, param_dim=1, num_layers=1, **SMALL)


def _power_data(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    return get_simulator("power").simulate(n, rng=0)


def _estimator() -> LikelihoodEstimator:
    return LikelihoodEstimator(_af(), prior=get_simulator("power").prior)


def _gauss_like(theta: np.ndarray) -> np.ndarray:
    return -0.5 * (theta**2).sum(1)


CASES: list[Case] = [
    # ------------------------------------------------------------------ model construction
    ("model-af-positional-param-dim", lambda p: AmbientFlow(5, 2), TypeError, "positional"),
    ("model-mflow-num-layers", lambda p: ManifoldFlow(3, 2, num_layers=2), InputError, "outer_layers"),
    ("model-mflow-unknown-option", lambda p: ManifoldFlow(3, 2, hidden_feature=8), InputError,
     "hidden_features"),
    ("model-mflow-d-equals-D", lambda p: ManifoldFlow(3, 3), InputError, "manifold_dim"),
    ("model-fom-not-a-chart", lambda p: FOMFlow("circle"), InputError, "chart"),
    ("model-unknown-kind", lambda p: __import__("mfinfer.models", fromlist=["build_model"]).build_model(
        "NoFlow", get_simulator("power")), ConfigError, "model kind"),
    # ------------------------------------------------------------------ model calls
    ("model-log-prob-nan-x", lambda p: _mflow().log_prob(NAN3, [0.0]), InputError, "nan"),
    ("model-log-prob-inf-theta", lambda p: _af().log_prob(np.zeros((1, 3)), [np.inf]), InputError, "theta"),
    ("model-log-prob-zero-rows", lambda p: _af().log_prob(np.zeros((0, 3)), [0.0]), InputError, "row"),
    ("model-log-prob-wrong-width", lambda p: _af().log_prob(np.zeros((2, 4)), [0.0]), InputError,
     "(n, 3)"),
    ("model-log-prob-theta-rows", lambda p: _af().log_prob(np.zeros((3, 3)), np.zeros((2, 1))),
     InputError, "rows"),
    ("model-log-prob-missing-theta", lambda p: _af().log_prob(np.zeros((1, 3))), InputError, "conditional"),
    ("model-log-prob-theta-unconditional", lambda p: AmbientFlow(3, num_layers=1, **SMALL).log_prob(
        np.zeros((1, 3)), [0.5]), InputError, "unconditional"),
    ("model-log-prob-bad-mode", lambda p: _mflow().log_prob(np.zeros((1, 3)), [0.0], mode="ambient"),
     InputError, "mode"),
    ("model-af-pie-mode", lambda p: _af().log_prob(np.zeros((1, 3)), [0.0], mode="pie"), InputError, "pie"),
    ("model-me-flow-pie-mode", lambda p: _mflow(encoder=True).log_prob(np.zeros((1, 3)), [0.0], mode="pie"),
     InputError, "encoder"),
    ("model-sample-zero", lambda p: _af().sample(0, [0.0]), InputError, "n:"),
    ("model-sample-float", lambda p: _af().sample(2.5, [0.0]), InputError, "integer"),
    ("model-encode-nan", lambda p: _mflow().encode(NAN3), InputError, "nan"),
    ("model-decode-wrong-width", lambda p: _mflow().decode(np.zeros((2, 3))), InputError, "u:"),
    ("model-project-strings", lambda p: _mflow().project([["a", "b", "c"]]), InputError, "numbers"),
    # ------------------------------------------------------------------ training
    ("train-nan-rows", lambda p: train(_af(), np.vstack([_power_data()[1], NAN3]),
                                       np.vstack([_power_data()[0], [[0.0]]])), InputError, "nan"),
    ("train-theta-mismatch", lambda p: train(_af(), np.zeros((10, 3)), np.zeros((9, 1))), InputError,
     "theta"),
    ("train-one-row", lambda p: train(_af(), np.zeros((1, 3)), np.zeros((1, 1))), InputError, "at least 2"),
    ("train-bad-schedule", lambda p: TrainConfig(schedule="fast"), ValueError, "schedule"),
    ("train-epochs-zero", lambda p: TrainConfig(epochs=0), ValueError, "epochs"),
    ("train-lr-negative", lambda p: TrainConfig(lr=-1.0), ValueError, "lr"),
    ("train-m-phase-on-af", lambda p: train(_af(), *_power_data()[::-1], config=TrainConfig(
        schedule="sequential", epochs=2, progress=False)), ConfigError, "manifold"),
    ("train-validation-fraction", lambda p: TrainConfig(validation_fraction=1.5), ConfigError,
     "validation_fraction: expected a finite number >= 0 and < 1, got 1.5"),
    # ------------------------------------------------------------------ estimator and likelihoods
    ("estimator-dim-mismatch", lambda p: LikelihoodEstimator(_af(), BoxUniform((0, 0), (1, 1))),
     ValueError, "param_dim"),
    ("estimator-x-width", lambda p: _estimator().append_simulations(np.zeros((5, 1)), np.zeros((5, 4))),
     InputError, "x"),
    ("estimator-theta-outside-prior", lambda p: _estimator().append_simulations(
        np.full((5, 1), 3.0), np.zeros((5, 3))), InputError, "prior"),
    ("estimator-train-without-data", lambda p: _estimator().train(), ValueError, "append_simulations"),
    ("estimator-sample-without-x", lambda p: _estimator().build_posterior().sample(10), ValueError, "x"),
    ("likelihood-empty-events", lambda p: ModelLikelihood(_af(), np.zeros((0, 3))), InputError, "empty"),
    ("likelihood-nan-events", lambda p: ModelLikelihood(_af(), NAN3), InputError, "nan"),
    ("likelihood-bad-mode", lambda p: ModelLikelihood(_mflow(), np.zeros((2, 3)), mode="x"), InputError,
     "mode"),
    ("simulator-likelihood-wrong-width",
     lambda p: SimulatorLikelihood(get_simulator("power"), np.zeros((2, 5))), InputError, "(n, 3)"),
    # ------------------------------------------------------------------ sampler and posterior
    ("mcmc-num-samples-zero", lambda p: sample_posterior(_gauss_like, BoxUniform((-1,), (1,)), 0),
     ValueError, "num_samples"),
    ("mcmc-odd-walkers", lambda p: sample_posterior(_gauss_like, BoxUniform((-1,), (1,)), 10,
                                                    num_walkers=7), ValueError, "num_walkers"),
    ("mcmc-nan-likelihood", lambda p: sample_posterior(lambda t: np.full(len(t), np.nan),
                                                       BoxUniform((-1,), (1,)), 10, progress=False),
     ValueError, "nan"),
    ("grid-too-many-parameters", lambda p: sample_posterior(
        _gauss_like, BoxUniform((-1,) * 4, (1,) * 4), 10, method="grid"), ValueError, "p <= 3"),
    ("mcmc-not-vectorized", lambda p: sample_posterior(lambda t: 0.0, BoxUniform((-1,), (1,)), 10,
                                                       progress=False), ValueError, "vectorized"),
    ("posterior-nan-samples", lambda p: Posterior(np.array([[0.1], [np.nan]])), InputError, "nan"),
    ("posterior-outside-prior", lambda p: Posterior(np.array([[0.1], [2.0]]), BoxUniform((-1,), (1,))),
     InputError, "prior"),
    ("posterior-labels", lambda p: Posterior(np.zeros((3, 2)), labels=["a"]), ValueError, "labels"),
    ("posterior-load-missing", lambda p: Posterior.load(p / "nothing"), FileNotFoundError, "nothing"),
    # ------------------------------------------------------------------ metrics
    ("metric-mmd-nan", lambda p: metrics.mmd2(np.array([[0.0], [np.nan]]), np.zeros((5, 1))), InputError,
     "nan"),
    ("metric-mmd-columns", lambda p: metrics.mmd2(np.zeros((5, 2)), np.zeros((5, 1))), InputError,
     "columns"),
    ("metric-c2st-folds", lambda p: metrics.c2st(np.zeros((20, 1)), np.ones((20, 1)), folds=1), ValueError,
     "folds"),
    ("metric-log-p-nan-samples", lambda p: metrics.log_prob_at_truth(np.array([[np.nan], [0.0]]),
                                                                     np.zeros(1)), InputError, "nan"),
    ("metric-log-p-nan-truth", lambda p: metrics.log_prob_at_truth(np.zeros((3, 1)), [np.nan]), InputError,
     "truth"),
    ("metric-log-p-bandwidth", lambda p: metrics.log_prob_at_truth(np.zeros((3, 1)), [0.0], -1.0),
     InputError, "bandwidth"),
    ("metric-bias-nan-truth", lambda p: metrics.bias_and_width(np.zeros((3, 1)), [np.nan]), InputError,
     "truth"),
    ("metric-reconstruction-nan", lambda p: metrics.reconstruction_error(NAN3, np.zeros((1, 3))),
     InputError, "nan"),
    ("metric-reconstruction-shapes", lambda p: metrics.reconstruction_error(np.zeros((2, 3)),
                                                                            np.zeros((3, 3))), InputError,
     "equal shapes"),
    # ------------------------------------------------------------------ priors and simulators
    ("prior-box-low-above-high", lambda p: BoxUniform((1.0,), (0.0,)), InputError, "low < high"),
    ("prior-gaussian-negative-std", lambda p: Gaussian((0.0,), (-1.0,)), InputError, "std"),
    ("prior-log-prob-shape", lambda p: BoxUniform((0.0,), (1.0,)).log_prob(np.zeros((2, 3))), InputError,
     "theta"),
    ("simulator-unknown", lambda p: get_simulator("powr"), ConfigError, "power"),
    ("simulator-bad-option", lambda p: get_simulator("power", noise=1.0), ConfigError, "options"),
    ("simulator-theta-outside-prior", lambda p: get_simulator("power").sample(np.array([[5.0]])),
     InputError, "prior"),
    ("simulator-nan-x-likelihood", lambda p: get_simulator("power").log_likelihood(NAN3, np.zeros((1, 1))),
     InputError, "nan"),
    ("simulator-tensor-theta-shape", lambda p: get_simulator("circle").chart(torch.zeros(2, 3)), ValueError,
     "(*, 2)"),
]
