"""mfinfer: simulation-based inference with manifold-learning flows (M-flows).

The public API::

    from mfinfer import ManifoldFlow, LikelihoodEstimator, get_simulator

    sim = get_simulator("power")
    theta, x = sim.simulate(20_000, rng=0)
    estimator = LikelihoodEstimator(ManifoldFlow(3, 2, param_dim=1), prior=sim.prior)
    posterior = estimator.append_simulations(theta, x).train(epochs=10).build_posterior()
    samples = posterior.sample(5000, x=x_observed)

The subpackages follow the data flow, left to right:

- ``registry``: simulator plug-ins, found by the ``mfinfer.simulators`` entry points;
- ``models``: what is trained (AF, M-flow / Mₑ-flow / PIE, FOM, ensembles; ``jacobian``, ``storage``);
- ``training``: how it is trained (phases, schedules, the score term, the loop, checkpoints,
  ``train_ensemble``);
- ``inference``: likelihoods, the log-posterior, the posterior spec (``PosteriorSpec``) and its
  samplers (``method="auto"``: grid for p ≤ 3, else SMC; emcee on request), posterior objects,
  the estimator;
- ``evaluation``: metrics, their registry, reports;
- ``calibration``: coverage and SBC campaigns (``mfinfer calibrate``, on dask);
- ``interop``: mfinfer models inside sbi (``to_sbi``);
- ``io``: ROOT event files; ``plotting``: corner plots;
- ``config``, ``pipeline``, ``cli``: YAML runs and the ``mfinfer`` command;
- ``files``: atomic writes, SHA-256-checked file pairs, safe loading;
- ``errors``: the exceptions; ``priors`` (BoxUniform, Gaussian, MultivariateGaussian, and
  ``as_prior`` for torch / sbi priors); ``utils``.

Reference: Brehmer & Cranmer, "Flows for simultaneous manifold learning and density estimation",
arXiv:2003.13913.
"""

from mfinfer.inference import LikelihoodEstimator, Posterior, PosteriorSpec, sample_posterior
from mfinfer.models import AmbientFlow, Ensemble, FOMFlow, ManifoldFlow, load_model, save_model
from mfinfer.priors import BoxUniform, Gaussian, MultivariateGaussian, as_prior
from mfinfer.registry import get_simulator

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``to_sbi`` loads sbi on first use (seconds), not on ``import mfinfer``."""
    if name == "to_sbi":
        from mfinfer.interop import to_sbi

        return to_sbi
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AmbientFlow",
    "BoxUniform",
    "Ensemble",
    "FOMFlow",
    "Gaussian",
    "LikelihoodEstimator",
    "ManifoldFlow",
    "MultivariateGaussian",
    "Posterior",
    "PosteriorSpec",
    "as_prior",
    "get_simulator",
    "load_model",
    "sample_posterior",
    "save_model",
    "to_sbi",
]
