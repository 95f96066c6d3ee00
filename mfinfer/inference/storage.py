"""Posterior storage: ``<stem>.npz`` (arrays, read with ``allow_pickle=False``) + ``<stem>.json``.

The JSON file is the human-readable :meth:`Posterior.summary` (it carries ``format_version``, the
labels, the metadata, the prior's config and the MCMC scalars); the npz file holds the samples,
their log posteriors and the MCMC arrays. The log-likelihood is never stored: pass it again to
:func:`load_posterior` to evaluate or extend a loaded posterior.

The two files are written as a pair (:func:`mfinfer.files.atomic_write_pair`): the JSON file is
renamed into place last and records the SHA-256 of the npz file, which :func:`load_posterior`
checks, so a reader never sees half a pair and a damaged npz raises ``CorruptFileError``. A JSON
file without the digest (older saves) loads unchecked.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.lib.npyio import NpzFile

from mfinfer.errors import CorruptFileError
from mfinfer.files import atomic_write_pair, open_pair
from mfinfer.inference.emcee_sampler import MCMCResult
from mfinfer.inference.grid import GridResult
from mfinfer.inference.potential import LogLike
from mfinfer.inference.smc import SMCResult
from mfinfer.priors import Prior, prior_from_config

if TYPE_CHECKING:
    from mfinfer.inference.posterior import Posterior

__all__ = [
    "FORMAT_VERSION",
    "grid_summary",
    "load_posterior",
    "mcmc_summary",
    "posterior_paths",
    "prior_to_config",
    "save_posterior",
    "smc_summary",
]

#: Version of the npz + JSON layout; :func:`load_posterior` refuses any other.
FORMAT_VERSION = 1
_MCMC_SCALARS = ("acceptance_fraction", "n_steps", "burn_in", "thin", "num_walkers", "converged")
_FIX = "delete both files and sample the posterior again, or restore them from a backup"

P = TypeVar("P", bound="Posterior")


def prior_to_config(prior: Prior | None) -> dict | None:
    """The JSON config of a prior (read by ``prior_from_config``), or None if it has none."""
    return None if prior is None else prior.to_config()


def mcmc_summary(mcmc: MCMCResult) -> dict:
    """The JSON part of an :class:`MCMCResult`: its scalars plus ``tau`` and ``ess`` as lists."""
    out: dict = {k: getattr(mcmc, k) for k in _MCMC_SCALARS}
    out["tau"] = mcmc.tau.tolist()
    out["ess"] = mcmc.ess.tolist()
    return out


def smc_summary(smc: SMCResult) -> dict:
    """The JSON part of an :class:`SMCResult`: scalars and the per-stage diagnostics as lists."""
    return {
        "final_ess": smc.final_ess,
        "moved_fraction": smc.moved_fraction,
        "log_evidence": smc.log_evidence,
        "num_particles": smc.num_particles,
        "num_evaluations": smc.num_evaluations,
        "converged": smc.converged,
        "betas": smc.betas.tolist(),
        "stage_ess": smc.stage_ess.tolist(),
        "stage_acceptance": smc.stage_acceptance.tolist(),
        "stage_moves": smc.stage_moves.tolist(),
        "stage_moved": smc.stage_moved.tolist(),
        "stage_correlation": smc.stage_correlation.tolist(),
        "stage_scale": smc.stage_scale.tolist(),
        "reason": smc.reason,
        "fallback": smc.fallback,
    }


def grid_summary(grid: GridResult) -> dict:
    """The JSON part of a :class:`GridResult`: its scalar diagnostics."""
    return {k: getattr(grid, k) for k in ("num_cells", "num_evaluations", "rounds", "error",
                                          "resolution", "boundary_mass", "check_ess",
                                          "log_evidence", "converged", "reason")}


def posterior_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(<stem>.npz, <stem>.json)`` for ``<stem>``, ``<stem>.npz`` or ``<stem>.json``."""
    stem = Path(path)
    if stem.suffix in (".npz", ".json"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")


def save_posterior(posterior: Posterior, path: str | os.PathLike) -> Path:
    """Write ``<stem>.npz`` (arrays) and ``<stem>.json`` (summary and the npz's SHA-256),
    atomically as a pair (the JSON file last).

    Arguments:
        posterior: The posterior to store.
        path: ``<stem>``, ``<stem>.npz`` or ``<stem>.json``.

    Returns:
        The path of the ``.npz`` file.
    """
    arrays: dict[str, Any] = {"samples": posterior.samples}
    if posterior.log_probs is not None:
        arrays["log_probs"] = posterior.log_probs
    if posterior.mcmc is not None:
        arrays.update(
            mcmc_samples=posterior.mcmc.samples,
            mcmc_log_prob=posterior.mcmc.log_prob,
            mcmc_tau=posterior.mcmc.tau,
            mcmc_ess=posterior.mcmc.ess,
        )
    npz, js = posterior_paths(path)
    atomic_write_pair({npz: lambda f: np.savez(f, **arrays)}, js, posterior.summary())
    return npz


def load_posterior(
    cls: type[P],
    path: str | os.PathLike,
    *,
    log_like: LogLike | None = None,
    prior: Prior | None = None,
) -> P:
    """Read a posterior written by :func:`save_posterior` (no pickle).

    Arguments:
        cls: The class to build (:class:`Posterior` or a subclass).
        path: ``<stem>``, ``<stem>.npz`` or ``<stem>.json``.
        log_like: A log-likelihood (m, p) -> (m,) to attach; it is not stored on disk.
        prior: Override the prior; by default it is rebuilt from the JSON summary (box and
            Gaussian priors).

    Raises:
        FileNotFoundError: one of the two files is missing.
        ValueError: the files have another ``format_version``.
        CorruptFileError: the npz file does not match the SHA-256 in the JSON file, either file
            cannot be read, or the samples hold NaN.
    """
    npz, js = posterior_paths(path)
    hint = f"{npz.name} and {js.name} as written by Posterior.save"
    with open_pair(js, [npz.name], fix=_FIX, hint=hint) as (summary, files):
        version = summary.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"Posterior.load: {js} has format_version {version}, this version of mfinfer reads "
                f"{FORMAT_VERSION}"
            )
        arrays = _read_npz(files[npz.name], npz)
    if prior is None and summary.get("prior") is not None:
        prior = prior_from_config(summary["prior"])
    mcmc = None
    if "mcmc" in summary and "mcmc_samples" in arrays:
        m = summary["mcmc"]
        mcmc = MCMCResult(
            samples=arrays["mcmc_samples"],
            log_prob=arrays["mcmc_log_prob"],
            tau=arrays["mcmc_tau"],
            ess=arrays["mcmc_ess"],
            acceptance_fraction=float(m["acceptance_fraction"]),
            n_steps=int(m["n_steps"]),
            burn_in=int(m["burn_in"]),
            thin=int(m["thin"]),
            num_walkers=int(m["num_walkers"]),
            converged=bool(m["converged"]),
        )
    return cls(
        arrays["samples"],
        prior,
        log_like,
        log_probs=arrays.get("log_probs"),
        mcmc=mcmc,
        labels=summary.get("labels"),
        metadata=summary.get("metadata"),
    )


def _read_npz(file: Any, npz: Path) -> dict[str, np.ndarray]:
    """The arrays of a posterior's npz file (no pickle); refuses a damaged file, missing samples
    and NaN samples."""
    try:
        data = np.load(file, allow_pickle=False)
        if not isinstance(data, NpzFile):
            raise ValueError(f"a single {type(data).__name__}, not an npz archive")
        with data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        reason = (str(err).strip().splitlines() or [""])[0][:160]
        raise CorruptFileError(f"{npz}: expected an npz file written by Posterior.save, got a damaged or "
                               f"truncated file ({type(err).__name__}: {reason}); {_FIX}") from None
    samples = arrays.get("samples")
    if samples is None:
        raise CorruptFileError(f"{npz}: missing the array 'samples'; expected the arrays written by "
                               f"Posterior.save, got {sorted(arrays)}; {_FIX}")
    if samples.dtype.kind in "fc" and np.isnan(samples).any():
        raise CorruptFileError(f"{npz}: 'samples' holds {int(np.isnan(samples).sum())} NaN values "
                               f"(of {samples.size}); expected finite samples; {_FIX}")
    return arrays
