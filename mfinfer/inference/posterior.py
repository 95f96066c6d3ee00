"""Posterior objects: MCMC samples with their log-probability, summaries, plots and storage.

A :class:`Posterior` holds samples θ ~ p(θ | x) (n, p), the prior, optionally the
vectorized log-likelihood that produced them, the MCMC diagnostics and free-form metadata.
Its log posterior is :class:`~mfinfer.inference.potential.LogPosterior`; it is stored by
:mod:`~mfinfer.inference.storage` as ``<stem>.npz`` + ``<stem>.json``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfinfer._validation import as_matrix
from mfinfer.errors import InputError
from mfinfer.inference.emcee_sampler import MCMCResult, sample_emcee
from mfinfer.inference.grid import GridResult
from mfinfer.inference.potential import LogLike, LogPosterior
from mfinfer.inference.sampling import method_used, resolve_spec, sample_posterior
from mfinfer.inference.smc import SMCResult
from mfinfer.inference.spec import EmceeOptions, PosteriorSpec
from mfinfer.inference.storage import (
    FORMAT_VERSION,
    grid_summary,
    load_posterior,
    mcmc_summary,
    prior_to_config,
    save_posterior,
    smc_summary,
)
from mfinfer.priors import Prior, PriorLike, as_prior

__all__ = ["Posterior"]

SUMMARY_QUANTILES = (0.025, 0.16, 0.5, 0.84, 0.975)


class Posterior:
    """Posterior samples plus what is needed to extend, evaluate and summarise them.

    Arguments:
        samples: Posterior samples, shape (n, p).
        prior: The prior used for sampling (needed for :meth:`log_prob`, :meth:`map`,
            and drawing more samples).
        log_like: Vectorized log-likelihood (m, p) -> (m,), or ``None`` (e.g. after
            :meth:`load`); then only the stored samples can be used.
        log_probs: Unnormalised log posterior of each sample, shape (n,), if known.
        mcmc: Diagnostics of the MCMC run that produced the samples.
        smc: Diagnostics of the SMC run that produced the samples (``method="smc"``).
        grid: Diagnostics of the grid that produced the samples (``method="grid"``).
        labels: Parameter names, length p (default ``theta_0``, ...).
        metadata: JSON-serialisable free-form information (data set, model, seed, ...).

    Example:
        >>> import numpy as np
        >>> from mfinfer.priors import BoxUniform
        >>> post = Posterior.from_spec(lambda t: -0.5 * np.sum(t**2, axis=1),
        ...                            BoxUniform((-5.0,), (5.0,)), 500, rng=0)
        >>> post.samples.shape, post.metadata["sampler"]["method"]
        ((500, 1), 'grid')
    """

    def __init__(
        self,
        samples: np.ndarray,
        prior: PriorLike | None = None,
        log_like: LogLike | None = None,
        *,
        log_probs: np.ndarray | None = None,
        mcmc: MCMCResult | None = None,
        labels: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        smc: SMCResult | None = None,
        grid: GridResult | None = None,
    ) -> None:
        samples = np.asarray(samples, dtype=float)
        if samples.ndim == 1:
            samples = samples[:, None]
        samples = as_matrix(samples, None, "samples")
        p = samples.shape[1]
        prior = None if prior is None else as_prior(prior)
        if prior is not None and prior.dim != p:
            raise InputError(f"prior: dim {prior.dim} does not match samples (n, {p})")
        if prior is not None:
            outside = np.flatnonzero(~prior.contains(samples))
            if outside.size:
                raise InputError(
                    f"samples: {outside.size} of {len(samples)} lie outside the prior's support "
                    f"(first: row {outside[0]} = {samples[outside[0]].tolist()}); a posterior "
                    "cannot put mass where the prior has none: check the sampler or the prior"
                )
        if log_probs is not None:
            log_probs = np.asarray(log_probs, dtype=float)
            if log_probs.shape != (len(samples),):
                raise ValueError(
                    f"log_probs: expected shape ({len(samples)},), got {log_probs.shape}"
                )
        labels = [f"theta_{i}" for i in range(p)] if labels is None else list(labels)
        if len(labels) != p:
            raise ValueError(f"labels: expected {p} names, got {len(labels)}: {labels}")
        self.samples = samples
        self.prior = prior
        self.log_like = log_like
        self.log_probs = log_probs
        self.mcmc = mcmc
        self.smc = smc
        self.grid = grid
        self.labels = labels
        self.metadata = dict(metadata or {})

    @classmethod
    def from_spec(
        cls,
        log_like: LogLike,
        prior: Prior,
        num_samples: int | None = None,
        *,
        spec: PosteriorSpec | None = None,
        labels: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        rng: np.random.Generator | int | None = None,
        progress: bool = True,
        initial: np.ndarray | None = None,
        **options: Any,
    ) -> Posterior:
        """Sample with :func:`~mfinfer.inference.sampling.sample_posterior` and wrap the result.

        The diagnostics go to ``grid``, ``smc`` or ``mcmc`` (emcee), whichever sampler ran, and
        ``metadata["sampler"]`` records it: ``{"method": used, "requested": spec.method,
        "fallback": why auto chose SMC or None, "converged": ..., "spec": spec.to_dict()}``.

        Arguments:
            log_like: Vectorized log-likelihood (m, p) -> (m,).
            prior: Prior over θ.
            num_samples: Number of samples (default: the spec's).
            spec: The posterior spec (default ``PosteriorSpec()``, ``method="auto"``).
            labels: Parameter names.
            metadata: JSON-serialisable extra information.
            rng, progress, initial: see ``sample_posterior``.
            **options: ``method`` and flat sampler options, replacing the spec's.
        """
        spec = resolve_spec(spec, num_samples, **options)
        res = sample_posterior(log_like, prior, spec=spec, rng=rng, progress=progress,
                               initial=initial)
        used = method_used(res)
        record = {"method": used, "requested": spec.method,
                  "fallback": res.fallback if isinstance(res, SMCResult) else None,
                  "converged": bool(res.converged), "spec": spec.to_dict()}
        meta = {**(metadata or {}), "sampler": record}
        if isinstance(res, SMCResult):
            return cls(res.samples, prior, log_like, log_probs=res.log_prob, smc=res,
                       labels=labels, metadata=meta)
        if isinstance(res, GridResult):  # no exact log posterior per sample: computed on demand
            return cls(res.samples, prior, log_like, grid=res, labels=labels, metadata=meta)
        return cls(res.samples, prior, log_like, log_probs=res.log_prob, mcmc=res, labels=labels,
                   metadata=meta)

    #: The former name of :meth:`from_spec`.
    from_mcmc = from_spec

    # ---------------------------------------------------------------- evaluation

    @property
    def dim(self) -> int:
        """Number of parameters p."""
        return self.samples.shape[1]

    def log_prob(self, theta: np.ndarray) -> np.ndarray:
        """Unnormalised log posterior log_like(θ) + log prior(θ); ``-inf`` outside the support.

        Arguments:
            theta: Parameter points, shape (m, p) or (p,).

        Returns:
            Array of shape (m,).
        """
        return self.potential(theta)

    @property
    def potential(self) -> LogPosterior:
        """The log posterior θ (m, p) -> (m,) built from ``log_like`` and ``prior``.

        Raises:
            RuntimeError: the log-likelihood or the prior is missing (e.g. after :meth:`load`).
        """
        if self.log_like is None or self.prior is None:
            missing = "log-likelihood" if self.log_like is None else "prior"
            raise RuntimeError(
                f"Posterior.log_prob: this posterior has no {missing} (it was loaded from disk "
                "or built from samples only); pass it: Posterior.load(path, log_like=..., "
                "prior=...) or set posterior.log_like / posterior.prior"
            )
        return LogPosterior(self.log_like, self.prior)

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Draw n posterior samples, shape (n, p).

        Stored samples are resampled without replacement when ``n`` does not exceed their
        number; otherwise MCMC is run again (started from stored samples) and the new
        samples are appended to the store (``mcmc`` keeps the diagnostics of the first
        run). This needs ``log_like`` and ``prior``.

        Arguments:
            n: Number of samples.
            rng: Seed or generator.
        """
        rng = np.random.default_rng(rng)
        if n <= len(self.samples):
            return self.samples[rng.choice(len(self.samples), size=n, replace=False)].copy()
        if self.log_like is None or self.prior is None:
            raise RuntimeError(
                f"Posterior.sample: {n} samples requested but only {len(self.samples)} are "
                "stored, and more cannot be drawn without a log-likelihood and prior; pass "
                "them: Posterior.load(path, log_like=..., prior=...) or ask for fewer samples"
            )
        walkers = self.mcmc.num_walkers if self.mcmc is not None else max(32, 2 * self.dim + 2)
        if len(np.unique(self.samples, axis=0)) >= walkers:  # start from distinct samples
            unique = np.unique(self.samples, axis=0)
            start = unique[rng.choice(len(unique), size=walkers, replace=False)]
        else:  # too few: a small ball around the best one
            lp = self.log_probs if self.log_probs is not None else self.log_prob(self.samples)
            start = self.samples[int(np.argmax(lp))]
        res = sample_emcee(self.log_like, self.prior, n - len(self.samples),
                           EmceeOptions(num_walkers=walkers), rng=rng, initial=start, progress=False)
        lp_old = self.log_probs if self.log_probs is not None else self.log_prob(self.samples)
        self.samples = np.concatenate([self.samples, res.samples])
        self.log_probs = np.concatenate([lp_old, res.log_prob])
        return self.samples[rng.permutation(len(self.samples))[:n]].copy()

    # ---------------------------------------------------------------- summaries

    @property
    def mean(self) -> np.ndarray:
        """Posterior mean, shape (p,)."""
        return self.samples.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """Posterior standard deviation (ddof=1), shape (p,)."""
        return self.samples.std(axis=0, ddof=1)

    def quantiles(self, q: float | Sequence[float]) -> np.ndarray:
        """Marginal quantiles: shape (len(q), p), or (p,) for a scalar q."""
        q_arr = np.asarray(q, dtype=float)
        if np.any((q_arr < 0) | (q_arr > 1)):
            raise ValueError(f"q: quantiles must lie in [0, 1], got {q_arr.tolist()}")
        return np.quantile(self.samples, q_arr, axis=0)

    def map(self, refine: bool = True) -> np.ndarray:
        """Maximum a posteriori estimate, shape (p,).

        Starts from the sample with the highest log posterior and, if ``refine`` and a
        log-likelihood is attached, polishes it with L-BFGS-B inside the prior bounds
        (finite-difference gradients). The refined point is kept only if it is better.
        """
        lp = self.log_probs
        if lp is None:
            lp = self.log_prob(self.samples)
        best = int(np.argmax(lp))
        x0, f0 = self.samples[best].copy(), float(lp[best])
        if not refine or self.log_like is None or self.prior is None:
            return x0
        from scipy.optimize import minimize

        try:
            low, high = self.prior.bounds
        except InputError:  # a support without bounds (e.g. a simplex): unbounded search
            low, high = np.full(len(x0), -np.inf), np.full(len(x0), np.inf)
        bounds = [
            (lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None)
            for lo, hi in zip(low, high, strict=True)
        ]

        def neg(t: np.ndarray) -> float:
            v = float(self.log_prob(t[None, :])[0])
            return -v if np.isfinite(v) else 1e300

        res = minimize(neg, x0, method="L-BFGS-B", bounds=bounds)
        if np.isfinite(res.fun) and -res.fun >= f0 and self.prior.contains(res.x[None])[0]:
            return np.asarray(res.x, dtype=float)
        return x0

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: mean, std, quantiles, MCMC diagnostics, labels, metadata."""
        out: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "num_samples": len(self.samples),
            "labels": self.labels,
            "mean": self.mean.tolist(),
            "std": self.std.tolist() if len(self.samples) > 1 else [0.0] * self.dim,
            "quantiles": {
                str(q): v.tolist()
                for q, v in zip(SUMMARY_QUANTILES, self.quantiles(SUMMARY_QUANTILES), strict=True)
            },
            "prior": prior_to_config(self.prior),
            "metadata": self.metadata,
        }
        if self.mcmc is not None:
            out["mcmc"] = mcmc_summary(self.mcmc)
        if self.smc is not None:
            out["smc"] = smc_summary(self.smc)
        if self.grid is not None:
            out["grid"] = grid_summary(self.grid)
        return out

    # ---------------------------------------------------------------- plots

    def corner(
        self,
        path: str | os.PathLike,
        truth: np.ndarray | None = None,
        labels: Sequence[str] | None = None,
        reference: Posterior | Mapping[str, Posterior | np.ndarray] | None = None,
        name: str = "posterior",
        **corner_kwargs: Any,
    ) -> Path:
        """Write a corner plot of this posterior, optionally overlaid on reference(s).

        Arguments:
            path: Output image (format from the suffix, e.g. ``.png``, ``.pdf``).
            truth: True parameters (p,), drawn as black lines.
            labels: Axis labels (default ``self.labels``).
            reference: Another posterior (drawn as "reference"), or a mapping name ->
                posterior / samples to overlay.
            name: Legend name of this posterior.
            **corner_kwargs: Passed to :func:`corner_plot`.

        Returns:
            The written path.
        """
        sets: dict[str, Posterior | np.ndarray] = {name: self}
        if isinstance(reference, Posterior):
            sets["reference"] = reference
        elif reference is not None:
            sets.update(reference)
        from mfinfer.plotting import corner_plot

        return corner_plot(
            sets, truth=truth, path=path, labels=labels or self.labels, **corner_kwargs
        )

    # ---------------------------------------------------------------- storage

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<stem>.npz`` (arrays) and ``<stem>.json`` (summary) as one atomic pair (the JSON,
        renamed last, holds the npz's SHA-256).

        See :func:`~mfinfer.inference.storage.save_posterior`.

        Arguments:
            path: ``<stem>``, ``<stem>.npz`` or ``<stem>.json``.

        Returns:
            The path of the ``.npz`` file.
        """
        return save_posterior(self, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        log_like: LogLike | None = None,
        prior: Prior | None = None,
    ) -> Posterior:
        """Read a posterior written by :meth:`save` (no pickle).

        See :func:`~mfinfer.inference.storage.load_posterior`.

        Arguments:
            path: ``<stem>``, ``<stem>.npz`` or ``<stem>.json``.
            log_like: Attach a log-likelihood (not stored on disk) to enable
                :meth:`log_prob`, :meth:`map` refinement and drawing more samples.
            prior: Override the prior; by default it is rebuilt from the JSON summary
                (box and Gaussian priors).
        """
        return load_posterior(cls, path, log_like=log_like, prior=prior)

    def __repr__(self) -> str:
        return (
            f"Posterior(n={len(self.samples)}, p={self.dim}, labels={self.labels}, "
            f"log_like={'yes' if self.log_like is not None else 'no'})"
        )
