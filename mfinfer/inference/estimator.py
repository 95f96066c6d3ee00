"""An sbi-style front end: simulations in, a trained likelihood and its posterior out.

    estimator = LikelihoodEstimator(model=ManifoldFlow(3, 2, param_dim=1), prior=BoxUniform((-1,), (1,)))
    posterior = estimator.append_simulations(theta, x).train(epochs=20).build_posterior()
    samples = posterior.sample(5000, x=x_obs)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mfinfer.inference.likelihood import ModelLikelihood
from mfinfer.inference.posterior import Posterior
from mfinfer.models import Flow
from mfinfer.priors import Prior
from mfinfer.training import TrainConfig, train

__all__ = ["LikelihoodEstimator", "LikelihoodPosterior"]


class LikelihoodEstimator:
    """Neural likelihood estimation with any mfinfer model (AF, M-flow, Mₑ-flow, PIE, FOM).

    Args:
        model: an untrained (or pre-trained) model with ``param_dim == prior.dim``.
        prior: the prior over θ.
    """

    def __init__(self, model: Flow, prior: Prior) -> None:
        if model.param_dim != prior.dim:
            raise ValueError(f"model.param_dim ({model.param_dim}) must equal prior.dim ({prior.dim})")
        self.model, self.prior = model, prior
        self._theta: list[np.ndarray] = []
        self._x: list[np.ndarray] = []
        self.history: list[dict] = []

    def append_simulations(self, theta: np.ndarray, x: np.ndarray) -> LikelihoodEstimator:
        """Add simulations θ (n, p) and x (n, D); returns self for chaining."""
        theta, x = np.asarray(theta, float), np.asarray(x, float)
        if len(theta) != len(x):
            raise ValueError(f"theta and x: expected the same number of rows, got {len(theta)} and {len(x)}")
        self._theta.append(self.prior.check(theta, "theta"))
        self._x.append(x)
        return self

    def train(self, config: TrainConfig | None = None, run_dir: str | None = None, resume: bool = False,
              **config_kwargs: Any) -> LikelihoodEstimator:
        """Train on all appended simulations (see ``mfinfer.training.train``); returns self."""
        if not self._x:
            raise ValueError("no simulations: call append_simulations(theta, x) first")
        config = config or TrainConfig(**config_kwargs)
        self.history = train(self.model, np.concatenate(self._x), np.concatenate(self._theta), config,
                             run_dir=run_dir, resume=resume)
        return self

    def build_posterior(self, mode: str = "manifold", **mcmc_kwargs: Any) -> LikelihoodPosterior:
        """The posterior p(θ|x) ∝ Π_i p̂(x_i|θ) p(θ), sampled by MCMC (``sample_posterior`` options)."""
        return LikelihoodPosterior(self.model, self.prior, mode=mode, **mcmc_kwargs)


class LikelihoodPosterior:
    """p(θ | x_1..x_n) from a trained likelihood; ``sample(n, x=...)`` runs MCMC for that x."""

    def __init__(self, model: Flow, prior: Prior, mode: str = "manifold", **mcmc_kwargs: Any) -> None:
        self.model, self.prior, self.mode, self.mcmc_kwargs = model, prior, mode, mcmc_kwargs
        self.default_x: np.ndarray | None = None

    def set_default_x(self, x: np.ndarray) -> LikelihoodPosterior:
        self.default_x = np.asarray(x, float)
        return self

    def _x(self, x: np.ndarray | None) -> np.ndarray:
        if x is None and self.default_x is None:
            raise ValueError("x: no observed events; pass x=... or call set_default_x(x) first")
        return self.default_x if x is None else np.asarray(x, float)

    def posterior(self, num_samples: int, x: np.ndarray | None = None, **kwargs: Any) -> Posterior:
        """Run MCMC and return the full ``Posterior`` (samples, diagnostics, plots, storage)."""
        like = ModelLikelihood(self.model, self._x(x), mode=self.mode)
        return Posterior.from_mcmc(like, self.prior, num_samples, **{**self.mcmc_kwargs, **kwargs})

    def sample(self, num_samples: int, x: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        """Posterior samples (num_samples, p) given observed events x (n, D)."""
        return self.posterior(num_samples, x, **kwargs).samples

    def log_prob(self, theta: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        """Unnormalised log posterior at θ (m, p) -> (m,)."""
        theta = np.atleast_2d(theta)
        lp = self.prior.log_prob(theta)
        inside = np.isfinite(lp)
        if inside.any():
            lp[inside] += ModelLikelihood(self.model, self._x(x), mode=self.mode)(theta[inside])
        return lp
