"""The sigma(theta) morphing normalisation of :class:`~simulators.higgs4l.Higgs4l`: compute, cache.

``sigma(theta) = c^T S c``, ``c = (1, a2, a3)``, ``S_ij = int W_ij 4 m1 m2 beta p_boost 1_cuts dz``
(see :mod:`simulators.higgs4l`). ``S`` is a Monte Carlo integral (Breit-Wigner multichannel
importance sampling in ``m1, m2``, :mod:`simulators.higgs4l.proposal`), stored with its MC
covariance and the per-theta maximum importance weight on a grid over the prior (the sampler's
unweighting bound) as ``simulators/data/higgs4l_norm_{nocuts,cuts}.json``
(``python -m simulators.higgs4l --compute-normalisation``), else in the user cache.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mfinfer.files import atomic_write_json
from simulators.higgs4l import kinematics as kin
from simulators.higgs4l.amplitude import GAMMA_Z, MH, MZ, SW2, _coeffs, morphing_weights
from simulators.higgs4l.cuts import CUTS, _lepton_acceptance, _window, passes_cuts
from simulators.higgs4l.proposal import PT_SCALE, Y_MAX, Y_SIGMA, _channels, _propose, _sample_boost

__all__ = [
    "PRIOR_HIGH",
    "PRIOR_LOW",
    "compute_normalisation",
    "detector_normalisation",
    "load_normalisation",
]

#: Prior box of theta = (a2, a3).
PRIOR_LOW, PRIOR_HIGH = (-2.0, -3.0), (2.0, 3.0)

# ----------------------------------------------------------------------------- normalisation S_ij
_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
# bound grid over the prior box (spacing 0.25), for the unweighting
_GRID_A2, _GRID_A3 = (
    np.linspace(PRIOR_LOW[0], PRIOR_HIGH[0], 17),
    np.linspace(PRIOR_LOW[1], PRIOR_HIGH[1], 25),
)


def _config(cuts: bool) -> dict:
    return {
        "version": 1,
        "mH": MH,
        "mZ": MZ,
        "GammaZ": GAMMA_Z,
        "sW2": SW2,
        "eps0123_upper": 1,
        "boost": {"pt_scale": PT_SCALE, "y_sigma": Y_SIGMA, "y_max": Y_MAX},
        "cuts": CUTS if cuts else None,
        "channels": list(_channels(_window(cuts))),
        "grid": [_GRID_A2.tolist(), _GRID_A3.tolist()],
    }


def _tag(cuts: bool) -> str:
    return "cuts" if cuts else "nocuts"


def _user_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mfinfer"


def compute_normalisation(
    cuts: bool = False,
    n_events: int = 10_000_000,
    seed: int = 0,
    chunk: int = 100_000,
    n_orientations: int | None = None,
    progress: bool = False,
) -> dict:
    """Monte Carlo estimate of ``S_ij = int W_ij 4 m1 m2 beta p_boost 1_cuts dz`` and of the
    per-theta maximum importance weight used by the sampler.

    Masses are drawn from the Breit-Wigner multichannel proposal (restricted to the ``m_Z1, m_Z2``
    window when ``cuts``), decay angles uniformly, the boost from its density. With cuts, each decay
    configuration is re-oriented and re-boosted ``n_orientations`` times (``|M|^2`` does not depend
    on the orientation or the boost) and the lepton acceptance averaged, which costs little and
    removes most of the variance the cuts add.

    Returns:
        A JSON-able dict: ``config``, ``S`` (3, 3), ``S_cov`` (9, 9) covariance of the flattened
        estimate, ``rel_err_max`` (largest relative MC error of ``sigma(theta)`` on the prior grid),
        ``bound`` (``a2``, ``a3`` grids and ``wmax`` (17, 25): largest ``c^T V c`` per grid point).
    """
    rng = np.random.default_rng(seed)
    window = _window(cuts)
    k = (8 if cuts else 1) if n_orientations is None else n_orientations
    g2, g3 = np.meshgrid(_GRID_A2, _GRID_A3, indexing="ij")
    C = _coeffs(np.stack([g2.ravel(), g3.ravel()], 1))
    CC = (C[:, :, None] * C[:, None, :]).reshape(len(C), 9)
    s1, s2, wmax, done = np.zeros(9), np.zeros((9, 9)), np.zeros(len(C)), 0
    while done < n_events:
        m = min(chunk, n_events - done)
        z, factor = _propose(m, rng, window)
        V = (
            morphing_weights(*kin.momenta_from_chart(*z[:, :8].T)) * factor[:, None, None]
        ).reshape(m, 9)
        acc = np.ones(m)
        if cuts:
            acc = np.zeros(m)
            for _ in range(k):
                zz = z.copy()
                zz[:, 2] = rng.uniform(-1, 1, m)
                zz[:, [3, 7]] = rng.uniform(-np.pi, np.pi, (m, 2))
                zz[:, 8:] = _sample_boost(m, rng)
                acc += _lepton_acceptance(kin.momenta_from_chart(*zz.T))
            acc /= k
        v = V * acc[:, None]
        s1 += v.sum(0)
        s2 += v.T @ v
        if np.any(acc > 0):
            wmax = np.maximum(wmax, (CC @ V[acc > 0].T).max(1))
        done += m
        if progress:
            print(f"  {done}/{n_events}", flush=True)
    mean = s1 / done
    cov = (s2 / done - np.outer(mean, mean)) / done
    sig = CC @ mean
    rel = np.sqrt(np.einsum("gi,ij,gj->g", CC, cov, CC)) / sig
    return {
        "config": _config(cuts),
        "n_events": int(done),
        "seed": seed,
        "n_orientations": k,
        "S": mean.reshape(3, 3).tolist(),
        "S_cov": cov.tolist(),
        "rel_err_max": float(rel.max()),
        "bound": {
            "a2": _GRID_A2.tolist(),
            "a3": _GRID_A3.tolist(),
            "wmax": wmax.reshape(g2.shape).tolist(),
        },
    }


def load_normalisation(
    cuts: bool = False, compute_if_missing: bool = True, n_events: int = 2_000_000
) -> dict:
    """The cached normalisation for ``cuts``: package data
    ``simulators/data/higgs4l_norm_<tag>.json``
    (written by ``python -m simulators.higgs4l --compute-normalisation``), else the user cache
    ``$XDG_CACHE_HOME/mfinfer/``; if neither matches the current physics configuration, it is
    computed with ``n_events`` (a warning says so) and written atomically to the user cache."""
    name = f"higgs4l_norm_{_tag(cuts)}.json"
    for path in (_DATA_DIR / name, _user_cache_dir() / name):
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if data.get("config") == json.loads(json.dumps(_config(cuts))):
                return data
    if not compute_if_missing:
        raise FileNotFoundError(
            f"no valid {name}; run `python -m simulators.higgs4l --compute-normalisation`"
        )
    warnings.warn(
        f"{name} missing or stale: computing it with {n_events} events (about a minute); run "
        "`python -m simulators.higgs4l --compute-normalisation` for the precise package copy",
        RuntimeWarning,
        stacklevel=2,
    )
    data = compute_normalisation(cuts, n_events=n_events)
    atomic_write_json(data, _user_cache_dir() / name)
    return data


def detector_normalisation(
    smearing: float,
    smear: Callable[[tuple[np.ndarray, ...], np.random.Generator], tuple[np.ndarray, ...]],
    n_events: int = 2_000_000,
    seed: int = 0,
    chunk: int = 100_000,
) -> list[list[float]]:
    """``S'_ij = int W_ij 4 m1 m2 beta p_boost P(pass | z) dz`` for cuts on smeared events: the
    normalisation of the accepted detector-level sample, whose θ-dependence enters the joint score.

    Monte Carlo over the importance proposal (no mass window: the cuts act on the smeared event),
    each point smeared once by ``smear(momenta, rng)``. Cached in the user cache under the physics
    configuration, the smearing, ``n_events`` and ``seed``.

    Returns:
        ``S'`` as a 3 × 3 nested list.
    """
    config = {**_config(False), "detector_cuts": CUTS, "smearing": smearing, "n_events": n_events,
              "seed": seed}
    path = _user_cache_dir() / f"higgs4l_norm_detector_{smearing:g}.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            data = {}
        if data.get("config") == json.loads(json.dumps(config)):
            return data["S"]
    rng = np.random.default_rng(seed)
    total, done = np.zeros(9), 0
    while done < n_events:
        m = min(chunk, n_events - done)
        z, factor = _propose(m, rng, _window(False))
        ps = kin.momenta_from_chart(*z.T)
        V = (morphing_weights(*ps) * factor[:, None, None]).reshape(m, 9)
        acc = passes_cuts(kin.observables(*smear(ps, rng)))
        total += V[acc].sum(0)
        done += m
    S = (total / done).reshape(3, 3).tolist()
    atomic_write_json({"config": config, "S": S}, path)
    return S
