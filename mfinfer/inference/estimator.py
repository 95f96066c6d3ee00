"""An sbi-style front end: simulations in, a trained likelihood and its posterior out.

    model, prior = ManifoldFlow(3, 2, param_dim=1), BoxUniform((-1,), (1,))
    estimator = LikelihoodEstimator(model=model, prior=prior)
    posterior = estimator.append_simulations(theta, x).train(epochs=20).build_posterior()
    samples = posterior.sample(5000, x=x_obs)

``build_posterior(method="smc")`` samples with tempered SMC instead of emcee (the default), and
``method="grid"`` (p ≤ 3) from an adaptively refined grid, the fastest for one or two parameters.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

import numpy as np

from mfinfer._validation import as_matrix
from mfinfer.caching import array_digest
from mfinfer.errors import InputError
from mfinfer.inference.likelihood import ModelLikelihood, check_events
from mfinfer.inference.posterior import Posterior
from mfinfer.inference.potential import LogPosterior
from mfinfer.models import Flow
from mfinfer.priors import Prior
from mfinfer.training import TrainConfig, train

__all__ = ["LikelihoodEstimator", "LikelihoodPosterior"]

#: How many observed event sets a LikelihoodPosterior keeps a built likelihood for.
LIKELIHOOD_CACHE_SIZE = 4


class LikelihoodEstimator:
    """Neural likelihood estimation with any mfinfer model (AF, M-flow, Mₑ-flow, PIE, FOM).

    Arguments:
        model: An untrained (or pre-trained) model with ``param_dim == prior.dim``.
        prior: The prior over θ.

    Attributes:
        history: The per-epoch training history of the last :meth:`train`.
    """

    def __init__(self, model: Flow, prior: Prior) -> None:
        if model.param_dim != prior.dim:
            raise InputError(
                f"model.param_dim ({model.param_dim}) must equal prior.dim ({prior.dim})")
        self.model, self.prior = model, prior
        self._theta: list[np.ndarray] = []
        self._x: list[np.ndarray] = []
        self._weights: list[np.ndarray | None] = []
        self._score: list[np.ndarray | None] = []
        self.history: list[dict] = []

    def append_simulations(self, theta: Any, x: Any, weights: Any = None,
                           score: Any = None) -> LikelihoodEstimator:
        """Add simulations; returns self for chaining.

        Arguments:
            theta: Parameters, shape (n, p) with p = ``model.param_dim``, inside the prior.
            x: Simulated events, shape (n, D) with D = ``model.data_dim``.
            weights: Event weights, shape (n,), negative ones allowed; training then minimises
                the weighted mean loss Σ w_i ℓ_i / Σ w_i (see ``mfinfer.training.train``). None:
                weight 1 (also for these rows when other appends have weights).
            score: Joint scores t = ∇θ log p(x, z|θ), shape (n, p) (``simulate(n, rng,
                score=True)``), for training with ``score_weight > 0``; every append then needs them.

        Raises:
            InputError: a shape does not match the model, the row counts differ, a row holds
                NaN or inf (in θ, x or the weights), or a θ lies outside the prior support.
        """
        theta = as_matrix(theta, self.model.param_dim, "theta")
        x = as_matrix(x, self.model.data_dim, "x")
        if len(theta) != len(x):
            raise InputError(
                f"theta and x: expected the same number of rows, got {len(theta)} and {len(x)}")
        try:
            theta = self.prior.check(theta, "theta")
        except ValueError as err:
            raise InputError(str(err)) from None
        if weights is not None:
            w = np.asarray(weights.detach().cpu() if hasattr(weights, "detach") else weights)
            if w.shape != (len(x),) or not np.issubdtype(w.dtype, np.number) or np.iscomplexobj(w):
                raise InputError(f"weights: expected one real number per event, shape ({len(x)},), got "
                                 f"{w.dtype} of shape {w.shape}")
            w = w.astype(np.float64)
            bad = np.flatnonzero(~np.isfinite(w))
            if bad.size:
                raise InputError(f"weights: {bad.size} of {len(w)} weights are NaN or inf (rows "
                                 f"{bad[:5].tolist()}); fix or drop those events")
            weights = w
        if score is not None:
            score = as_matrix(score, self.model.param_dim, "score")
            if len(score) != len(x):
                raise InputError(f"score: expected {len(x)} rows, one per event, got {len(score)}")
        self._theta.append(theta)
        self._x.append(x)
        self._weights.append(weights)
        self._score.append(score)
        return self

    def train(
        self,
        config: TrainConfig | None = None,
        run_dir: str | None = None,
        resume: bool = False,
        **config_kwargs: Any,
    ) -> LikelihoodEstimator:
        """Train on all appended simulations (see ``mfinfer.training.train``); returns self.

        Arguments:
            config: Training settings; default ``TrainConfig(**config_kwargs)``.
            run_dir: Directory for checkpoints (enables ``resume``).
            resume: Continue from the checkpoint in ``run_dir``.
            **config_kwargs: ``TrainConfig`` fields when ``config`` is None.
        """
        if not self._x:
            raise ValueError("no simulations: call append_simulations(theta, x) first")
        config = config or TrainConfig(**config_kwargs)
        x, theta = np.concatenate(self._x), np.concatenate(self._theta)
        weights = None
        if any(w is not None for w in self._weights):
            weights = np.concatenate([np.ones(len(xs)) if w is None else w
                                      for xs, w in zip(self._x, self._weights, strict=True)])
        score: np.ndarray | None = None
        if config.score_weight > 0:
            scores = [t for t in self._score if t is not None]
            if len(scores) < len(self._score):
                raise InputError("score: score_weight > 0 needs the joint scores of every append: "
                                 "append_simulations(theta, x, score=t)")
            score = np.concatenate(scores)
        self.history = train(self.model, x, theta, config, run_dir=run_dir, resume=resume,
                             weights=weights, score=score)
        return self

    def build_posterior(self, mode: str = "manifold", **mcmc_kwargs: Any) -> LikelihoodPosterior:
        """The posterior p(θ|x) ∝ Π_i p̂(x_i|θ) p(θ), sampled by MCMC.

        Arguments:
            mode: The model's density (``"manifold"``, or ``"pie"`` for M-flows).
            **mcmc_kwargs: Defaults for ``sample_posterior`` (``rng``, ``num_walkers``, ...).
                ``method="smc"`` selects tempered SMC: for low-dimensional θ it needs far fewer
                likelihood evaluations than emcee (the default), each over all particles at once.
                ``method="grid"`` (p ≤ 3) tabulates the posterior on an adaptive grid: a few
                hundred batched evaluations for p = 1, independent of the number of samples.
        """
        return LikelihoodPosterior(self.model, self.prior, mode=mode, **mcmc_kwargs)


class LikelihoodPosterior:
    """p(θ | x_1..x_n) from a trained likelihood; ``sample(n, x=...)`` runs MCMC for that x.

    The :class:`ModelLikelihood` of an event set (its projection and Jacobian terms) is built
    once and reused while the events and the model's weights stay the same; the cache is keyed
    on the events' float64 bytes, so other events never get a stale likelihood.

    Arguments:
        model: A trained model with ``param_dim == prior.dim``.
        prior: The prior over θ.
        mode: The model's density (``"manifold"``, or ``"pie"`` for M-flows).
        **mcmc_kwargs: Defaults for ``sample_posterior``.
    """

    def __init__(
        self, model: Flow, prior: Prior, mode: str = "manifold", **mcmc_kwargs: Any
    ) -> None:
        self.model, self.prior, self.mode, self.mcmc_kwargs = model, prior, mode, mcmc_kwargs
        self.default_x: np.ndarray | None = None
        self._likelihoods: OrderedDict[tuple, ModelLikelihood] = OrderedDict()

    def set_default_x(self, x: Any) -> LikelihoodPosterior:
        """Use the events x (n, D) when no ``x=`` is given; returns self."""
        self.default_x = check_events(x, self.model.data_dim, "x")
        return self

    def _x(self, x: Any) -> np.ndarray:
        if x is not None:
            return check_events(x, self.model.data_dim, "x")
        if self.default_x is None:
            raise InputError("x: no observed events; pass x=... or call set_default_x(x) first")
        return self.default_x

    def _model_state(self) -> tuple:
        """Changes when the weights do (training steps and ``load_state_dict`` work in place)."""
        tensors = itertools.chain(self.model.parameters(), self.model.buffers())
        return tuple((id(t), t._version, t.dtype, str(t.device)) for t in tensors)

    def likelihood(self, x: Any = None) -> ModelLikelihood:
        """The likelihood θ (m, p) -> (m,) of events x (n, D), built once per x and model state.

        Arguments:
            x: Observed events (n, D); default: those of :meth:`set_default_x`.
        """
        x = self._x(x)
        key = (array_digest(x), self.mode, self._model_state())
        like = self._likelihoods.get(key)
        if like is None:
            like = ModelLikelihood(self.model, x, mode=self.mode)
            self._likelihoods[key] = like
            while len(self._likelihoods) > LIKELIHOOD_CACHE_SIZE:
                self._likelihoods.popitem(last=False)
        self._likelihoods.move_to_end(key)
        return like

    def posterior(self, num_samples: int, x: Any = None, **kwargs: Any) -> Posterior:
        """Run MCMC and return the full ``Posterior`` (samples, diagnostics, plots, storage).

        Arguments:
            num_samples: Number of samples.
            x: Observed events (n, D); default ``set_default_x``.
            **kwargs: ``sample_posterior`` options, overriding those given at construction.
        """
        return Posterior.from_mcmc(self.likelihood(x), self.prior, num_samples,
                                   **{**self.mcmc_kwargs, **kwargs})

    def sample(self, num_samples: int, x: Any = None, **kwargs: Any) -> np.ndarray:
        """Posterior samples, shape (num_samples, p), given observed events x (n, D)."""
        return self.posterior(num_samples, x, **kwargs).samples

    def log_prob(self, theta: Any, x: Any = None) -> np.ndarray:
        """Unnormalised log posterior, θ (m, p) or (p,) -> (m,); ``-inf`` outside the prior."""
        return LogPosterior(self.likelihood(x), self.prior)(theta)
