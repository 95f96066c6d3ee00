"""An sbi-style front end: simulations in, a trained likelihood and its posterior out.

    model, prior = ManifoldFlow(3, 2, param_dim=1), BoxUniform((-1,), (1,))
    estimator = LikelihoodEstimator(model=model, prior=prior)
    posterior = estimator.append_simulations(theta, x).train(epochs=20).build_posterior()
    samples = posterior.sample(5000, x=x_obs)

``build_posterior()`` samples with ``method="auto"``: the adaptive grid for p ≤ 3 when its checks
pass, adaptive tempered SMC otherwise; ``build_posterior(method="emcee")`` or a whole
:class:`~mfinfer.inference.spec.PosteriorSpec` (``build_posterior(spec=...)``) choose otherwise.
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
from mfinfer.inference.sampling import resolve_spec
from mfinfer.inference.spec import PosteriorSpec
from mfinfer.models import Flow, prior_theta_map
from mfinfer.priors import PriorLike, as_prior
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

    def __init__(self, model: Flow, prior: PriorLike) -> None:
        prior = as_prior(prior)
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

        A conditional model built without ``theta_loc``/``theta_scale`` gets the prior's θ map
        here (``prior.scaling()``: a box's centre and half-width, a Gaussian's mean and std), as
        sbi z-scores θ; it is kept in ``model.config`` and so by ``save_model``. To train on θ
        as given, build the model with ``theta_loc=[0] * p, theta_scale=[1] * p``.

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
        theta_map = prior_theta_map(self.prior)
        if self.model.param_dim > 0 and not self.model.has_theta_map and theta_map:
            self.model.set_theta_map(theta_map["theta_loc"], theta_map["theta_scale"])
        self.history = train(self.model, x, theta, config, run_dir=run_dir, resume=resume,
                             weights=weights, score=score)
        return self

    def build_posterior(self, *, mode: str | None = None, spec: PosteriorSpec | None = None,
                        rng: np.random.Generator | int | None = None, progress: bool = True,
                        **options: Any) -> LikelihoodPosterior:
        """The posterior p(θ|x) ∝ Π_i p̂(x_i|θ) p(θ); every option is keyword-only.

        Arguments:
            mode: The model's density (None: its own, ``model.density_modes[0]``; ``"pie"`` for
                M-flows).
            spec: How to sample (default ``PosteriorSpec()``: ``method="auto"``, the grid for
                p ≤ 3 when its checks pass, else adaptive SMC).
            rng: Seed or generator used by every ``sample``/``posterior`` call without its own.
            progress: emcee's progress bar (``method="emcee"``), only on a terminal.
            **options: ``method``, ``num_samples`` and flat sampler options (``max_moves``,
                ``num_walkers``, ...), replacing the spec's; validated here, an option of a
                sampler the method never runs is an error naming its sampler.
        """
        return LikelihoodPosterior(self.model, self.prior, mode=mode, spec=spec, rng=rng,
                                   progress=progress, **options)


class LikelihoodPosterior:
    """p(θ | x_1..x_n) from a trained likelihood; ``sample(n, x=...)`` samples for that x.

    The :class:`ModelLikelihood` of an event set (its projection and Jacobian terms) is built
    once and reused while the events and the model's weights stay the same; the cache is keyed
    on the events' float64 bytes, so other events never get a stale likelihood.

    Arguments:
        model: A trained model with ``param_dim == prior.dim``.
        prior: The prior over θ.
        mode: The model's density (None: the model's own, ``model.density_modes[0]``).
        spec, rng, progress, **options: as :meth:`LikelihoodEstimator.build_posterior`.

    Attributes:
        spec: The validated :class:`~mfinfer.inference.spec.PosteriorSpec`.
    """

    def __init__(self, model: Flow, prior: PriorLike, *, mode: str | None = None,
                 spec: PosteriorSpec | None = None, rng: np.random.Generator | int | None = None,
                 progress: bool = True, **options: Any) -> None:
        modes = model.density_modes
        if mode is not None and mode not in modes:
            raise InputError(f"mode: {type(model).__name__} offers the densities {modes}, got "
                             f"{mode!r}; leave mode out for the model's own")
        self.model, self.prior = model, as_prior(prior)
        self.mode = modes[0] if mode is None else mode
        self.spec = resolve_spec(spec, **options)
        self.rng, self.progress = rng, progress
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

    def posterior(self, num_samples: int | None = None, x: Any = None, *,
                  rng: np.random.Generator | int | None = None, **options: Any) -> Posterior:
        """Sample and return the full ``Posterior`` (samples, diagnostics, plots, storage).

        Arguments:
            num_samples: Number of samples (default: the spec's).
            x: Observed events (n, D); default ``set_default_x``.
            rng: Seed or generator (default: the one given at construction).
            **options: ``method``, sampler options or ``progress``/``initial``, replacing those
                given at construction for this call.
        """
        run = {k: options.pop(k) for k in ("progress", "initial") if k in options}
        spec = resolve_spec(self.spec, num_samples, **options)
        return Posterior.from_spec(self.likelihood(x), self.prior, spec=spec,
                                   rng=self.rng if rng is None else rng,
                                   **{"progress": self.progress, **run})

    def sample(self, num_samples: int | None = None, x: Any = None, **options: Any) -> np.ndarray:
        """Posterior samples, shape (num_samples, p), given observed events x (n, D)."""
        return self.posterior(num_samples, x, **options).samples

    def log_prob(self, theta: Any, x: Any = None) -> np.ndarray:
        """Unnormalised log posterior, θ (m, p) or (p,) -> (m,); ``-inf`` outside the prior."""
        return LogPosterior(self.likelihood(x), self.prior)(theta)
