"""Gaussians on spheres: the circle, the n-sphere and a conditional 2-sphere (toy manifolds).

Points live on the unit n-sphere Sⁿ ⊂ Rⁿ⁺¹, written in standard hyperspherical coordinates
φ = (φ₁, …, φₙ) (polar angles φ₁ … φₙ₋₁ ∈ [0, π], azimuth φₙ ∈ (-π/2, 3π/2]):

    x₁ = cos φ₁,  x_k = sin φ₁ ⋯ sin φ_{k-1} cos φ_k  (k ≤ n),  xₙ₊₁ = sin φ₁ ⋯ sin φₙ,

with volume element √det(JᵀJ) = ∏ᵢ sin(φᵢ)^(n-i), J = ∂x/∂φ. The paper's angles are
φᵢ ~ N(π/2, (π/4)²) on R; to make the density on the sphere exact and normalized we use

- a normal truncated to [0, π] for each polar angle (about 4.6 % of the untruncated mass lies
  outside for σ = π/4, so the truncation is a real, documented choice);
- a wrapped normal for the azimuth (the normal pushed through φ ↦ φ mod 2π): periodic, hence
  continuous across the seam of the chart, and numerically equal to the plain normal density
  to ~1e-7 within 2σ of the mean.

``log_likelihood`` is the exact log density of x with respect to the surface measure of the
sphere (ε = 0) or to Lebesgue measure on Rⁿ⁺¹ (ε > 0, radial noise). Reference: Brehmer &
Cranmer, "Flows for simultaneous manifold learning and density estimation", arXiv:2003.13913,
section "Experiments".

Unconditional simulators (``param_dim = 0``) have ``prior = None``; they take θ of shape
(n, 0) (or ``None`` where no sample count is needed) and ``simulate(n, rng)`` returns
``(np.zeros((n, 0)), x)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp, ndtr
from scipy.stats import norm, truncnorm

from mfinfer.priors import BoxUniform
from simulators.base import Simulator, check_last_dim, check_theta, check_x, numpy_or_torch

__all__ = ["Circle", "ConditionalSphere", "SphericalGaussian"]

#: Azimuth chart (AZIMUTH_HIGH - 2π, AZIMUTH_HIGH]: centred on the mean azimuth π/2.
AZIMUTH_HIGH = 1.5 * np.pi
#: Images φ + 2πk summed in the wrapped normal, k = -K…K; exact to double precision for σ ≤ π/2.
_WRAPS = 5


def _truncnorm_logpdf(x: np.ndarray, loc: np.ndarray, scale: np.ndarray, low: float, high: float):
    """log N(x; loc, scale²) truncated to [low, high] (-inf outside)."""
    return truncnorm.logpdf(x, (low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale)


def _wrapped_norm_logpdf(x: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """log of the wrapped normal Σₖ N(x + 2πk; loc, scale²), periodic in x with period 2π."""
    k = np.arange(-_WRAPS, _WRAPS + 1)
    terms = norm.logpdf(x[..., None] + 2 * np.pi * k, loc[..., None], scale[..., None])
    return logsumexp(terms, axis=-1)


def _truncnorm_grad(
    x: np.ndarray, loc: np.ndarray, scale: np.ndarray, low: float, high: float
) -> tuple[np.ndarray, np.ndarray]:
    """∂/∂loc and ∂/∂scale of ``_truncnorm_logpdf`` (the normaliser Φ(b) − Φ(a) included)."""
    y, a, b = (x - loc) / scale, (low - loc) / scale, (high - loc) / scale
    mass = ndtr(b) - ndtr(a)
    pa, pb = norm.pdf(a), norm.pdf(b)
    d_loc = y / scale + (pb - pa) / (mass * scale)
    d_scale = (y**2 - 1) / scale + (pb * b - pa * a) / (mass * scale)
    return d_loc, d_scale


def _wrapped_norm_grad(
    x: np.ndarray, loc: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """∂/∂loc and ∂/∂scale of ``_wrapped_norm_logpdf``: the images' responsibilities times the
    derivatives of each normal term."""
    k = np.arange(-_WRAPS, _WRAPS + 1)
    y = (x[..., None] + 2 * np.pi * k - loc[..., None]) / scale[..., None]
    terms = norm.logpdf(y) - np.log(scale[..., None])
    resp = np.exp(terms - logsumexp(terms, axis=-1, keepdims=True))
    return (resp * y).sum(-1) / scale, (resp * (y**2 - 1)).sum(-1) / scale


class SphericalGaussian(Simulator):
    """Gaussian-like distribution of hyperspherical angles on the unit n-sphere in Rⁿ⁺¹.

    Angles: polar φ₁…φₙ₋₁ ~ N(π/2, (π/4)²) truncated to [0, π]; azimuth φₙ ~ wrapped
    N(π/2, (π/4)²) on the chart (-π/2, 3π/2]. With ``epsilon > 0`` the point is scaled by a
    radius r ~ N(1, ε²) truncated to r > 0 (radial noise, the paper uses ε = 0.01).

    Unconditional: ``param_dim = 0``, ``prior = None``; θ has shape (n, 0).

    Args:
        n: dimension of the sphere (manifold dimension d); the data dimension is D = n + 1.
        epsilon: standard deviation of the radial noise; 0 puts every point on the sphere.

    Example:
        >>> sim = SphericalGaussian(n=2)
        >>> theta, x = sim.simulate(4, rng=0)
        >>> theta.shape, x.shape
        ((4, 0), (4, 3))
        >>> bool(np.allclose(sim.distance_to_manifold(x), 0.0))
        True
    """

    param_dim = 0
    prior = None
    #: mean and standard deviation of every angle (the paper's values).
    loc, scale = 0.5 * np.pi, 0.25 * np.pi

    def __init__(self, n: int = 2, epsilon: float = 0.0) -> None:
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n: expected an integer >= 1, got {n!r}")
        if not np.isfinite(epsilon) or epsilon < 0:
            raise ValueError(f"epsilon: expected a finite number >= 0, got {epsilon!r}")
        self.manifold_dim, self.data_dim = int(n), int(n) + 1
        self.epsilon = float(epsilon)

    # -- parameters ---------------------------------------------------------------------------

    def _check_theta(self, theta: Any, n: int | None = None) -> np.ndarray:
        """θ as an (m, p) array; for p = 0, ``None`` means "no θ" and needs ``n``."""
        if self.param_dim > 0:
            return check_theta(theta, self.prior, n)
        if theta is None:
            if n is None:
                raise ValueError(
                    "theta: expected shape (n, 0) to set the number of samples, got None"
                )
            return np.zeros((n, 0))
        theta = np.asarray(theta, dtype=float)
        if theta.shape == (0,):
            theta = theta.reshape(1, 0)
        if theta.ndim != 2 or theta.shape[1] != 0:
            raise ValueError(
                f"theta: {type(self).__name__} is unconditional, expected shape (n, 0) or None, "
                f"got {theta.shape}"
            )
        if n is not None and len(theta) not in (1, n):
            raise ValueError(f"theta: expected 1 or {n} rows to match x, got {len(theta)}")
        return np.zeros((n if n is not None else len(theta), 0))

    def angle_params(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Means and standard deviations of the angles, (m, p) -> ((m, n), (m, n))."""
        shape = (len(theta), self.manifold_dim)
        return np.full(shape, self.loc), np.full(shape, self.scale)

    def angle_params_grad(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """∂(means)/∂θ and ∂(standard deviations)/∂θ, (m, p) -> ((m, n, p), (m, n, p))."""
        zeros = np.zeros((len(theta), self.manifold_dim, self.param_dim))
        return zeros, zeros.copy()

    # -- simulation ---------------------------------------------------------------------------

    def _sample_angles(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Angles z (m, n) of one point per validated θ row."""
        loc, scale = self.angle_params(theta)
        z = np.empty_like(loc)
        if self.manifold_dim > 1:
            mu, sd = loc[:, :-1], scale[:, :-1]
            z[:, :-1] = truncnorm.rvs(
                -mu / sd, (np.pi - mu) / sd, loc=mu, scale=sd, random_state=rng
            )
        azimuth = rng.normal(loc[:, -1], scale[:, -1])
        z[:, -1] = AZIMUTH_HIGH - np.mod(AZIMUTH_HIGH - azimuth, 2 * np.pi)
        return z

    def _place(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The points (m, n + 1) with angles z, scaled by the radial noise when ε > 0."""
        x = self.embed(z)
        if self.epsilon > 0:
            r = truncnorm.rvs(
                -1 / self.epsilon,
                np.inf,
                loc=1.0,
                scale=self.epsilon,
                size=len(x),
                random_state=rng,
            )
            x = x * r[:, None]
        return x

    def sample(
        self, theta: np.ndarray | None, rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """Simulate one point per θ row, (m, p) -> (m, n + 1); for unconditional spheres θ is (m, 0)."""
        rng = np.random.default_rng(rng)
        theta = self._check_theta(theta)
        return self._place(self._sample_angles(theta, rng), rng)

    def sample_with_score(
        self, theta: np.ndarray | None, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Points (m, n + 1) as ``sample`` draws them and their score ∇θ log p(x|θ) (m, p).

        The angles are functions of x and the radius does not depend on θ, so the joint score is
        the score of the likelihood (the azimuth's wrapping is summed over exactly, as in the
        density). (m, 0) for the unconditional spheres.
        """
        rng = np.random.default_rng(rng)
        theta = self._check_theta(theta)
        z = self._sample_angles(theta, rng)
        return self._place(z, rng), self.score(z, theta)

    def score(self, z: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
        """∇θ log p(z|θ) of the angles, (m, n), (m, p) -> (m, p): the derivatives of the angle
        densities with respect to their means and widths, chained with ``angle_params_grad``."""
        z = check_x(z, self.manifold_dim, "z")
        theta = self._check_theta(theta, len(z))
        loc, scale = self.angle_params(theta)
        d_loc, d_scale = np.empty_like(loc), np.empty_like(loc)
        d_loc[:, -1], d_scale[:, -1] = _wrapped_norm_grad(z[:, -1], loc[:, -1], scale[:, -1])
        if self.manifold_dim > 1:
            d_loc[:, :-1], d_scale[:, :-1] = _truncnorm_grad(
                z[:, :-1], loc[:, :-1], scale[:, :-1], 0.0, np.pi
            )
        j_loc, j_scale = self.angle_params_grad(theta)
        return np.einsum("ma,map->mp", d_loc, j_loc) + np.einsum("ma,map->mp", d_scale, j_scale)

    def simulate(
        self, n: int, rng: np.random.Generator | int | None = None, score: bool = False
    ) -> tuple[np.ndarray, ...]:
        """Draw θ ~ prior and x ~ p(x|θ), (theta (n, p), x (n, D)); θ is (n, 0) when unconditional.
        ``score=True`` adds the joint score (n, p) (see ``sample_with_score``)."""
        if self.param_dim > 0:
            return super().simulate(n, rng, score=score)
        theta = np.zeros((n, 0))
        if score:
            return (theta, *self.sample_with_score(theta, rng))
        return theta, self.sample(theta, rng)

    # -- densities ----------------------------------------------------------------------------

    def chart_log_prob(self, z: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
        """log density of the angles w.r.t. dφ₁⋯dφₙ, (m, n) -> (m,); -inf for polar angles
        outside [0, π] (the azimuth density is 2π-periodic)."""
        z = check_x(z, self.manifold_dim, "z")
        loc, scale = self.angle_params(self._check_theta(theta, len(z)))
        out = _wrapped_norm_logpdf(z[:, -1], loc[:, -1], scale[:, -1])
        if self.manifold_dim > 1:
            out = out + _truncnorm_logpdf(z[:, :-1], loc[:, :-1], scale[:, :-1], 0.0, np.pi).sum(1)
        return out

    def log_volume(self, z: np.ndarray) -> np.ndarray:
        """log √det(JᵀJ) of the embedding at angles z: Σᵢ (n-i) log sin φᵢ, (m, n) -> (m,)."""
        z = check_x(z, self.manifold_dim, "z")
        powers = np.arange(self.manifold_dim - 1, -1, -1)  # n-1, …, 1, 0
        with np.errstate(divide="ignore"):
            return (powers * np.log(np.abs(np.sin(z)))).sum(1)

    def log_likelihood(self, x: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
        """Exact log p(x|θ), (m, n + 1), (m, p) or (p,) -> (m,).

        ε = 0: log density w.r.t. the surface measure of the unit sphere,
        log p(φ) - log √det(JᵀJ), evaluated at the radial projection x/|x| (so points a rounding
        error off the sphere are fine). It diverges like 1/sin φ₁ at the poles x = ±e₁, where the
        polar-angle density stays positive.

        ε > 0: log density w.r.t. Lebesgue measure on Rⁿ⁺¹,
        log p_sphere(x/r) + log N(r; 1, ε²)/Φ(1/ε) - n log r with r = |x|
        (dx = rⁿ dr dA in polar coordinates).

        Raises:
            ValueError: bad shapes, NaN, θ outside the prior, or x = 0 (no direction).
        """
        x = check_x(x, self.data_dim)
        theta = self._check_theta(theta, len(x))
        r = np.linalg.norm(x, axis=1)
        if np.any(r == 0):
            raise ValueError(
                f"x: row {np.flatnonzero(r == 0)[0]} is the origin, which has no direction"
            )
        z = self.chart(x)  # the angles do not depend on |x|
        # The original code *added* the volume term; the density w.r.t. surface measure divides
        # by √det(JᵀJ), so it is subtracted here.
        out = self.chart_log_prob(z, theta) - self.log_volume(z)
        if self.epsilon > 0:
            eps = self.epsilon
            out = out + truncnorm.logpdf(r, -1 / eps, np.inf, loc=1.0, scale=eps)
            out = out - self.manifold_dim * np.log(r)
        return out

    # -- geometry -----------------------------------------------------------------------------

    def distance_to_manifold(self, x: np.ndarray) -> np.ndarray:
        """Euclidean distance to the unit sphere, | |x| - 1 |, (m, n + 1) -> (m,)."""
        return np.abs(np.linalg.norm(check_x(x, self.data_dim), axis=1) - 1.0)

    @numpy_or_torch
    def chart(self, x: torch.Tensor) -> torch.Tensor:
        """Hyperspherical angles of x (of x/|x| off the sphere), (*, n + 1) -> (*, n).

        Polar angles in [0, π], azimuth in (-π/2, 3π/2].
        """
        x = check_last_dim(x, self.data_dim, "x")
        n = self.manifold_dim
        tail = x.flip(-1).square().cumsum(-1).flip(-1)  # tail[..., i] = Σ_{j ≥ i} x_j²
        polar = torch.atan2(tail[..., 1:n].sqrt(), x[..., : n - 1])
        azimuth = torch.atan2(x[..., n], x[..., n - 1])
        azimuth = torch.where(azimuth <= AZIMUTH_HIGH - 2 * np.pi, azimuth + 2 * np.pi, azimuth)
        return torch.cat([polar, azimuth[..., None]], dim=-1)

    @numpy_or_torch
    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """Point on the unit sphere with hyperspherical angles z, (*, n) -> (*, n + 1)."""
        z = check_last_dim(z, self.manifold_dim, "z")
        ones = torch.ones_like(z[..., :1])
        sin_prod = torch.cat([ones, torch.cumprod(torch.sin(z), dim=-1)], dim=-1)
        return sin_prod * torch.cat([torch.cos(z), ones], dim=-1)


class Circle(SphericalGaussian):
    """The unit circle in R² (n = 1): φ ~ wrapped N(π/2, (π/4)²) on the chart (-π/2, 3π/2].

    The embedding φ ↦ (cos φ, sin φ) has unit speed, so ``log_likelihood`` on the circle is
    exactly the wrapped-normal log density of φ (w.r.t. arc length).

    Args:
        epsilon: standard deviation of the radial noise; 0 puts every point on the circle.
    """

    def __init__(self, epsilon: float = 0.0) -> None:
        super().__init__(n=1, epsilon=epsilon)


class ConditionalSphere(SphericalGaussian):
    """Gaussian on the 2-sphere in R³ whose widths and phase depend on θ ∈ [-1, 1]².

    - polar φ₁ ~ N(π/2, σ₁²) truncated to [0, π], σ₁ = (π/4)(1 + θ₀/2) ∈ [π/8, 3π/8];
    - azimuth φ₂ ~ wrapped N(μ₂, σ₂²), σ₂ = (π/4)(1 - θ₀/2) ∈ [π/8, 3π/8] and phase
      μ₂ = π/2 + (π/2)θ₁ ∈ [0, π].

    θ₀ trades width between latitude and longitude (±50 % around the sphere's π/4), θ₁ rotates
    the blob about the x₁ axis. Prior: ``BoxUniform((-1, -1), (1, 1))``.

    Args:
        epsilon: standard deviation of the radial noise; 0 puts every point on the sphere.
    """

    param_dim = 2
    prior = BoxUniform((-1.0, -1.0), (1.0, 1.0))

    def __init__(self, epsilon: float = 0.0) -> None:
        super().__init__(n=2, epsilon=epsilon)

    def angle_params(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Means and standard deviations of (φ₁, φ₂), (m, 2) -> ((m, 2), (m, 2))."""
        width, phase = theta[:, 0], theta[:, 1]
        loc = np.stack([np.full(len(theta), 0.5 * np.pi), 0.5 * np.pi * (1.0 + phase)], axis=1)
        scale = 0.25 * np.pi * np.stack([1.0 + 0.5 * width, 1.0 - 0.5 * width], axis=1)
        return loc, scale

    def angle_params_grad(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Constant: ∂μ₂/∂θ₁ = π/2, ∂σ₁/∂θ₀ = π/8, ∂σ₂/∂θ₀ = −π/8; ((m, 2, 2), (m, 2, 2))."""
        d_loc, d_scale = np.zeros((len(theta), 2, 2)), np.zeros((len(theta), 2, 2))
        d_loc[:, 1, 1] = 0.5 * np.pi
        d_scale[:, 0, 0], d_scale[:, 1, 0] = 0.125 * np.pi, -0.125 * np.pi
        return d_loc, d_scale
