"""Adaptive grid (quadrature) sampler for low-dimensional θ (p ≤ 3).

The posterior is tabulated on cells that tile the prior's support: each cell carries the log
posterior at its centre, so its mass is exp(log post(centre)) · volume (the midpoint rule).
Cells are refined (split in 2^p children) where the mass estimate is still uncertain, and
samples are drawn exactly from the tabulated density: a cell with probability ∝ its mass, then a
uniform point inside it. Every round evaluates all new cell centres in one likelihood call, so a
batched model sees a few large batches instead of thousands of small ones, and the cost does not
grow with the number of samples.

Refinement (adaptive quadrature): the first grid's cells get an error estimate from their
neighbours (second differences of the cell masses: the midpoint rule's h² f''/24 term), so only
cells at its edge, wide cells and cells carrying the error are split; when a cell is split,
|m_parent − Σ m_children| estimates the error of the coarser rule; as the midpoint rule's error
falls ~4× per halving, a third of it is left to the children. Cells holding the last
``tail_mass`` of the posterior are not refined. Refinement stops when the estimated L1 error of
the cell masses is below ``tol`` and every occupied cell is narrower than ``1 / resolution`` of the
posterior's standard deviation.

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
from typing import Any

import numpy as np

from mfinfer.inference.potential import LogLike, LogPosterior
from mfinfer.inference.spec import GridOptions, num_samples_of
from mfinfer.priors import Prior, PriorLike, as_prior

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
        reason: Why it is not converged (the failed checks), empty when converged.
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
    reason: str = ""


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


def _curvature_error(lp: np.ndarray) -> np.ndarray:
    """The midpoint rule's error estimate for each cell of a uniform grid, from its neighbours.

    On a cell of widths h the midpoint rule misses vol · Σ_d h_d² f''_d / 24 + O(h⁴); with f the
    normalised density, h_d² f''_d · vol is the second difference of the cell masses along d, so
    the estimate needs no new evaluation. Cells at the grid's edge (no neighbour on one side) get
    ``inf``: they are checked by splitting, as refined cells are.

    Arguments:
        lp: log posterior at the cell centres, shape (n0,) * p.

    Returns:
        Estimated absolute mass error per cell, flattened (n0^p,) in the grid's order.
    """
    m = np.exp(lp - lp.max())
    m /= m.sum()
    err = np.zeros_like(m)
    for d in range(m.ndim):
        second = np.abs(np.diff(m, n=2, axis=d)) / 24
        inner = [slice(None)] * m.ndim
        inner[d] = slice(1, -1)
        err[tuple(inner)] += second
        for edge in (0, -1):
            inner[d] = slice(edge, edge + 1 if edge == 0 else None)
            err[tuple(inner)] = np.inf
    return err.reshape(-1)


class _Cells:
    """The grid: cell centres (k, p), widths (k, p), log posterior at the centres (k,) and the
    estimated mass error of each cell (k,; inf: never checked against its children)."""

    def __init__(self, centre: np.ndarray, width: np.ndarray, lp: np.ndarray) -> None:
        self.centre, self.width, self.lp = centre, width, lp
        self.err = np.full(len(centre), np.inf)

    @classmethod
    def uniform(cls, low: np.ndarray, high: np.ndarray, n0: int, log_post: LogPosterior) -> _Cells:
        """n0^p equal cells tiling the box [low, high], evaluated in one call."""
        p = len(low)
        width0 = (high - low) / n0
        axes = [low[i] + (np.arange(n0) + 0.5) * width0[i] for i in range(p)]
        centre = np.array(np.meshgrid(*axes, indexing="ij")).reshape(p, -1).T
        lp = log_post(centre)
        if not np.isfinite(lp).any():
            raise ValueError("sample_grid: the log posterior is -inf at every grid point; check "
                             "the likelihood, or raise initial_cells if the posterior is very narrow")
        cells = cls(centre, np.tile(width0, (len(centre), 1)), lp)
        cells.err = _curvature_error(lp.reshape((n0,) * p))
        return cells

    def __len__(self) -> int:
        return len(self.centre)

    def log_mass(self) -> np.ndarray:
        """Unnormalised log mass of each cell (midpoint rule), (k,)."""
        return self.lp + np.log(self.width).sum(1)

    def log_norm(self) -> float:
        """log Σ mass (the log evidence)."""
        lm = self.log_mass()
        return float(lm.max() + np.log(np.exp(lm - lm.max()).sum()))

    def inflation(self, mask: np.ndarray) -> np.ndarray:
        """Each masked cell's share of the in-cell variance Σ m (w / std)² (its widest dimension)."""
        lm = self.log_mass()[mask]
        m = np.exp(lm - lm.max())
        m /= m.sum()
        centre, width = self.centre[mask], self.width[mask]
        mean = m @ centre
        std = np.sqrt(m @ ((centre - mean) ** 2 + width**2 / 12))
        return m * np.max((width / std) ** 2, axis=1)

    def to_split(self, opts: GridOptions) -> np.ndarray | None:
        """Mask of the cells to split, or None when the grid meets ``tol`` and ``resolution``:
        cells carrying the error, never checked, or too wide for the posterior's spread."""
        bulk = _bulk(self.log_mass(), opts.tail_mass)
        infl = self.inflation(bulk)
        target = 1 / opts.resolution**2
        coarse = infl > target / bulk.sum() if infl.sum() > target else np.zeros(len(infl), bool)
        checked = np.isfinite(self.err)
        unchecked = bulk & ~checked
        if float(self.err[checked].sum()) <= opts.tol and not unchecked.any() and not coarse.any():
            return None
        split = unchecked | (checked & (self.err > opts.tol / max(1, checked.sum())))
        split[np.flatnonzero(bulk)[coarse]] = True
        return split

    def refine(self, split: np.ndarray, kid_lp: np.ndarray, kids: np.ndarray) -> None:
        """Replace the ``split`` cells by their 2^p children (centres ``kids``, log posterior
        ``kid_lp``); each child inherits a third of |parent mass − Σ children| / 2^p as its error."""
        p = self.centre.shape[1]
        lm, z = self.log_mass(), self.log_norm()
        kid_width = np.repeat(self.width[split] / 2, 2**p, axis=0)
        kid_lm = (kid_lp + np.log(kid_width).sum(1)).reshape(-1, 2**p)
        with np.errstate(invalid="ignore"):  # -inf - (-inf) for empty families
            delta = np.abs(np.exp(lm[split] - z) - np.exp(kid_lm - z).sum(1))
        keep = ~split
        self.centre = np.concatenate([self.centre[keep], kids])
        self.width = np.concatenate([self.width[keep], kid_width])
        self.lp = np.concatenate([self.lp[keep], kid_lp])
        self.err = np.concatenate([self.err[keep], np.repeat(delta / (3 * 2**p), 2**p)])


def _refine_until_converged(cells: _Cells, log_post: LogPosterior,
                            opts: GridOptions) -> tuple[int, int, bool]:
    """Split cells round by round (one likelihood call each) until :meth:`_Cells.to_split` is
    satisfied or the budget would be exceeded; returns (rounds, evaluations, budget hit)."""
    rounds, n_eval = 0, len(cells)
    while (split := cells.to_split(opts)) is not None:
        kids = _children(cells.centre[split], cells.width[split])
        if n_eval + len(kids) > opts.max_evaluations:
            return rounds, n_eval, True
        cells.refine(split, log_post(kids), kids)
        n_eval += len(kids)
        rounds += 1
    return rounds, n_eval, False


def _draw(cells: _Cells, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n exact draws from the tabulated density: (points (n, p), their cells (n,))."""
    lm = cells.log_mass()
    mass = np.exp(lm - lm.max())
    idx = rng.choice(len(mass), size=n, p=mass / mass.sum())
    return cells.centre[idx] + (rng.random((n, cells.centre.shape[1])) - 0.5) * cells.width[idx], idx


def _checks(cells: _Cells, log_post: LogPosterior, opts: GridOptions, low: np.ndarray,
            high: np.ndarray, truncated: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """The grid's own checks: quadrature error, resolution, mass at a truncated edge, and the
    importance-sampling ESS of the exact posterior against the tabulated one."""
    lm = cells.log_mass()
    mass = np.exp(lm - cells.log_norm())
    checked = np.isfinite(cells.err)
    at_edge = np.zeros(len(cells), dtype=bool)
    c, w = cells.centre, cells.width
    for i in np.flatnonzero(truncated):
        at_edge |= (c[:, i] - w[:, i] <= low[i]) | (c[:, i] + w[:, i] >= high[i])
    check, idx = _draw(cells, opts.check_points, rng)
    return {
        "error": float(cells.err[checked].sum() + mass[~checked].sum()),
        "resolution": float(1 / np.sqrt(cells.inflation(_bulk(lm, opts.tail_mass)).sum())),
        "boundary_mass": float(mass[at_edge].sum()),
        "check_ess": _ess_fraction(log_post(check) - cells.lp[idx]),
    }


def _failed(checks: dict[str, float], opts: GridOptions, budget_hit: bool, n_eval: int) -> str:
    """The failed convergence checks in words ("" when all pass)."""
    failed = [f"estimated error {checks['error']:.2g} > tol {opts.tol:g}"
              if checks["error"] > opts.tol else "",
              f"resolution {checks['resolution']:.1f} < {opts.resolution:g}"
              if checks["resolution"] < opts.resolution else "",
              f"check ESS {checks['check_ess']:.2f} < 0.9" if checks["check_ess"] < 0.9 else "",
              f"mass at a truncated edge {checks['boundary_mass']:.1g} > 1e-3"
              if checks["boundary_mass"] > 1e-3 else "",
              f"evaluation budget reached ({n_eval} of max_evaluations={opts.max_evaluations})"
              if budget_hit else ""]
    return "; ".join(f for f in failed if f)


def sample_grid(
    log_like: LogLike,
    prior: PriorLike,
    num_samples: int,
    options: GridOptions | None = None,
    *,
    rng: np.random.Generator | int | None = None,
    warn: bool = True,
    **option_values: Any,
) -> GridResult:
    """Sample p(θ | x) ∝ exp(log_like(θ)) · prior(θ) from an adaptively refined grid.

    Steps: tile the prior's box (:meth:`_Cells.uniform`), refine where the mass is uncertain or the
    cells are wide (:func:`_refine_until_converged`), draw exactly from the tabulated density
    (:func:`_draw`) and run the grid's own checks (:func:`_checks`).

    Arguments:
        log_like: Vectorized log-likelihood, θ (m, p) -> (m,); only called inside the prior
            support, once per refinement round with all new cell centres.
        prior: Prior over θ (see :mod:`mfinfer.priors`), with p ≤ 3 parameters.
        num_samples: Number of samples to return (>= 1).
        options: :class:`~mfinfer.inference.spec.GridOptions` (``initial_cells``, ``tol``,
            ``resolution``, ``tail_mass``, ``check_points``, ``max_evaluations``).
        rng: Seed or generator.
        warn: Raise a ``UserWarning`` when not converged (``method="auto"`` falls back instead).
        **option_values: The same options as keywords, when ``options`` is None.

    Returns:
        A :class:`GridResult`.

    Example:
        >>> import numpy as np
        >>> from mfinfer.priors import BoxUniform
        >>> res = sample_grid(lambda t: -0.5 * np.sum(t**2, axis=1), BoxUniform((-5.0,), (5.0,)),
        ...                   1000, rng=0)
        >>> res.samples.shape, res.converged
        ((1000, 1), True)
    """
    opts = options if options is not None else GridOptions(**option_values)
    prior = as_prior(prior)
    p = prior.dim
    if p > 3:
        raise ValueError(f"sample_grid: the grid needs p <= 3 parameters, got {p}; use "
                         "method='smc' or 'emcee'")
    num_samples = num_samples_of(num_samples)
    rng = np.random.default_rng(rng)
    log_post = LogPosterior(log_like, prior)
    low, high, truncated = _domain(prior, rng)
    n0 = INITIAL_CELLS[p] if opts.initial_cells is None else opts.initial_cells
    cells = _Cells.uniform(low, high, n0, log_post)
    rounds, n_eval, budget_hit = _refine_until_converged(cells, log_post, opts)
    samples, _ = _draw(cells, int(num_samples), rng)
    checks = _checks(cells, log_post, opts, low, high, truncated, rng)
    n_eval += opts.check_points
    reason = _failed(checks, opts, budget_hit, n_eval)
    if reason and warn:
        warnings.warn(f"sample_grid: not converged ({reason}); raise max_evaluations or "
                      "initial_cells, or use method='smc'", stacklevel=2)
    return GridResult(samples=np.ascontiguousarray(samples), num_cells=len(cells),
                      num_evaluations=n_eval, rounds=rounds, log_evidence=cells.log_norm(),
                      converged=not reason, reason=reason, **checks)
