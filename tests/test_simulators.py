"""Toy simulators: exact densities integrate to 1, samples follow them, charts round-trip."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import torch
from scipy import stats

from mfinfer import get_simulator
from simulators.power import POWER_SEED, PowerSimulator, _generate_power_constants
from simulators.sphere import AZIMUTH_HIGH, Circle, ConditionalSphere, SphericalGaussian

# torch.func.jvp scripts a helper on first use, which warns on recent torch (not our code).
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

LOW = AZIMUTH_HIGH - 2 * np.pi  # azimuth chart (LOW, AZIMUTH_HIGH]


# -- helpers ---------------------------------------------------------------------------------


def autograd_log_volume(embed, z: np.ndarray) -> np.ndarray:
    """log √det(JᵀJ) of ``embed`` at z from a reverse-mode Jacobian, independent of the
    simulators' closed forms; (m, d) -> (m,)."""
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    x = embed(zt)
    jac = torch.stack(
        [torch.autograd.grad(x[:, k].sum(), zt, retain_graph=True)[0] for k in range(x.shape[1])],
        dim=1,
    )  # (m, D, d)
    return 0.5 * torch.logdet(jac.mT @ jac).detach().numpy()


def midpoint_grid(bounds: list[tuple[float, float]], sizes: list[int]) -> tuple[np.ndarray, float]:
    """Cell midpoints of a box, (prod(sizes), d), and the cell volume."""
    axes = [lo + (hi - lo) * (np.arange(k) + 0.5) / k for (lo, hi), k in zip(bounds, sizes, strict=False)]
    cell = float(np.prod([(hi - lo) / k for (lo, hi), k in zip(bounds, sizes, strict=False)]))
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(bounds)), cell


def surface_integral(sim, z_bounds, sizes, theta) -> float:
    """∫ exp(log_likelihood) dA over the manifold, via the chart and the autograd volume element."""
    z, cell = midpoint_grid(z_bounds, sizes)
    x = sim.embed(z)
    log_p = sim.log_likelihood(x, theta)
    return float(np.sum(np.exp(log_p + autograd_log_volume(sim.embed, z))) * cell)


def sphere_bounds(n: int) -> list[tuple[float, float]]:
    return [(0.0, np.pi)] * (n - 1) + [(LOW, AZIMUTH_HIGH)]


def wrapped_norm_cdf(phi, loc, scale):
    """CDF of the wrapped normal on (LOW, LOW + 2π]."""
    k = np.arange(-6, 7)[:, None] * 2 * np.pi
    return np.sum(stats.norm.cdf(phi + k, loc, scale) - stats.norm.cdf(LOW + k, loc, scale), axis=0)


def truncnorm_cdf(phi, loc, scale):
    return stats.truncnorm.cdf(phi, -loc / scale, (np.pi - loc) / scale, loc=loc, scale=scale)


# -- densities integrate to one --------------------------------------------------------------


@pytest.mark.parametrize(
    "sim, theta, sizes",
    [
        (Circle(), None, [4000]),
        (SphericalGaussian(n=2), None, [300, 600]),
        (SphericalGaussian(n=3), None, [48, 48, 96]),
        (ConditionalSphere(), np.array([-1.0, 1.0]), [300, 600]),
        (ConditionalSphere(), np.array([0.7, -0.4]), [300, 600]),
    ],
    ids=["circle", "sphere2", "sphere3", "cond-sphere-a", "cond-sphere-b"],
)
def test_sphere_density_integrates_to_one(sim, theta, sizes):
    theta = np.zeros(0) if theta is None else theta
    total = surface_integral(sim, sphere_bounds(sim.manifold_dim), sizes, theta)
    assert total == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("theta", [-1.0, 0.0, 1.0])
def test_power_density_integrates_to_one(theta):
    sim = PowerSimulator()
    total = surface_integral(sim, [(-9.0, 11.0), (-11.0, 9.0)], [400, 400], np.array([theta]))
    assert total == pytest.approx(1.0, abs=1e-3)


def test_circle_with_radial_noise_integrates_to_one_on_cartesian_grid():
    """Checks the ambient density (including the 1/r factor) without polar coordinates."""
    sim = Circle(epsilon=0.05)
    x, cell = midpoint_grid([(-1.4, 1.4), (-1.4, 1.4)], [350, 350])
    x = x[np.linalg.norm(x, axis=1) > 0.5]  # the radial density is < 1e-20 inside
    assert np.sum(np.exp(sim.log_likelihood(x))) * cell == pytest.approx(1.0, abs=1e-3)


def test_sphere_with_radial_noise_integrates_to_one():
    sim = SphericalGaussian(n=2, epsilon=0.1)
    z, cell = midpoint_grid([(0.5, 1.5), *sphere_bounds(2)], [40, 100, 200])
    r, angles = z[:, 0], z[:, 1:]
    x = r[:, None] * sim.embed(angles)
    log_dx = 2 * np.log(r) + autograd_log_volume(sim.embed, angles)  # dx = r² dr dA
    assert np.sum(np.exp(sim.log_likelihood(x) + log_dx)) * cell == pytest.approx(1.0, abs=1e-3)


def test_log_volume_matches_autograd():
    rng = np.random.default_rng(0)
    for sim in (SphericalGaussian(n=1), SphericalGaussian(n=2), SphericalGaussian(n=4)):
        n = sim.manifold_dim
        z = np.concatenate(
            [rng.uniform(0.1, 3.0, (50, n - 1)), rng.uniform(LOW, AZIMUTH_HIGH, (50, 1))], 1
        )
        np.testing.assert_allclose(sim.log_volume(z), autograd_log_volume(sim.embed, z), atol=1e-10)
    sim = PowerSimulator()
    z = rng.normal(0, 3, (50, 2))
    np.testing.assert_allclose(sim.log_volume(z), autograd_log_volume(sim.embed, z), atol=1e-10)


def test_power_height_derivatives_match_autograd():
    sim = PowerSimulator()
    z = torch.tensor(np.random.default_rng(1).normal(0, 2, (20, 2)), requires_grad=True)
    h = (sim.embed(z) @ torch.tensor(sim.rotation))[:, 2]
    grad = torch.autograd.grad(h.sum(), z, create_graph=True)[0]
    hess = torch.stack(
        [torch.autograd.grad(grad[:, i].sum(), z, retain_graph=True)[0] for i in range(2)], 1
    )
    h_np, grad_np, hess_np = sim.height(z.detach().numpy(), derivatives=2)
    np.testing.assert_allclose(h_np, h.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(grad_np, grad.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(hess_np, hess.numpy(), atol=1e-10)


# -- samples follow the likelihood -----------------------------------------------------------

N_KS = 20_000


def test_circle_samples_match_wrapped_normal():
    sim = Circle()
    _, x = sim.simulate(N_KS, rng=1)
    phi = sim.chart(x)[:, 0]
    assert stats.kstest(phi, lambda p: wrapped_norm_cdf(p, np.pi / 2, np.pi / 4)).pvalue > 0.01


def test_circle_log_likelihood_is_the_normal_density_away_from_the_tails():
    sim = Circle()
    phi = np.linspace(np.pi / 2 - 1.5, np.pi / 2 + 1.5, 101)
    expected = stats.norm.logpdf(phi, np.pi / 2, np.pi / 4)
    np.testing.assert_allclose(sim.log_likelihood(sim.embed(phi[:, None])), expected, atol=1e-6)


@pytest.mark.parametrize(
    "sim, theta", [(SphericalGaussian(n=2), None), (ConditionalSphere(), np.array([0.8, -0.6]))]
)
def test_sphere_samples_match_angle_marginals(sim, theta):
    theta = np.zeros((N_KS, 0)) if theta is None else np.repeat(theta[None], N_KS, 0)
    phi = sim.chart(sim.sample(theta, rng=2))
    loc, scale = sim.angle_params(theta[:1])
    assert stats.kstest(phi[:, 0], lambda p: truncnorm_cdf(p, loc[0, 0], scale[0, 0])).pvalue > 0.01
    assert (
        stats.kstest(phi[:, 1], lambda p: wrapped_norm_cdf(p, loc[0, 1], scale[0, 1])).pvalue > 0.01
    )


def test_radial_noise_samples():
    eps = 0.2
    sim = SphericalGaussian(n=3, epsilon=eps)
    _, x = sim.simulate(N_KS, rng=3)
    r = np.linalg.norm(x, axis=1)
    assert stats.kstest(r, stats.truncnorm(-1 / eps, np.inf, loc=1, scale=eps).cdf).pvalue > 0.01


@pytest.mark.parametrize("theta", [-0.5, 0.3])
def test_power_samples_match_latent_marginals(theta):
    sim = PowerSimulator()
    z = sim.chart(sim.sample(np.full((N_KS, 1), theta), rng=4))
    s = sim.width(np.array([[theta]]))[0]
    for i in range(2):

        def cdf(v, i=i):
            return 0.6 * stats.norm.cdf(v, sim.means[0][i], 2.0) + 0.4 * stats.norm.cdf(
                v, sim.means[1][i], s
            )

        assert stats.kstest(z[:, i], cdf).pvalue > 0.01


def test_volume_term_is_subtracted_not_added():
    """The original code added log √det(JᵀJ). Two checks that fail with that sign:
    (1) the density integrates to 1 only with the minus sign; (2) the fraction of samples in a
    small spherical cap (pure Cartesian geometry) matches density × cap area."""
    sim = SphericalGaussian(n=2)
    z, cell = midpoint_grid(sphere_bounds(2), [200, 400])
    vol = autograd_log_volume(sim.embed, z)
    right = sim.chart_log_prob(z) - sim.log_volume(z)
    wrong = sim.chart_log_prob(z) + sim.log_volume(z)
    assert np.sum(np.exp(right + vol)) * cell == pytest.approx(1.0, abs=1e-3)
    assert abs(np.sum(np.exp(wrong + vol)) * cell - 1.0) > 0.1

    n, a = 200_000, 0.1
    _, x = sim.simulate(n, rng=5)
    centre = sim.embed(np.array([[np.pi / 4, np.pi / 2]]))  # sin φ₁ = 0.71: the signs differ by 2x
    frac = np.mean(x @ centre[0] > np.cos(a))
    area = 2 * np.pi * (1 - np.cos(a))
    density = np.exp(sim.log_likelihood(centre))[0]
    assert frac / area == pytest.approx(density, rel=0.1)
    wrong_density = np.exp(
        sim.chart_log_prob(sim.chart(centre)) + sim.log_volume(sim.chart(centre))
    )[0]
    assert abs(frac / area / wrong_density - 1) > 0.3


# -- chart, embedding, geometry ----------------------------------------------------------------


def _chart_points(sim, rng, m=200):
    if isinstance(sim, PowerSimulator):
        return rng.normal(0, 3, (m, 2))
    n = sim.manifold_dim
    return np.concatenate(
        [
            rng.uniform(0.01, np.pi - 0.01, (m, n - 1)),
            rng.uniform(LOW + 1e-3, AZIMUTH_HIGH, (m, 1)),
        ],
        1,
    )


@pytest.mark.parametrize(
    "sim", [Circle(), SphericalGaussian(n=3), ConditionalSphere(), PowerSimulator()]
)
def test_chart_embed_round_trip_and_autograd(sim):
    rng = np.random.default_rng(6)
    z = _chart_points(sim, rng)
    x = sim.embed(z)
    assert isinstance(x, np.ndarray) and x.shape == (len(z), sim.data_dim)
    np.testing.assert_allclose(sim.chart(x), z, atol=1e-10)
    np.testing.assert_allclose(sim.distance_to_manifold(x), 0.0, atol=1e-10)

    zt = torch.tensor(z[:5], requires_grad=True)
    assert torch.autograd.gradcheck(sim.embed, (zt,))
    assert torch.autograd.gradcheck(sim.chart, (sim.embed(zt).detach().requires_grad_(),))
    _, tangent = torch.func.jvp(sim.embed, (zt.detach(),), (torch.ones_like(zt),))
    assert tangent.shape == (5, sim.data_dim)


def test_power_distance_to_manifold_along_the_normal():
    sim = PowerSimulator()
    rng = np.random.default_rng(7)
    z = rng.normal([1, -1], 2, (300, 2))
    _, grad = sim.height(z, derivatives=1)
    normal = np.concatenate([-grad, np.ones((300, 1))], 1)
    normal = (normal / np.linalg.norm(normal, axis=1, keepdims=True)) @ sim.rotation.T
    delta = rng.uniform(-0.3, 0.3, 300)
    x = sim.embed(z) + delta[:, None] * normal
    np.testing.assert_allclose(sim.distance_to_manifold(x), np.abs(delta), atol=1e-8)

    far = rng.normal(0, 4, (300, 3))
    w = far @ sim.rotation
    vertical = np.abs(w[:, 2] - sim.height(w[:, :2])[0])
    assert np.all(sim.distance_to_manifold(far) <= vertical + 1e-12)


def test_sphere_distance_to_manifold():
    sim = SphericalGaussian(n=2)
    x = np.array([[2.0, 0.0, 0.0], [0.0, 0.3, 0.4], [0.6, 0.8, 0.0]])
    np.testing.assert_allclose(sim.distance_to_manifold(x), [1.0, 0.5, 0.0], atol=1e-15)


def test_power_constants_are_the_seeded_ones():
    stored = json.loads(resources.files("simulators").joinpath("data/power.json").read_text())
    fresh = _generate_power_constants(POWER_SEED)
    assert stored["seed"] == POWER_SEED
    np.testing.assert_allclose(stored["coefficients"], fresh["coefficients"], rtol=1e-12)
    np.testing.assert_allclose(stored["rotation"], fresh["rotation"], rtol=1e-12)
    rot = PowerSimulator().rotation
    np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    coeffs = np.array(stored["coefficients"])
    assert np.all(coeffs[np.add.outer(np.arange(6), np.arange(6)) > 5] == 0)


@pytest.mark.parametrize("name", ["circle", "sphere", "conditional_sphere", "power"])
def test_registry_and_simulate_shapes(name):
    sim = get_simulator(name)
    theta, x = sim.simulate(7, rng=8)
    assert theta.shape == (7, sim.param_dim) and x.shape == (7, sim.data_dim)
    assert sim.log_likelihood(x, theta).shape == (7,)
    assert np.all(np.isfinite(sim.log_likelihood(x, theta)))
    _, x_again = sim.simulate(7, rng=8)
    np.testing.assert_array_equal(x, x_again)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sim", [ConditionalSphere(), PowerSimulator()])
def test_theta_outside_prior_raises(sim):
    theta = np.full((3, sim.param_dim), 0.5)
    theta[1, 0] = 1.5
    with pytest.raises(ValueError, match="outside the prior support"):
        sim.sample(theta)
    x = sim.simulate(3, rng=0)[1]
    with pytest.raises(ValueError, match="outside the prior support"):
        sim.log_likelihood(x, theta)
    with pytest.raises(ValueError, match=rf"expected shape \(n, {sim.param_dim}\)"):
        sim.sample(np.zeros((3, sim.param_dim + 1)))


@pytest.mark.parametrize(
    "sim", [Circle(), SphericalGaussian(n=2), ConditionalSphere(), PowerSimulator()]
)
def test_bad_x_raises(sim):
    theta = np.zeros(sim.param_dim)
    with pytest.raises(
        ValueError, match=rf"expected shape \(n, {sim.data_dim}\), got \(4, {sim.data_dim + 1}\)"
    ):
        sim.log_likelihood(np.ones((4, sim.data_dim + 1)), theta)
    x = np.ones((4, sim.data_dim))
    x[2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sim.log_likelihood(x, theta)
    with pytest.raises(ValueError, match="NaN"):
        sim.distance_to_manifold(x)
    with pytest.raises(ValueError, match=rf"expected shape \(\*, {sim.manifold_dim}\)"):
        sim.embed(torch.zeros(4, sim.manifold_dim + 1))


def test_nan_theta_and_unconditional_theta_raise():
    with pytest.raises(ValueError, match="outside the prior support"):
        PowerSimulator().sample(np.array([[np.nan]]))
    with pytest.raises(ValueError, match=r"unconditional, expected shape \(n, 0\)"):
        Circle().sample(np.zeros((3, 1)))
    with pytest.raises(ValueError, match="has no direction"):
        SphericalGaussian(n=2).log_likelihood(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        SphericalGaussian(n=0)
    with pytest.raises(ValueError, match="epsilon"):
        Circle(epsilon=-0.1)
