"""sbi's neural likelihood estimation (NLE) as the baseline a user would pick instead of mfinfer.

:func:`train_nle` trains sbi's ``NLE`` with its own defaults (a MAF density estimator, batch 200,
lr 5e-4, 10 % validation, early stopping after 20 epochs without improvement); :func:`save_nle` /
:func:`load_nle` keep the estimator as a ``state_dict`` plus JSON (no pickle), written and read
as a checked pair (:func:`mfinfer.files.atomic_write_pair`: ``nle.json`` holds the SHA-256 of
``weights.pt``, so another NLE's weights copied in, or damaged ones, are refused), and
:class:`NLELikelihood` is its likelihood Σᵢ log p̂(xᵢ|θ) for mfinfer's samplers (the function
sbi's own MCMC samples), so the NLE's posterior and an mfinfer model's come from the same sampler:

    estimator, info = train_nle(theta, x, simulator.prior, seed=0)
    posterior = sample_posterior(NLELikelihood(estimator, x_obs), simulator.prior, 1000, method="grid")

Written against sbi 0.27.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfinfer._validation import as_matrix, check_finite_parameters
from mfinfer.caching import array_digest
from mfinfer.errors import ConfigError, CorruptFileError
from mfinfer.files import atomic_write_pair, open_pair, torch_load_tensors

__all__ = ["NLELikelihood", "load_nle", "save_nle", "sbi_prior", "train_nle"]

#: sbi's default density estimator for NLE.
DENSITY_ESTIMATOR = "maf"


def sbi_prior(prior: Any) -> Any:
    """The torch prior sbi takes for ``prior`` (anything :func:`mfinfer.priors.as_prior` takes):
    sbi's ``BoxUniform`` for a box, ``Independent(Normal)`` / ``MultivariateNormal`` for the
    Gaussians, a :class:`~mfinfer.distribution_prior.DistributionPrior`'s own distribution."""
    from sbi.utils import BoxUniform
    from torch.distributions import Independent, MultivariateNormal, Normal

    from mfinfer.distribution_prior import DistributionPrior
    from mfinfer.priors import Gaussian, MultivariateGaussian, as_prior

    prior = as_prior(prior)
    if isinstance(prior, DistributionPrior):
        return prior.dist

    def f32(v: Any) -> torch.Tensor:
        return torch.as_tensor(v, dtype=torch.float32)

    if isinstance(prior, Gaussian):
        return Independent(Normal(f32(prior.loc), f32(prior.scale)), 1)
    if isinstance(prior, MultivariateGaussian):
        return MultivariateNormal(f32(prior.loc), f32(prior.covariance))
    low, high = (f32(b) for b in prior.bounds)
    return BoxUniform(low, high)


def train_nle(theta: np.ndarray, x: np.ndarray, prior: Any, seed: int = 0,
              max_epochs: int | None = None) -> tuple[Any, dict]:
    """Train sbi's NLE with its defaults on simulations θ (n, p), x (n, D); ``max_epochs`` caps
    the epochs (None: sbi's early stopping alone decides).

    Returns the density estimator and a record: wall seconds, epochs, best validation loss and
    the SHA-256 of the data (which :func:`load_nle` checks).
    """
    from sbi.inference import NLE

    torch.manual_seed(seed)
    inference = NLE(sbi_prior(prior), density_estimator=DENSITY_ESTIMATOR, show_progress_bars=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # e.g. sbi's note on constant columns (a mass shell)
        warnings.simplefilter("ignore")
        inference.append_simulations(torch.as_tensor(theta, dtype=torch.float32),
                                     torch.as_tensor(x, dtype=torch.float32))
        estimator = inference.train(**({} if max_epochs is None else {"max_num_epochs": max_epochs}))
    info = {"density_estimator": DENSITY_ESTIMATOR, "seed": seed,
            "seconds": time.perf_counter() - t0,
            "epochs": int(inference.summary["epochs_trained"][-1]),
            "best_validation_loss": float(inference.summary["best_validation_loss"][-1]),
            "data_sha256": array_digest(x, theta), "shape": [len(x), x.shape[1], theta.shape[1]]}
    return estimator.eval(), info


WEIGHTS, META = "weights.pt", "nle.json"
_FIX = "train and save the NLE again (save_nle)"


def save_nle(estimator: Any, info: dict, directory: str | Path) -> None:
    """Write ``weights.pt`` (the state_dict) and ``nle.json`` (the record of :func:`train_nle`
    plus the SHA-256 of ``weights.pt``) as a pair; refuses an estimator with NaN or inf weights."""
    directory = Path(directory)
    check_finite_parameters(estimator, "estimator")
    state = estimator.state_dict()
    atomic_write_pair({directory / WEIGHTS: lambda f: torch.save(state, f)}, directory / META, meta=info)


def load_nle(directory: str | Path, theta: np.ndarray, x: np.ndarray) -> tuple[Any, dict]:
    """The estimator saved by :func:`save_nle`, rebuilt on its training data θ, x (the network's
    shapes come from them; its z-scoring is restored from the weights).

    Raises:
        ConfigError: θ, x are not the data it was trained on.
        FileNotFoundError: ``nle.json`` or ``weights.pt`` is missing.
        CorruptFileError: ``weights.pt`` does not match the SHA-256 in ``nle.json`` (damaged, or
            another NLE's), ``nle.json`` has no SHA-256 (saved before the check existed), or the
            weights hold NaN or inf.
    """
    from sbi.neural_nets import likelihood_nn

    directory = Path(directory)
    with open_pair(directory / META, [WEIGHTS], fix=_FIX, hint="a directory written by save_nle") as (
            info, files):
        if "sha256" not in info:
            raise CorruptFileError(f"{directory / META}: holds no SHA-256 of {WEIGHTS} (saved before "
                                   f"NLE files were checked), so the weights cannot be trusted; {_FIX}")
        state = torch_load_tensors(files[WEIGHTS], directory / WEIGHTS, map_location="cpu", fix=_FIX)
    info = {k: v for k, v in info.items() if k != "sha256"}
    if info.get("data_sha256") != array_digest(x, theta):
        raise ConfigError(f"{directory}: the NLE was trained on other simulations than the θ, x "
                          "given; pass its training data, or train it again")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = likelihood_nn(info["density_estimator"])(torch.as_tensor(theta[:1000], dtype=torch.float32),
                                                       torch.as_tensor(x[:1000], dtype=torch.float32))
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CorruptFileError(f"{directory / WEIGHTS}: not the weights of this NLE "
                               f"({' '.join(str(err).split())[:200]}); {_FIX}") from None
    try:
        check_finite_parameters(net, str(directory / WEIGHTS))
    except ValueError as err:
        raise CorruptFileError(str(err)) from None
    return net.eval(), info


class NLELikelihood:
    """Σᵢ log p̂(xᵢ|θ) of a trained sbi density estimator for observed events x (n, D):
    θ (m, p) -> (m,) numpy, evaluated in chunks of about ``chunk`` (event, θ) pairs."""

    def __init__(self, estimator: Any, x: np.ndarray, chunk: int = 16_384) -> None:
        check_finite_parameters(estimator, "estimator")
        self.estimator, self.chunk = estimator.eval(), chunk
        self.x = torch.as_tensor(as_matrix(x, None, "x"), dtype=torch.float32)

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        rows = torch.as_tensor(as_matrix(theta, None, "theta"), dtype=torch.float32)
        n, out = len(self.x), []
        with torch.no_grad():
            for t in rows.split(max(1, self.chunk // n)):
                inputs = self.x[:, None, :].expand(n, len(t), self.x.shape[1])
                out.append(self.estimator.log_prob(inputs, condition=t).sum(0))
        return torch.cat(out).numpy().astype(float)
