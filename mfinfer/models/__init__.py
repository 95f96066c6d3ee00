"""Models: ambient flow (AF), M-flow / Mₑ-flow / PIE (``ManifoldFlow``), FOM (``FOMFlow``) and
ensembles of them (``Ensemble``).

Every model follows the :class:`Flow` protocol (``log_prob``, ``sample`` and declared capabilities,
see :mod:`mfinfer.models.base`). ``save_model``/``load_model`` store a model as ``weights.pt``
(loaded with ``weights_only=True``) plus ``model.json`` (its class and constructor arguments).
Adding a model variant: its module here, plus its line in ``storage.MODELS``.
"""

from mfinfer.models.ambient import AmbientFlow
from mfinfer.models.base import Flow
from mfinfer.models.ensemble import Ensemble
from mfinfer.models.fom import Chart, FOMFlow
from mfinfer.models.manifold import InjectiveFlow, ManifoldFlow
from mfinfer.models.storage import MODELS, build_model, load_model, model_options, prior_theta_map, save_model

__all__ = ["MODELS", "AmbientFlow", "Chart", "Ensemble", "FOMFlow", "Flow", "InjectiveFlow", "ManifoldFlow",
           "build_model", "load_model", "model_options", "prior_theta_map", "save_model"]
