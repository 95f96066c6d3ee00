"""Lorenz-63 simulator: RK4 against DOP853, known long-run statistics, snippet dynamics, chaos over
the prior box, registry access and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from mfinfer import get_simulator
from mfinfer.errors import InputError
from simulators.lorenz import (
    CLASSIC,
    STEP,
    Lorenz,
    _on_attractor,
    integrate,
    largest_lyapunov,
    lorenz_rhs,
    rk4_step,
)

#: Long-run mean of z at the classic values: 23.545 ± 0.008 from 8 runs of 1000 time units with
#: this integrator (the literature quotes ≈ 23.5).
MEAN_Z = 23.55
#: Largest Lyapunov exponent at the classic values (Sprott, "Chaos and Time-Series Analysis").
LYAPUNOV_CLASSIC = 0.9056
CORNERS = np.array([CLASSIC, (9.0, 27.0, 2.0), (11.0, 33.0, 2.8), (9.0, 33.0, 2.8), (11.0, 27.0, 2.0)])


def dop853(state: np.ndarray, theta: np.ndarray, t: float) -> np.ndarray:
    """Reference solution, one row at a time, (n, 3), (n, 3) -> (n, 3)."""

    def rhs(_t, u, p):
        return lorenz_rhs(u[None], p[None])[0]

    return np.array(
        [
            solve_ivp(rhs, (0.0, t), s, method="DOP853", rtol=1e-10, atol=1e-12, args=(p,)).y[:, -1]
            for s, p in zip(state, theta, strict=True)
        ]
    )


def box_grid(k: int) -> np.ndarray:
    """k × k × k grid over the prior box (corners, edges and centre for k = 3), (k³, 3)."""
    low, high = Lorenz.prior.bounds
    axes = [np.linspace(lo, hi, k) for lo, hi in zip(low, high, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


# -- integrator ------------------------------------------------------------------------------


def test_rk4_matches_dop853_with_fourth_order_convergence():
    theta = np.repeat(CORNERS, 3, axis=0)
    start = _on_attractor(theta, np.random.default_rng(0), burn_in=20.0)
    ref = dop853(start, theta, 0.5)
    err = np.abs(integrate(start, theta, 0.5) - ref).max()
    err_half = np.abs(integrate(start, theta, 0.5, step=STEP / 2) - ref).max()
    assert err < 5e-4  # states are O(20): relative error ~1e-5 over 0.5 time units (~0.5 Lyapunov times)
    assert 12 < err / err_half < 20  # 2⁴ = 16 for a fourth-order method


def test_rho_below_one_decays_to_the_origin():
    """For ρ < 1 the origin is globally stable, V = x²/σ + y² + z² decreases monotonically, and the
    slowest decay rate is the origin's eigenvalue (-(σ+1) + √((σ-1)² + 4σρ)) / 2."""
    theta = np.array([10.0, 0.5, 8.0 / 3.0])
    state = np.random.default_rng(1).normal(0.0, 20.0, (20, 3))
    v_prev = np.sum(state**2 / [theta[0], 1.0, 1.0], axis=1)
    for _ in range(80):  # 80 × 0.5 = 40 time units
        state = integrate(state, theta, 0.5)
        v = np.sum(state**2 / [theta[0], 1.0, 1.0], axis=1)
        assert np.all(v < v_prev)
        v_prev = v
    assert np.abs(state).max() < 1e-5
    slowest = (-(theta[0] + 1) + np.sqrt((theta[0] - 1) ** 2 + 4 * theta[0] * theta[1])) / 2
    # The tangent vector aligns with the slowest eigenvector; its initial component c biases the
    # estimate by log|c| / t.
    lam = largest_lyapunov(theta, t=50.0, rng=2)
    assert lam[0] == pytest.approx(slowest, abs=0.02)


def test_classic_long_run_statistics():
    """32 runs of 50 time units at the classic values. The mean of z over one run of T = 100 scatters
    by 0.09 between runs, so over 32 × 50 its standard error is ≈ 0.02: the tolerance 0.1 is 5σ.
    The exact identities ⟨x²⟩ = ⟨xy⟩ = β⟨z⟩ and ⟨σx² + y² + βz²⟩ = β(ρ+σ)⟨z⟩ (time derivatives of
    bounded functions average to zero) hold up to boundary terms ≤ ~50² / T."""
    sigma, rho, beta = CLASSIC
    theta = np.tile(CLASSIC, (32, 1))
    state = _on_attractor(theta, np.random.default_rng(3), burn_in=20.0)
    n = int(50.0 / STEP)
    traj = np.empty((n, 32, 3))
    for k in range(n):
        state = rk4_step(state, theta, STEP)
        traj[k] = state
    x, y, z = traj[..., 0], traj[..., 1], traj[..., 2]
    assert z.mean() == pytest.approx(MEAN_Z, abs=0.1)
    assert 17.5 < np.abs(x).max() < 20.0
    assert 24.5 < np.abs(y).max() < 27.5
    assert 0.0 < z.min() < 5.0 and 44.0 < z.max() < 50.0
    assert abs(x.mean()) < 1.0 and abs(y.mean()) < 1.0  # symmetry (x, y) -> (-x, -y)
    bz = beta * z.mean()
    assert np.mean(x * y) == pytest.approx(bz, rel=0.01)
    assert np.mean(x**2) == pytest.approx(bz, rel=0.01)
    energy = np.mean(sigma * x**2 + y**2 + beta * z**2)
    assert energy == pytest.approx(beta * (rho + sigma) * z.mean(), rel=0.01)


def test_points_sample_the_invariant_measure():
    """2000 independent points: mean z within 4 standard errors (std(z) ≈ 8.6) of the long-run mean."""
    x = Lorenz().sample(np.tile(CLASSIC, (2000, 1)), rng=4)
    assert x.shape == (2000, 3)
    assert abs(x[:, 2].mean() - MEAN_Z) < 4 * 8.6 / np.sqrt(2000)
    assert np.abs(x[:, 0]).max() < 20.0 and np.abs(x[:, 1]).max() < 27.5
    assert x[:, 2].min() > 0 and x[:, 2].max() < 50.0
    assert 0.4 < np.mean(x[:, 0] > 0) < 0.6  # both wings


# -- snippets --------------------------------------------------------------------------------


def test_snippets_obey_the_ode_and_have_zero_residual():
    sim = Lorenz(observation="snippets", n_times=5, dt=0.05)
    theta = sim.prior.sample(20, rng=5)
    x = sim.sample(theta, rng=6)
    states = x.reshape(20, 5, 3)
    # RK4 with steps of 0.01 is off by up to ~2e-4 where the flow is fastest (|dz/dt| up to ~300).
    np.testing.assert_allclose(dop853(states[:, 0], theta, 0.05), states[:, 1], rtol=0, atol=5e-4)
    np.testing.assert_allclose(dop853(states[:, 3], theta, 0.05), states[:, 4], rtol=0, atol=5e-4)
    assert np.all(sim.distance_to_manifold(x, theta) < 1e-12)
    # The wrong θ does not fit: the residual sees the parameters.
    assert np.all(sim.distance_to_manifold(x, theta[::-1]) > 1e-3)


def test_residual_grows_with_noise():
    """E|Φ'ε_k - ε_{k+1}|² ≥ 3 noise² per transition, so the RMS residual is ≳ √3 noise and, for
    small noise, linear in it."""
    theta = np.tile(CLASSIC, (200, 1))
    dist = {}
    for noise in (0.0, 0.01, 0.1):
        sim = Lorenz(observation="snippets", noise=noise)
        dist[noise] = sim.distance_to_manifold(sim.sample(theta, rng=7), theta)
    assert dist[0.0].max() < 1e-12
    assert dist[0.01].mean() > 0.8 * np.sqrt(3) * 0.01
    assert 8 < dist[0.1].mean() / dist[0.01].mean() < 12


# -- interface -------------------------------------------------------------------------------


def test_shapes_attributes_registry_and_seeds():
    sim = get_simulator("lorenz", observation="snippets")
    assert isinstance(sim, Lorenz)
    assert (sim.n_times, sim.dt, sim.noise) == (10, 0.05, 0.0)
    assert (sim.param_dim, sim.data_dim, sim.manifold_dim) == (3, 30, 2)
    theta, x = sim.simulate(4, rng=8)
    assert theta.shape == (4, 3) and x.shape == (4, 30) and np.all(sim.prior.contains(theta))
    np.testing.assert_array_equal(x, sim.simulate(4, rng=8)[1])
    np.testing.assert_array_equal(x, sim.simulate(4, rng=np.random.default_rng(8))[1])
    assert not np.allclose(x, sim.simulate(4, rng=9)[1])
    assert sim.distance_to_manifold(x, theta).shape == (4,)
    assert sim.distance_to_manifold(x[:1], theta[0]).shape == (1,)

    points = get_simulator("lorenz")
    assert points.observation == "points" and points.data_dim == 3
    x = points.sample(CLASSIC, rng=10)
    assert x.shape == (1, 3)
    np.testing.assert_array_equal(x, points.sample(CLASSIC, rng=10))
    noisy = Lorenz(observation="snippets", n_times=3, dt=0.1, noise=0.5)
    assert (noisy.n_times, noisy.dt, noisy.noise, noisy.data_dim) == (3, 0.1, 0.5, 9)


def test_no_likelihood_and_points_have_no_residual():
    sim = Lorenz()
    x = sim.sample(CLASSIC, rng=11)
    with pytest.raises(NotImplementedError, match="intractable"):
        sim.log_likelihood(x, CLASSIC)
    with pytest.raises(NotImplementedError, match="observation='snippets'"):
        sim.distance_to_manifold(x, CLASSIC)
    snippets = Lorenz(observation="snippets")
    with pytest.raises(NotImplementedError, match="distance_to_manifold\\(x, theta\\)"):
        snippets.distance_to_manifold(np.zeros((2, 30)))


# -- bad input -------------------------------------------------------------------------------


def test_bad_theta_raises():
    sim = Lorenz(observation="snippets", n_times=3)
    with pytest.raises(InputError, match=r"theta: expected shape \(n, 3\), got \(2, 2\)"):
        sim.sample(np.ones((2, 2)))
    with pytest.raises(InputError, match=r"theta: 1 row.*outside the prior support"):
        sim.sample([CLASSIC, (10.0, 50.0, 2.5)])
    with pytest.raises(InputError, match=r"theta: 1 row.*outside the prior support"):
        sim.sample([CLASSIC, (10.0, np.nan, 2.5)])
    x = sim.sample(CLASSIC, rng=0)
    with pytest.raises(InputError, match="outside the prior support"):
        sim.distance_to_manifold(x, (10.0, 28.0, 5.0))
    with pytest.raises(InputError, match=r"x: expected shape \(n, 9\), got \(1, 8\)"):
        sim.distance_to_manifold(x[:, :8], CLASSIC)
    with pytest.raises(InputError, match="theta: expected 1 or 2 rows"):
        sim.distance_to_manifold(np.repeat(x, 2, axis=0), np.tile(CLASSIC, (3, 1)))
    with pytest.raises(InputError, match=r"theta: 1 of 1 row.*NaN"):
        integrate(np.zeros(3), (np.nan, 1.0, 1.0), 1.0)


@pytest.mark.parametrize(
    "options, match",
    [
        (
            {"observation": "snipets"},
            r"observation: must be one of \('points', 'snippets'\), got "
            r"'snipets'; nearest: 'snippets'",
        ),
        ({"n_times": 1}, "n_times: expected an integer >= 2, got 1"),
        ({"n_times": 2.5}, "n_times: expected an integer >= 2, got 2.5"),
        ({"dt": 0.0}, r"dt: expected a finite number > 0 \(time units\), got 0.0"),
        ({"dt": -0.1}, "dt: expected a finite number > 0"),
        ({"dt": float("nan")}, "dt: expected a finite number > 0"),
        ({"noise": -0.1}, r"noise: expected a finite standard deviation >= 0 \(state units\)"),
        ({"noise": float("inf")}, "noise: expected a finite standard deviation >= 0"),
        ({"burn_in": -1.0}, "burn_in: expected a finite number >= 0"),
    ],
)
def test_bad_constructor_args_raise(options, match):
    with pytest.raises(InputError, match=match):
        Lorenz(**options)
    with pytest.raises(InputError, match=match):
        get_simulator("lorenz", **options)


# -- chaos over the prior box ----------------------------------------------------------------


def test_lyapunov_at_the_classic_values():
    """16 runs of 50 time units: one run scatters by ≈ 0.045, so the mean's standard error is ≈ 0.011
    and the tolerance 0.04 is 3.5σ (16 runs of 200 gave 0.911 ± 0.004)."""
    lam = largest_lyapunov(np.tile(CLASSIC, (16, 1)), t=50.0, rng=12)
    assert lam.mean() == pytest.approx(LYAPUNOV_CLASSIC, abs=0.04)


def test_lyapunov_positive_on_a_coarse_grid_over_the_box():
    """3 × 3 × 3 grid, 50 time units each (scatter ≈ 0.05): measured 0.77 … 1.06."""
    lam = largest_lyapunov(box_grid(3), t=50.0, rng=13)
    assert lam.min() > 0.5


@pytest.mark.slow
def test_lyapunov_positive_on_a_fine_grid_over_the_box():
    """5 × 5 × 5 grid, 400 time units each (scatter ≈ 0.01): measured 0.79 … 1.05."""
    lam = largest_lyapunov(box_grid(5), t=400.0, rng=14)
    assert lam.min() > 0.6
