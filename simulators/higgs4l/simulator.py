"""The analytic H -> ZZ* -> 2e2mu simulator :class:`Higgs4l` (exact likelihood; physics, density and
sampling are described in :mod:`simulators.higgs4l`).

Sampling: proposal points (:mod:`simulators.higgs4l.proposal`), accept-reject against a per-theta
bound tabulated on a grid over the prior (:mod:`simulators.higgs4l.normalisation`; the weight is
convex in theta, so the maximum over a grid cell sits at a corner), one event per theta row,
batched.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from mfinfer.priors import BoxUniform
from simulators.base import Simulator, check_theta, check_x
from simulators.higgs4l import kinematics as kin
from simulators.higgs4l.amplitude import MH, _coeffs, morphing_weights
from simulators.higgs4l.cuts import _lepton_acceptance, _window, passes_cuts
from simulators.higgs4l.normalisation import (
    PRIOR_HIGH,
    PRIOR_LOW,
    detector_normalisation,
    load_normalisation,
)
from simulators.higgs4l.proposal import _propose, boost_log_density, phase_space_density
from simulators.higgs4l.selection import LeptonSelection

__all__ = ["Higgs4l"]


class Higgs4l(Simulator):
    """H -> ZZ* -> 2e2mu, theta = ``(a2, a3)`` (``a1 = 1``): 38 observables on an 11-d manifold.

    Arguments:
        cuts: apply the acceptance cuts :data:`CUTS` (sampler and normalisation both respect them).
        smearing: relative Gaussian smearing of each lepton's momentum magnitude
            (``|p| -> |p| (1 + smearing N(0, 1))``, direction kept, ``E = |p|``), e.g. 0.01-0.02;
            ``m_4l`` then differs from ``mH``, events leave the manifold and
            :meth:`log_likelihood` raises. With cuts, the cuts act on the smeared event.
        bound_safety: factor on the tabulated maximum weight used for the unweighting.

    Example:
        >>> sim = Higgs4l()
        >>> x = sim.sample([[0.5, -1.0]] * 3, rng=0)
        >>> x.shape, sim.log_likelihood(x, [0.5, -1.0]).shape
        ((3, 38), (3,))
    """

    param_dim = 2
    data_dim = len(kin.OBSERVABLE_NAMES)
    manifold_dim = 11
    param_names = ("a2", "a3")
    observable_names = kin.OBSERVABLE_NAMES

    def __init__(
        self, cuts: bool = False, smearing: float = 0.0, bound_safety: float = 1.2
    ) -> None:
        if not 0.0 <= float(smearing) <= 0.2:
            raise ValueError(f"smearing: expected a relative width in [0, 0.2], got {smearing}")
        if bound_safety < 1.0:
            raise ValueError(f"bound_safety: must be >= 1, got {bound_safety}")
        self.cuts, self.smearing, self.bound_safety = (
            bool(cuts),
            float(smearing),
            float(bound_safety),
        )
        self.prior = BoxUniform(PRIOR_LOW, PRIOR_HIGH)
        self._norms: dict[Any, dict] = {}
        self.n_overflow = 0  # candidates whose weight exceeded the bound (should stay 0)

    def __repr__(self) -> str:
        return f"Higgs4l(cuts={self.cuts}, smearing={self.smearing})"

    # -- events from ROOT files
    def event_selection(self, **options: Any) -> LeptonSelection:
        """The 2e2mu selection that turns a ROOT file's lepton collections into this simulator's
        observables: ``LeptonSelection(**options)``, for
        :func:`mfinfer.io.read_user_events`'s ``selection``."""
        return LeptonSelection(**options)

    # -- normalisation
    def normalisation(self, cuts: bool | None = None) -> dict:
        """The cached normalisation record (see :func:`load_normalisation`)."""
        cuts = self.cuts if cuts is None else cuts
        if cuts not in self._norms:
            self._norms[cuts] = load_normalisation(cuts)
        return self._norms[cuts]

    @property
    def S(self) -> np.ndarray:
        """``S_ij`` ``(3, 3)``: ``sigma(theta) = c^T S c``."""
        return np.asarray(self.normalisation()["S"])

    def sigma(self, theta: np.ndarray) -> np.ndarray:
        """Total rate ``sigma(theta) = c^T S c`` (arbitrary units), ``(n, 2)`` -> ``(n,)``."""
        c = _coeffs(check_theta(theta, self.prior))
        return np.einsum("ni,ij,nj->n", c, self.S, c)

    def sigma_error(self, theta: np.ndarray) -> np.ndarray:
        """Monte Carlo standard error of :meth:`sigma`, ``(n, 2)`` -> ``(n,)``."""
        c = _coeffs(check_theta(theta, self.prior))
        cc = (c[:, :, None] * c[:, None, :]).reshape(len(c), 9)
        return np.sqrt(np.einsum("ni,ij,nj->n", cc, np.asarray(self.normalisation()["S_cov"]), cc))

    # -- likelihood
    def morphing_weights(self, x: np.ndarray) -> np.ndarray:
        """``W_ij(x)`` ``(n, 3, 3)``: ``|M|^2(x; theta) = c^T W c``, ``c = (1, a2, a3)``."""
        x = check_x(x, self.data_dim)
        return morphing_weights(*kin.momenta_from_observables(x))

    def log_likelihood(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Exact ``log p(z(x) | theta)`` ``(n,)`` per the chart measure ``dz`` (package docstring),
        where ``z(x)`` is the chart of the lepton momenta in columns 0-15 of ``x`` (the other
        columns are functions of them on the manifold). ``-inf`` outside the cuts (``cuts=True``)
        and outside the physical phase space (momenta whose kinematics give NaN, e.g. |x| ~ 1e30).

        Raises:
            NotImplementedError: with ``smearing > 0`` (the smeared likelihood is intractable).
        """
        if self.smearing > 0:
            raise NotImplementedError(
                f"Higgs4l(smearing={self.smearing}): the smeared likelihood is an intractable "
                "convolution over the detector response; use smearing=0 for the exact likelihood"
            )
        x = check_x(x, self.data_dim)
        theta = check_theta(theta, self.prior, n=len(x))
        ps = kin.momenta_from_observables(x)
        z = kin.chart_from_momenta(*ps)
        c = _coeffs(theta)
        msq = np.einsum("ni,nij,nj->n", c, morphing_weights(*ps), c)
        with np.errstate(divide="ignore"):
            out = (
                np.log(msq)
                + np.log(phase_space_density(z[:, 0], z[:, 1]))
                + boost_log_density(z[:, 8], z[:, 9])
                - np.log(np.einsum("ni,ij,nj->n", c, self.S, c))
            )
        if self.cuts:
            with np.errstate(invalid="ignore", over="ignore"):
                out = np.where(passes_cuts(kin.observables(*ps)), out, -np.inf)
        return np.where(np.isnan(out), -np.inf, out)  # not a physical configuration: no density

    # -- sampling
    def _bound(self, theta: np.ndarray, norm: dict) -> np.ndarray:
        """Upper bound on ``c^T V c`` for each theta row: ``c^T V c`` is convex in theta, so on a
        grid cell its maximum is at a corner; take the tabulated maxima at the four corners."""
        g2, g3 = np.asarray(norm["bound"]["a2"]), np.asarray(norm["bound"]["a3"])
        wmax = np.asarray(norm["bound"]["wmax"])
        i = np.clip(np.searchsorted(g2, theta[:, 0], side="right") - 1, 0, len(g2) - 2)
        j = np.clip(np.searchsorted(g3, theta[:, 1], side="right") - 1, 0, len(g3) - 2)
        corners = np.stack([wmax[i, j], wmax[i + 1, j], wmax[i, j + 1], wmax[i + 1, j + 1]], 1)
        return self.bound_safety * corners.max(1)

    def sample(self, theta: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """One event per theta row by accept-reject from the importance proposal, ``(n, 2)`` ->
        ``(n, 38)``."""
        return self.sample_with_chart(theta, rng)[0]

    def sample_with_chart(
        self, theta: np.ndarray, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`sample`, also returning the (unsmeared) chart ``z`` ``(n, 11)`` of each
        event."""
        rng = np.random.default_rng(rng)
        theta = check_theta(theta, self.prior)
        n = len(theta)
        truth_cuts = self.cuts and self.smearing == 0.0  # with smearing, cut the smeared event
        norm = self.normalisation(truth_cuts)
        window = _window(truth_cuts)
        bound = self._bound(theta, norm)
        c_all = _coeffs(theta)
        eff = float(
            np.clip(
                np.mean(np.einsum("ni,ij,nj->n", c_all, np.asarray(norm["S"]), c_all) / bound),
                1e-3,
                1,
            )
        )
        xs, zs = np.empty((n, self.data_dim)), np.empty((n, self.manifold_dim))
        pending = np.arange(n)
        while pending.size:
            reps = int(np.clip(np.ceil(1.5 / eff), 1, max(1, 200_000 // pending.size)))
            idx = np.repeat(pending, reps)
            z, factor = _propose(len(idx), rng, window)
            ps = kin.momenta_from_chart(*z.T)
            ok = _lepton_acceptance(ps) if truth_cuts else np.ones(len(idx), bool)
            w = np.zeros(len(idx))
            sel = np.flatnonzero(ok)
            c = c_all[idx[sel]]
            W = morphing_weights(*(p[sel] for p in ps))
            w[sel] = np.einsum("ni,nij,nj->n", c, W, c) * factor[sel]
            over = w > bound[idx]
            if over.any():
                self.n_overflow += int(over.sum())
                warnings.warn(
                    f"Higgs4l.sample: {int(over.sum())} weight(s) above the unweighting bound; "
                    "increase bound_safety",
                    RuntimeWarning,
                    stacklevel=2,
                )
            acc = rng.uniform(size=len(idx)) * bound[idx] < w
            eff = max(acc.mean(), 1e-3)
            cand = np.flatnonzero(acc)
            rows, first = np.unique(idx[cand], return_index=True)
            cand = cand[first]
            ps_acc = tuple(p[cand] for p in ps)
            if self.smearing > 0:
                ps_acc = self._smear(ps_acc, rng)
            x = kin.observables(*ps_acc)
            if self.cuts and not truth_cuts:
                keep = passes_cuts(x)
                rows, x, cand = rows[keep], x[keep], cand[keep]
            xs[rows], zs[rows] = x, z[cand]
            pending = np.setdiff1d(pending, rows, assume_unique=True)
        return xs, zs

    # -- joint score
    def sample_with_score(
        self, theta: np.ndarray, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Events ``(n, 38)`` as :meth:`sample` draws them and their joint score
        ``t = ∇θ log p(x, z | θ)`` ``(n, 2)``, z the parton-level event (see :meth:`score`)."""
        theta = check_theta(theta, self.prior)
        x, z = self.sample_with_chart(theta, rng)
        return x, self.score(z, theta)

    def score(self, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Joint score of parton-level events with chart ``z`` ``(n, 11)`` at ``theta`` ``(n, 2)``
        -> ``(n, 2)``, analytic from the morphing structure:

            ∇θ log p = 2 [W c]_{1:} / (cᵀ W c) − 2 [S' c]_{1:} / (cᵀ S' c),   c = (1, a2, a3),

        (the phase space and the boost do not depend on θ). At truth level (``smearing=0``) x is the
        parton event, so this is ∇θ log p(x|θ), and ``S' = S`` (with or without cuts). The detector
        smearing does not depend on θ, so at detector level the joint score is that of the parton
        event, with ``S' = S`` without cuts, and with cuts on the smeared events ``S'`` =
        :meth:`detector_normalisation` (the θ-dependent acceptance normalises the sample).
        """
        z = np.asarray(z, dtype=float)
        if z.ndim != 2 or z.shape[1] != self.manifold_dim:
            raise ValueError(f"z: expected shape (n, {self.manifold_dim}), got {z.shape}")
        c = _coeffs(check_theta(theta, self.prior, len(z)))
        W = morphing_weights(*kin.momenta_from_chart(*z[:, :8].T))
        if self.smearing > 0 and self.cuts:
            S = self.detector_normalisation()
        else:
            S = np.asarray(self.normalisation(self.cuts and self.smearing == 0.0)["S"])
        wc, sc = np.einsum("nij,nj->ni", W, c), c @ S
        return 2 * wc[:, 1:] / np.einsum("ni,ni->n", c, wc)[:, None] - 2 * sc[:, 1:] / np.einsum(
            "ni,ni->n", c, sc
        )[:, None]

    def detector_normalisation(self, n_events: int = 2_000_000, seed: int = 0) -> np.ndarray:
        """``S'_ij = int W_ij 4 m1 m2 beta p_boost P(smeared event passes the cuts | z) dz``
        ``(3, 3)``: ``cᵀ S' c`` is the rate of accepted detector-level events (``smearing > 0``,
        ``cuts=True``). Monte Carlo over the importance proposal with one smearing per point;
        computed on first use (about a minute) and kept in memory and in the user cache
        (``$XDG_CACHE_HOME/mfinfer/``)."""
        key = ("detector", self.smearing)
        if key not in self._norms:
            self._norms[key] = {"S": detector_normalisation(self.smearing, self._smear, n_events, seed)}
        return np.asarray(self._norms[key]["S"])

    def _smear(
        self, ps: tuple[np.ndarray, ...], rng: np.random.Generator
    ) -> tuple[np.ndarray, ...]:
        out = []
        for p in ps:
            f = np.clip(1.0 + self.smearing * rng.standard_normal(len(p)), 1e-3, None)
            q = p.copy()
            q[:, 1:] *= f[:, None]
            q[:, 0] = np.linalg.norm(q[:, 1:], axis=1)
            out.append(q)
        return tuple(out)

    # -- manifold
    def true_chart(self, x: np.ndarray) -> np.ndarray:
        """Chart coordinates ``(n, 11)`` (:data:`simulators.higgs4l.kinematics.CHART_NAMES`) of the
        lepton momenta in ``x``."""
        return kin.chart_from_momenta(*kin.momenta_from_observables(check_x(x, self.data_dim)))

    def from_chart(self, z: np.ndarray) -> np.ndarray:
        """Observables ``(n, 38)`` of chart points ``z`` ``(n, 11)``; inverse of
        :meth:`true_chart`."""
        z = np.asarray(z, dtype=float)
        if z.ndim != 2 or z.shape[1] != self.manifold_dim:
            raise ValueError(f"z: expected shape (n, {self.manifold_dim}), got {z.shape}")
        return kin.observables(*kin.momenta_from_chart(*z.T))

    def project(self, x: np.ndarray) -> np.ndarray:
        """A point on the manifold near ``x``: the lepton momenta of ``x`` are made massless
        (``E = |p|``), then scaled in the four-lepton rest frame by ``mH / m_4l`` and boosted back
        with the same velocity; all observables are recomputed from them. ``(n, 38)`` -> ``(n,
        38)``."""
        ps = [p.copy() for p in kin.momenta_from_observables(check_x(x, self.data_dim))]
        for p in ps:
            p[:, 0] = np.linalg.norm(p[:, 1:], axis=1)
        P = ps[0] + ps[1] + ps[2] + ps[3]
        beta = P[:, 1:] / P[:, :1]
        scale = (MH / kin.mass(P))[:, None]
        return kin.observables(*(kin.boost(kin.boost(p, -beta) * scale, beta) for p in ps))

    def distance_to_manifold(self, x: np.ndarray) -> np.ndarray:
        """``|| x - project(x) ||`` (Euclidean, raw units) ``(n,)``: zero on the manifold and an
        upper bound on the distance to it (``project(x)`` lies on it). Angle columns are compared as
        stored, so a ``phi`` pushed across ``±pi`` counts the full ``2 pi``."""
        x = check_x(x, self.data_dim)
        return np.linalg.norm(x - self.project(x), axis=1)
