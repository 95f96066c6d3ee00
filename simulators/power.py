"""The paper's "power" toy: a two-component Gaussian mixture on a polynomial surface in R³.

Latent z ∈ R² is drawn from 0.6 N((1, -1), 2² I) + 0.4 N((-1, 1), s² I) with
s = 0.2 + 0.8 (0.5 + 0.5 θ), θ ∈ [-1, 1]; it is mapped onto the surface

    x = R (z₁, z₂, h(z)),   h(z) = P(z) exp(-0.1 |z|²),

with P a fixed degree-5 polynomial and R a fixed rotation (orthogonal, det +1). The chart is
z = first two coordinates of Rᵀx, and the volume element is √det(JᵀJ) = √(1 + |∇h|²).

The constants live in ``simulators/data/power.json``; they were drawn once by
``_generate_power_constants(seed=POWER_SEED)`` (regenerate with ``python -m simulators.power``).
Coefficients of the degree-k monomials are N(0, k⁻⁶) (the original code's ``power_decay=3``;
the constant term is N(0, 1)), which keeps |h| ≲ 3 where the data lie.

Reference: Brehmer & Cranmer, arXiv:2003.13913, section "Experiments".
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfinfer.priors import BoxUniform
from simulators.base import Simulator, check_last_dim, check_theta, check_x, numpy_or_torch

__all__ = ["POWER_SEED", "PowerSimulator"]

#: Seed of ``numpy.random.default_rng`` that drew the constants in ``data/power.json``.
POWER_SEED = 2003
DEGREE = 5
#: Coefficient std of the degree-k monomials is k ** -COEFF_DECAY (k ≥ 1).
COEFF_DECAY = 3.0
#: Gaussian suppression of the surface height, h = P(z) exp(-SUPPRESSION |z|²).
SUPPRESSION = 0.1


def _generate_power_constants(seed: int = POWER_SEED) -> dict:
    """Draw the polynomial coefficients and the rotation (the content of ``data/power.json``).

    Returns:
        ``{"seed", "degree", "coeff_decay", "coefficients", "rotation"}``, where
        ``coefficients[i][j]`` multiplies z₁ⁱ z₂ʲ ((DEGREE + 1) × (DEGREE + 1), zero for
        i + j > DEGREE) and ``rotation`` is 3 × 3 with RᵀR = I and det R = +1.
    """
    rng = np.random.default_rng(seed)
    coeffs = np.zeros((DEGREE + 1, DEGREE + 1))
    for k in range(DEGREE + 1):  # graded order: 1; z₁, z₂; z₁², z₁z₂, z₂²; …
        std = 1.0 if k == 0 else float(k) ** -COEFF_DECAY
        for j in range(k + 1):
            coeffs[k - j, j] = std * rng.normal()
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.diag(r))  # Haar-distributed orthogonal matrix
    if np.linalg.det(rot) < 0:
        rot[:, 0] = -rot[:, 0]
    return {
        "description": "power toy constants: coefficients[i][j] multiplies z1^i z2^j; x = R (z1, z2, h(z))",
        "seed": seed,
        "degree": DEGREE,
        "coeff_decay": COEFF_DECAY,
        "coefficients": coeffs.tolist(),
        "rotation": rot.tolist(),
    }


def _write_power_constants(path: str | Path, seed: int = POWER_SEED) -> None:
    """Write ``_generate_power_constants(seed)`` as JSON to ``path``."""
    Path(path).write_text(json.dumps(_generate_power_constants(seed), indent=1) + "\n")


@functools.lru_cache(maxsize=1)
def _load_power_constants() -> tuple[np.ndarray, np.ndarray]:
    """(coefficients (6, 6), rotation (3, 3)) from the package data."""
    text = resources.files("simulators").joinpath("data/power.json").read_text()
    data = json.loads(text)
    return np.array(data["coefficients"], dtype=float), np.array(data["rotation"], dtype=float)


def _polyval2d(coeffs: np.ndarray, z1: Any, z2: Any) -> Any:
    """Σᵢⱼ cᵢⱼ z₁ⁱ z₂ʲ by Horner's rule; numpy or torch (autograd- and jvp-safe)."""
    out = 0.0
    for row in coeffs[::-1]:
        inner = 0.0
        for c in row[::-1]:
            inner = inner * z2 + float(c)
        out = out * z1 + inner
    return out


class PowerSimulator(Simulator):
    """Gaussian mixture on a fixed polynomial surface in R³ (D = 3, d = 2, one θ ∈ [-1, 1]).

    θ sets the width s = 0.2 + 0.8 (0.5 + 0.5 θ) ∈ [0.2, 1] of the second (weight 0.4)
    component. Prior: ``BoxUniform((-1,), (1,))``.

    Example:
        >>> sim = PowerSimulator()
        >>> theta, x = sim.simulate(3, rng=0)
        >>> x.shape, sim.log_likelihood(x, theta).shape
        ((3, 3), (3,))
    """

    param_dim = 1
    data_dim = 3
    manifold_dim = 2
    param_names = ("theta",)
    prior = BoxUniform((-1.0,), (1.0,))
    weights = (0.6, 0.4)
    means = ((1.0, -1.0), (-1.0, 1.0))
    fixed_width, min_width, max_width = 2.0, 0.2, 1.0

    def __init__(self) -> None:
        self.coefficients, self.rotation = _load_power_constants()
        c = self.coefficients
        der = np.polynomial.polynomial.polyder
        # ∂P/∂z₁, ∂P/∂z₂ and the second derivatives, as coefficient arrays.
        self._dc = {
            "1": der(c, axis=0),
            "2": der(c, axis=1),
            "11": der(c, 2, axis=0),
            "12": der(der(c, axis=0), axis=1),
            "22": der(c, 2, axis=1),
        }

    # -- surface ------------------------------------------------------------------------------

    def width(self, theta: np.ndarray) -> np.ndarray:
        """Width s of the θ-dependent component, (m, 1) -> (m,)."""
        return self.min_width + (self.max_width - self.min_width) * (0.5 + 0.5 * theta[:, 0])

    def height(self, z: np.ndarray, derivatives: int = 0) -> tuple[np.ndarray, ...]:
        """Surface height h(z) and, on request, its gradient and Hessian (analytic).

        Args:
            z: latent points, (m, 2).
            derivatives: 0, 1 or 2.

        Returns:
            ``(h,)``, ``(h, grad)`` or ``(h, grad, hess)`` with shapes (m,), (m, 2), (m, 2, 2).
        """
        z1, z2 = z[:, 0], z[:, 1]
        e = np.exp(-SUPPRESSION * (z1**2 + z2**2))
        p = _polyval2d(self.coefficients, z1, z2)
        if derivatives == 0:
            return (p * e,)
        dp = np.stack([_polyval2d(self._dc[k], z1, z2) for k in ("1", "2")], axis=1)
        a = 2 * SUPPRESSION
        grad = (dp - a * z * p[:, None]) * e[:, None]  # ∂ᵢh = (∂ᵢP - 2a zᵢ P) e
        if derivatives == 1:
            return p * e, grad
        p11, p12, p22 = (_polyval2d(self._dc[k], z1, z2) for k in ("11", "12", "22"))
        d2p = np.stack([np.stack([p11, p12], -1), np.stack([p12, p22], -1)], -2)
        zz = z[:, :, None] * z[:, None, :]
        zdp = z[:, :, None] * dp[:, None, :]
        hess = (
            d2p
            - a * (zdp + zdp.transpose(0, 2, 1))
            - a * p[:, None, None] * np.eye(2)
            + a**2 * p[:, None, None] * zz
        )
        return p * e, grad, hess * e[:, None, None]

    # -- simulation ---------------------------------------------------------------------------

    def _sample_latent(self, theta: np.ndarray, rng: np.random.Generator | int | None) -> np.ndarray:
        """Chart points z (m, 2) of one event per validated θ row."""
        rng = np.random.default_rng(rng)
        m = len(theta)
        second = rng.random(m) < self.weights[1]
        mean = np.where(second[:, None], self.means[1], self.means[0])
        std = np.where(second, self.width(theta), self.fixed_width)
        return mean + std[:, None] * rng.normal(size=(m, 2))

    def sample(self, theta: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Simulate one event per θ row, (m, 1) or (1,) -> (m, 3)."""
        theta = check_theta(theta, self.prior)
        return self.embed(self._sample_latent(theta, rng))

    def sample_with_score(
        self, theta: np.ndarray, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Events (m, 3) as ``sample`` draws them and their score ∇θ log p(x|θ) (m, 1).

        x determines the chart point z, and the mixture label is summed over exactly, so the joint
        score is the score of the likelihood itself: only the θ-dependent component contributes,
        with its responsibility r = p(second | z, θ):
        ∂θ log p = r (|z − μ₂|² / s³ − 2 / s) ds/dθ, ds/dθ = (max_width − min_width) / 2.
        """
        theta = check_theta(theta, self.prior)
        z = self._sample_latent(theta, rng)
        return self.embed(z), self.score(z, theta)

    def score(self, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """∇θ log p(z|θ) of chart points, (m, 2), (m, 1) or (1,) -> (m, 1)."""
        z = check_x(z, self.manifold_dim, "z")
        theta = check_theta(theta, self.prior, len(z))
        s = self.width(theta)
        sq = np.sum((z - np.asarray(self.means[1])) ** 2, axis=1)
        log_second = np.log(self.weights[1]) - 0.5 * sq / s**2 - 2 * np.log(s) - np.log(2 * np.pi)
        resp = np.exp(log_second - self.chart_log_prob(z, theta))
        ds = 0.5 * (self.max_width - self.min_width)
        return (resp * (sq / s**3 - 2 / s) * ds)[:, None]

    # -- densities ----------------------------------------------------------------------------

    def chart_log_prob(self, z: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """log p(z|θ) of the latent mixture w.r.t. dz₁dz₂, (m, 2), (m, 1) or (1,) -> (m,)."""
        z = check_x(z, self.manifold_dim, "z")
        theta = check_theta(theta, self.prior, len(z))
        out = []
        widths = (self.fixed_width, self.width(theta))
        for w, mean, std in zip(self.weights, self.means, widths, strict=False):
            sq = np.sum((z - np.asarray(mean)) ** 2, axis=1)
            out.append(np.log(w) - 0.5 * sq / std**2 - 2 * np.log(std) - np.log(2 * np.pi))
        return np.logaddexp(*out)

    def log_volume(self, z: np.ndarray) -> np.ndarray:
        """log √det(JᵀJ) = ½ log(1 + |∇h|²) of the embedding z -> x, (m, 2) -> (m,)."""
        z = check_x(z, self.manifold_dim, "z")
        _, grad = self.height(z, derivatives=1)
        return 0.5 * np.log1p(np.sum(grad**2, axis=1))

    def log_likelihood(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Exact log density w.r.t. the surface's area measure, log p(z|θ) - ½ log(1 + |∇h(z)|²)
        with z = chart(x), (m, 3), (m, 1) or (1,) -> (m,).

        Off-surface x are evaluated at their chart point (the surface point above/below x along
        the rotated third axis); use ``distance_to_manifold`` to see how far off they are. Far
        out (|z| ≳ 1e77, where the polynomial overflows) ∇h is taken as its limit 0, so the
        result is a very negative number or -inf, never NaN.

        Raises:
            ValueError: bad shapes, NaN, or θ outside [-1, 1].
        """
        x = check_x(x, self.data_dim)
        theta = check_theta(theta, self.prior, len(x))
        z = self.chart(x)
        with np.errstate(over="ignore", invalid="ignore"):
            volume = self.log_volume(z)
        # h and ∇h decay like exp(-SUPPRESSION |z|²): an overflow (inf * 0) means ∇h ≈ 0 there
        return self.chart_log_prob(z, theta) - np.where(np.isfinite(volume), volume, 0.0)

    # -- geometry -----------------------------------------------------------------------------

    @numpy_or_torch
    def chart(self, x: torch.Tensor) -> torch.Tensor:
        """z = first two coordinates of Rᵀx, (*, 3) -> (*, 2)."""
        x = check_last_dim(x, self.data_dim, "x")
        rot = torch.as_tensor(self.rotation, dtype=x.dtype, device=x.device)
        return (x @ rot)[..., :2]

    @numpy_or_torch
    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """Surface point x = R (z₁, z₂, h(z)), (*, 2) -> (*, 3)."""
        z = check_last_dim(z, self.manifold_dim, "z")
        z1, z2 = z[..., 0], z[..., 1]
        h = _polyval2d(self.coefficients, z1, z2) * torch.exp(-SUPPRESSION * (z1**2 + z2**2))
        rot = torch.as_tensor(self.rotation, dtype=z.dtype, device=z.device)
        return torch.stack([z1, z2, h], dim=-1) @ rot.T

    def distance_to_manifold(self, x: np.ndarray, iterations: int = 50) -> np.ndarray:
        """Euclidean distance from x to the surface, (m, 3) -> (m,).

        Minimizes |embed(z) - x|² over z by damped Newton steps (Gauss-Newton where the
        Hessian is not positive definite, step halving until the distance decreases), started
        at the chart point z = (Rᵀx)₁,₂. The result never exceeds the vertical offset
        |(Rᵀx)₃ - h(z)| and equals the true distance whenever the nearest surface point is the
        one reached from the chart point, e.g. for x closer to the surface than its radius of
        curvature.

        Args:
            x: events, (m, 3).
            iterations: maximum number of Newton steps.
        """
        w = check_x(x, self.data_dim) @ self.rotation  # Rᵀx, row-wise
        target, height = w[:, :2], w[:, 2]

        def objective(z: np.ndarray) -> np.ndarray:
            return np.sum((z - target) ** 2, axis=1) + (self.height(z)[0] - height) ** 2

        z = target.copy()
        f = objective(z)
        for _ in range(iterations):
            h, grad, hess = self.height(z, derivatives=2)
            res = h - height
            g = (z - target) + res[:, None] * grad  # ½ ∇f
            gauss_newton = np.eye(2) + grad[:, :, None] * grad[:, None, :]
            newton = gauss_newton + res[:, None, None] * hess
            pos_def = (newton[:, 0, 0] > 0) & (np.linalg.det(newton) > 0)
            step = -np.linalg.solve(
                np.where(pos_def[:, None, None], newton, gauss_newton), g[..., None]
            )[..., 0]
            t, done = np.ones(len(z)), np.zeros(len(z), dtype=bool)
            for _ in range(40):  # backtracking, row by row
                cand = z + t[:, None] * step
                f_cand = objective(cand)
                ok = ~done & (f_cand <= f)
                z[ok], f[ok], done = cand[ok], f_cand[ok], done | ok
                if done.all():
                    break
                t = np.where(done, t, 0.5 * t)
            if np.max(np.abs(step)) < 1e-12:
                break
        return np.sqrt(f)


if __name__ == "__main__":  # regenerate the package data
    _write_power_constants(Path(__file__).parent / "data" / "power.json")
