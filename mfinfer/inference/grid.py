"""Adaptive grid (quadrature) sampler for low-dimensional θ (p ≤ 3).

The posterior is tabulated on cells that tile the prior's support: each cell carries the log
posterior at its centre, so its mass is exp(log post(centre)) · volume (the midpoint rule).
Cells are refined (split in 2^p children) where the mass estimate is still uncertain, and
samples are drawn exactly from the tabulated density: a cell with probability ∝ its mass, then a
uniform point inside it. Every round evaluates all new cell centres in one likelihood call, so a
batched model sees a few large batches instead of thousands of small ones, and the cost does not
grow with the number of samples.

Refinement (adaptive quadrature): when a cell is split, |m_parent − Σ m_children| estimates the
error of the coarser rule; as the midpoint rule's error falls ~4× per halving, a third of it is
left to the children. Cells holding the last ``tail_mass`` of the posterior are not refined.
Refinement stops when the estimated L1 error of the cell masses is below ``tol`` and every
occupied cell is narrower than ``1 / resolution`` of the posterior's standard deviation.

Convergence check, independent of the refinement rule: ``check_points`` draws from the tabulated
density are evaluated with the true log posterior; the effective sample size of the importance
weights exp(log post − log tabulated) measures how close the two densities are (1 = identical).

The sampler is exact in the limit of fine cells. Its limits: a mode much narrower than the
initial cells and far from the other modes can be missed (raise ``initial_cells``); an unbounded
prior is truncated to the range of 10⁴ prior draws, widened by 10% (``boundary_mass`` reports the
posterior mass in the cells at such an edge).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from mfinfer.inference.potential import LogLike, LogPosterior
from mfinfer.priors import Prior

__all__ = ["GridResult", "sample_grid"]

#: Default number of initial cells per dimension, by number of parameters p.
INITIAL_CELLS = {1: 64, 2: 32, 3: 16}
#: Prior draws that fix the range of an unbounded prior.
RANGE_DRAWS = 10_000


@dataclass(frozen=True)
class GridResult:
    """Output of :func:`sample_grid`.

    Attributes:
        samples: Independent samples of the tabulated posterior, shape (n, p).
        num_cells: Number of cells of the final grid.
        num_evaluations: Number of θ points at which ``log_like`` was evaluated.
        rounds: Number of refinement rounds.
        error: Estimated L1 error of the final cell masses (0 = exact quadrature).
        resolution: Smallest ratio posterior std / cell width over dimensions, among the cells
            holding all but ``tail_mass`` of the posterior.
        boundary_mass: Posterior mass in cells at a truncated edge of an unbounded prior.
        check_ess: Importance-sampling ESS fraction of the true posterior against the tabulated
            one at ``check_points`` tabulated draws (1 = identical densities).
        log_evidence: log ∫ prior(θ) exp(log_like(θ)) dθ by the quadrature.
        converged: ``error <= tol``, ``resolution >= resolution target``, ``check_ess >= 0.9``,
            ``boundary_mass <= 1e-3`` and the evaluation budget was not exhausted.
    """

    samples: np.ndarray
    num_cells: int
    num_evaluations: int
    rounds: int
    error: float
    resolution: float
    boundary_mass: float
    check_ess: float
    log_evidence: float
    converged: bool


def _domain(prior: Prior, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, truncated): the prior's box, unbounded sides cut to the range of prior draws."""
    low, high = (np.asarray(b, dtype=float).copy() for b in prior.bounds)
    truncated = ~(np.isfinite(low) & np.isfinite(high))
    if truncated.any():
        draws = prior.sample(RANGE_DRAWS, rng)
        lo, hi = draws.min(0), draws.max(0)
        pad = 0.1 * (hi - lo)
        low = np.where(np.isfinite(low), low, lo - pad)
        high = np.where(np.isfinite(high), high, hi + pad)
    return low, high, truncated


def _children(centre: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Centres of the 2^p children of cells (k, p) with widths (k, p) -> (k · 2^p, p)."""
    p = centre.shape[1]
    signs = np.array(np.meshgrid(*[[-0.25, 0.25]] * p, indexing="ij")).reshape(p, -1).T
    return (centre[:, None, :] + signs[None] * width[:, None, :]).reshape(-1, p)


def _bulk(log_mass: np.ndarray, tail_mass: float) -> np.ndarray:
    """Boolean mask of the cells that hold all but ``tail_mass`` of the normalised mass."""
    m = np.exp(log_mass - log_mass.max())
    m /= m.sum()
    order = np.argsort(m)  # ascending: the lightest cells form the tail
    tail = np.cumsum(m[order]) <= tail_mass
    mask = np.ones(len(m), dtype=bool)
    mask[order[tail]] = False
    return mask


def _ess_fraction(log_w: np.ndarray) -> float:
    """Kish ESS / n of log-weights (n,); -inf weights count as zero."""
    finite = np.isfinite(log_w)
    if not finite.any():
        return 0.0
    w = np.where(finite, np.exp(log_w - log_w[finite].max()), 0.0)
    return float(w.sum() ** 2 / np.sum(w**2) / len(w))


def sample_grid(
    log_like: LogLike,
    prior: Prior,
    num_samples: int,
    *,
    initial_cells: int | None = None,
    tol: float = 0.01,
    resolution: float = 8.0,
    tail_mass: float = 1e-4,
    check_points: int = 256,
    max_evaluations: int = 200_000,
    rng: np.random.Generator | int | None = None,
) -> GridResult:
    """Sample p(θ | x) ∝ exp(log_like(θ)) · prior(θ) from an adaptively refined grid.

    Arguments:
        log_like: Vectorized log-likelihood, θ (m, p) -> (m,); only called inside the prior
            support, once per refinement round with all new cell centres.
        prior: Prior over θ (see :mod:`mfinfer.priors`), with p ≤ 3 parameters.
        num_samples: Number of samples to return.
        initial_cells: Cells per dimension of the first grid (default 64 / 32 / 16 for
            p = 1 / 2 / 3).
        tol: Target for the estimated L1 error of the cell masses.
        resolution: Target for posterior std / cell width in every dimension (8: the uniform
            draw inside a cell inflates the variance by at most 1/768).
        tail_mass: Posterior mass left in unrefined (lightest) cells.
        check_points: Draws used by the importance-sampling check (``check_ess``).
        max_evaluations: Budget of likelihood evaluations; refinement stops when it would
            be exceeded.
        rng: Seed or generator.

    Returns:
        A :class:`GridResult`; a ``UserWarning`` is raised when it is not ``converged``.

    Example:
        >>> import numpy as np
        >>> from mfinfer.priors import BoxUniform
        >>> res = sample_grid(lambda t: -0.5 * np.sum(t**2, axis=1), BoxUniform((-5.0,), (5.0,)),
        ...                   1000, rng=0)
        >>> res.samples.shape, res.converged
        ((1000, 1), True)
    """
    p = prior.dim
    if p > 3:
        raise ValueError(f"sample_grid: the grid needs p <= 3 parameters, got {p}; use "
                         "method='smc' or 'emcee'")
    if int(num_samples) < 1:
        raise ValueError(f"num_samples: expected a positive integer, got {num_samples}")
    n0 = INITIAL_CELLS[p] if initial_cells is None else int(initial_cells)
    if n0 < 2:
        raise ValueError(f"initial_cells: expected at least 2 cells per dimension, got {n0}")
    if not 0.0 < tol < 1.0 or not 0.0 <= tail_mass < 0.1 or resolution <= 0:
        raise ValueError(f"tol in (0, 1), tail_mass in [0, 0.1) and resolution > 0 expected, got "
                         f"{tol}, {tail_mass}, {resolution}")
    rng = np.random.default_rng(rng)
    log_post = LogPosterior(log_like, prior)
    low, high, truncated = _domain(prior, rng)

    width0 = (high - low) / n0
    axes = [low[i] + (np.arange(n0) + 0.5) * width0[i] for i in range(p)]
    centre = np.array(np.meshgrid(*axes, indexing="ij")).reshape(p, -1).T
    width = np.tile(width0, (len(centre), 1))
    lp = log_post(centre)
    n_eval = len(centre)
    if not np.isfinite(lp).any():
        raise ValueError("sample_grid: the log posterior is -inf at every grid point; check the "
                         "likelihood, or raise initial_cells if the posterior is very narrow")
    err = np.full(len(centre), np.inf)  # estimated mass error per cell; inf: never checked
    rounds, budget_hit = 0, False

    def log_mass() -> np.ndarray:
        return lp + np.log(width).sum(1)

    def moments(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(normalised masses of the cells in ``mask``, posterior std (p,) from them)."""
        lm = log_mass()[mask]
        m = np.exp(lm - lm.max())
        m /= m.sum()
        mean = m @ centre[mask]
        var = m @ ((centre[mask] - mean) ** 2 + width[mask] ** 2 / 12)
        return m, np.sqrt(var)

    def inflation(mask: np.ndarray) -> np.ndarray:
        """Each cell's share of the in-cell variance Σ m (w / std)² (its largest dimension)."""
        m, std = moments(mask)
        return m * np.max((width[mask] / std) ** 2, axis=1)

    while True:
        lm = log_mass()
        z = lm.max() + np.log(np.exp(lm - lm.max()).sum())
        bulk = _bulk(lm, tail_mass)
        infl = inflation(bulk)
        coarse = infl > (1 / resolution**2) / bulk.sum() if infl.sum() > 1 / resolution**2 else infl < 0
        checked = np.isfinite(err)
        total_err = float(err[checked].sum())
        unchecked = bulk & ~checked
        if total_err <= tol and not unchecked.any() and not coarse.any():
            break
        # Split the cells that carry the error, that were never checked, or that are too wide.
        split = unchecked | (checked & (err > tol / max(1, checked.sum())))
        split[np.flatnonzero(bulk)[coarse]] = True
        kids = _children(centre[split], width[split])
        if n_eval + len(kids) > max_evaluations:
            budget_hit = True
            break
        kid_lp = log_post(kids)
        n_eval += len(kids)
        rounds += 1
        kid_width = np.repeat(width[split] / 2, 2**p, axis=0)
        kid_lm = (kid_lp + np.log(kid_width).sum(1)).reshape(-1, 2**p)
        parent = np.exp(lm[split] - z)
        with np.errstate(invalid="ignore"):  # -inf - (-inf) for empty families
            children = np.exp(kid_lm - z).sum(1)
        delta = np.abs(parent - children)
        kid_err = np.repeat(delta / (3 * 2**p), 2**p)
        keep = ~split
        centre = np.concatenate([centre[keep], kids])
        width = np.concatenate([width[keep], kid_width])
        lp = np.concatenate([lp[keep], kid_lp])
        err = np.concatenate([err[keep], kid_err])

    lm = log_mass()
    z = lm.max() + np.log(np.exp(lm - lm.max()).sum())
    mass = np.exp(lm - z)
    bulk = _bulk(lm, tail_mass)
    res_ratio = float(1 / np.sqrt(inflation(bulk).sum()))
    checked = np.isfinite(err)
    total_err = float(err[checked].sum() + mass[~checked].sum())
    at_edge = np.zeros(len(centre), dtype=bool)
    for i in np.flatnonzero(truncated):
        at_edge |= (centre[:, i] - width[:, i] <= low[i]) | (centre[:, i] + width[:, i] >= high[i])
    boundary = float(mass[at_edge].sum())

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        cells = rng.choice(len(mass), size=n, p=mass / mass.sum())
        return centre[cells] + (rng.random((n, p)) - 0.5) * width[cells], cells

    samples, _ = draw(int(num_samples))
    check, cells = draw(check_points)
    check_lp = log_post(check)
    n_eval += check_points
    check_ess = _ess_fraction(check_lp - lp[cells])
    converged = bool(total_err <= tol and res_ratio >= resolution and check_ess >= 0.9
                     and boundary <= 1e-3 and not budget_hit)
    if not converged:
        warnings.warn(
            f"sample_grid: not converged (estimated error {total_err:.2g} vs tol {tol:g}, "
            f"resolution {res_ratio:.1f} vs {resolution:g}, check ESS {check_ess:.2f} vs 0.9, "
            f"mass at a truncated edge {boundary:.1g}, {n_eval} evaluations of "
            f"{max_evaluations}); raise max_evaluations or initial_cells, or use method='smc'",
            stacklevel=2,
        )
    return GridResult(
        samples=np.ascontiguousarray(samples),
        num_cells=len(centre),
        num_evaluations=n_eval,
        rounds=rounds,
        error=total_err,
        resolution=res_ratio,
        boundary_mass=boundary,
        check_ess=check_ess,
        log_evidence=float(z),
        converged=converged,
    )

