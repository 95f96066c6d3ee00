"""The Lorenz-63 system: points on, and short snippets along, its chaotic attractor.

    dx/dt = σ (y - x),   dy/dt = x (ρ - z) - y,   dz/dt = x y - β z,   θ = (σ, ρ, β).

Prior: ``BoxUniform((9, 27, 2), (11, 33, 2.8))``: σ ∈ [9, 11], ρ ∈ [27, 33], β ∈ [2, 2.8], around
the classic values (10, 28, 8/3). The box keeps ρ above the Hopf value
ρ_H = σ (σ + β + 3) / (σ - β - 1) where the two non-trivial fixed points lose stability
(ρ_H ≤ 25.7 on the box; β up to 3 would give 27, and σ = 8 with β = 3 even 28), so the strange
attractor is the only attractor. ``largest_lyapunov`` checks the chaos: on a 5 × 5 × 5 grid over the
box (t = 400 each) the largest exponent lies in [0.79, 1.05] (7 × 7 × 7, t = 100: [0.75, 1.06]),
and at the classic values it is 0.911 ± 0.004 (16 runs of t = 200; literature 0.9056).
``tests/test_lorenz.py`` checks a 3 × 3 × 3 grid by default and the 5 × 5 × 5 one under ``-m slow``.

Integration is vectorized fixed-step RK4 in numpy over many (state, θ) rows at once, with steps of
at most ``STEP`` = 0.01 (an interval t is cut into ⌈t / STEP⌉ equal steps). On the attractor it
agrees with DOP853 (rtol 1e-10) to ≲ 2e-4 absolute (≈ 1e-5 relative) over t = 0.5, the error coming
from the fastest parts of the flow; halving the step cuts it 16-fold.

Observation models (``Lorenz(observation=...)``):

- ``"points"``: one state (x, y, z) drawn from the attractor's invariant measure at θ, D = 3;
- ``"snippets"``: ``n_times`` states ``dt`` apart (default 10 and 0.05, i.e. 0.45 time units, about
  0.4 Lyapunov times), time-major ``[x0, y0, z0, x1, y1, z1, …]``, D = 3 ``n_times``.

Both start from a random state near the origin (x, y, z ~ N(0, 1)) run for ``burn_in`` = 20 time
units (≈ 18 e-foldings of the largest Lyapunov exponent) plus a uniform random time in
[0, ``RANDOM_TIME``] = [0, 5], so the first state is a draw from the invariant measure (checked
against burn-in 100 at the least unstable corner θ = (9, 27, 2.8): mean z 22.15 ± 0.10 vs
21.90 ± 0.10). ``noise`` adds independent Gaussian noise of that standard deviation (state units)
to every component.

Manifold dimension: 2 for both. The attractor is a fractal of dimension ≈ 2.06, locally a stack of
sheets, so d = 2 is the dimension a smooth manifold model can capture; a snippet is a smooth
function of its first state, so the snippets lie on a 2-d set in R^(3 n_times) as well.
``distance_to_manifold(x, theta)`` of snippets is the residual of the dynamics (zero without
noise); for points, where the attractor has no closed form, it raises ``NotImplementedError``. There
is no tractable likelihood (``log_likelihood`` raises ``NotImplementedError``).

No joint score (``simulate(n, score=True)`` raises ``NotImplementedError``). The latents are the
initial state and the random run time; given them, the noise-free observation is a deterministic
function of θ, so p(x, z | θ) is a delta function and has no θ-gradient. With ``noise`` > 0 the
joint score exists, (x − Φ_θ(z)) · ∂Φ_θ(z)/∂θ / noise², but the sensitivity ∂Φ/∂θ of a state
reached after the burn-in (20-25 time units) grows like exp(λ t) with λ ≈ 0.9: about 10⁸-10¹⁰,
so the score's variance is astronomically large and useless as a training target. (A snippet's
score *given its first state* is well behaved, but the first state's own density on the attractor
depends on θ and is intractable.)

Reference: E. N. Lorenz, "Deterministic nonperiodic flow", J. Atmos. Sci. 20, 130 (1963);
Benettin et al., Meccanica 15, 9 (1980) for the Lyapunov exponent.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from mfinfer._validation import as_matrix, broadcast_rows, check_count
from mfinfer.errors import InputError
from mfinfer.priors import BoxUniform
from simulators.base import Simulator, check_theta, check_x

__all__ = [
    "BURN_IN",
    "CLASSIC",
    "DT",
    "OBSERVATIONS",
    "RANDOM_TIME",
    "STEP",
    "Lorenz",
    "integrate",
    "largest_lyapunov",
    "lorenz_rhs",
    "rk4_step",
]

#: The classic parameters (σ, ρ, β) of Lorenz (1963).
CLASSIC = (10.0, 28.0, 8.0 / 3.0)
#: Largest RK4 step, in time units.
STEP = 0.01
#: Default spacing of the snippet states, in time units.
DT = 0.05
#: Default time run from the random initial state before the first observed state.
BURN_IN = 20.0
#: After the burn-in, a further uniform random time in [0, RANDOM_TIME].
RANDOM_TIME = 5.0
OBSERVATIONS = ("points", "snippets")


def _n_steps(t: float, step: float) -> int:
    return max(1, int(np.ceil(t / step - 1e-9)))


def _check_time(t: Any, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(t, (int, float, np.integer, np.floating)) and not isinstance(t, bool)
    if not ok or not np.isfinite(t) or t < 0 or (t == 0 and not allow_zero):
        sign = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name}: expected a finite number {sign} (time units), got {t!r}")
    return float(t)


def lorenz_rhs(state: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Time derivative of the states, (n, 3), (n, 3) -> (n, 3) (no validation)."""
    x, y, z = state[:, 0], state[:, 1], state[:, 2]
    sigma, rho, beta = theta[:, 0], theta[:, 1], theta[:, 2]
    return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], axis=1)


def _tangent_rhs(state: np.ndarray, v: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Jacobian of ``lorenz_rhs`` at ``state`` applied to tangent vectors v, (n, 3) -> (n, 3)."""
    x, y, z = state[:, 0], state[:, 1], state[:, 2]
    sigma, rho, beta = theta[:, 0], theta[:, 1], theta[:, 2]
    vx, vy, vz = v[:, 0], v[:, 1], v[:, 2]
    return np.stack([sigma * (vy - vx), (rho - z) * vx - vy - x * vz, y * vx + x * vy - beta * vz], axis=1)


def rk4_step(state: np.ndarray, theta: np.ndarray, h: float) -> np.ndarray:
    """One classical Runge-Kutta step of size h, (n, 3), (n, 3) -> (n, 3) (no validation)."""
    k1 = lorenz_rhs(state, theta)
    k2 = lorenz_rhs(state + 0.5 * h * k1, theta)
    k3 = lorenz_rhs(state + 0.5 * h * k2, theta)
    k4 = lorenz_rhs(state + h * k3, theta)
    return state + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def _integrate(state: np.ndarray, theta: np.ndarray, t: float, step: float) -> np.ndarray:
    n = _n_steps(t, step)
    h = t / n
    for _ in range(n):
        state = rk4_step(state, theta, h)
    return state


def integrate(state: Any, theta: Any, t: float, step: float = STEP) -> np.ndarray:
    """States after time t by fixed-step RK4 (⌈t / step⌉ equal steps), (n, 3), (n, 3) -> (n, 3).

    Any finite θ is accepted (not only the prior box), e.g. ρ < 1 where the origin attracts.

    Args:
        state: initial states, (n, 3) or (3,).
        theta: parameters (σ, ρ, β), (n, 3) or (3,) (one row is used for every state).
        t: time to integrate, ≥ 0 (0 returns the states).
        step: largest RK4 step.
    """
    state = as_matrix(state, 3, "state")
    theta = broadcast_rows(as_matrix(theta, 3, "theta"), len(state), "theta")
    t, step = _check_time(t, "t", allow_zero=True), _check_time(step, "step")
    return state.copy() if t == 0 else _integrate(state, theta, t, step)


def _initial_states(theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random starting states near the origin, x, y, z ~ N(0, 1), (n, 3) -> (n, 3).

    The origin is a saddle whose unstable manifold lies in the attractor, so these states reach
    it within a few time units. States spread over the attractor's region (e.g. N(0, 10²)) can
    instead spiral slowly around the non-trivial fixed points, which are only weakly unstable at
    the low-ρ edge of the prior: after 20 time units 3.5 % of them were still within 3 of one at
    θ = (9, 27, 2.8), against none from the origin.
    """
    return rng.normal(size=(len(theta), 3))


def _on_attractor(
    theta: np.ndarray, rng: np.random.Generator, burn_in: float, step: float = STEP
) -> np.ndarray:
    """One state per θ row from the invariant measure: a random start run for ``burn_in`` plus a
    random time in [0, RANDOM_TIME] (whole steps), (n, 3) -> (n, 3)."""
    state = _integrate(_initial_states(theta, rng), theta, burn_in, step)
    n_extra = _n_steps(RANDOM_TIME, step)
    stop = rng.integers(0, n_extra + 1, size=len(theta))
    out = state.copy()
    for k in range(1, int(stop.max(initial=0)) + 1):
        state = rk4_step(state, theta, RANDOM_TIME / n_extra)
        out[stop == k] = state[stop == k]
    return out


def largest_lyapunov(
    theta: Any,
    t: float = 200.0,
    burn_in: float = BURN_IN,
    step: float = STEP,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Largest Lyapunov exponent per θ row, (n, 3) or (3,) -> (n,), in 1 / time units.

    Integrates the tangent-linear system dv/dt = J(s) v alongside the state with the same RK4
    steps, renormalizing v after every step and averaging log |v| growth over time t (Benettin's
    method with an exact linearization instead of a neighbouring trajectory). Each row starts
    from its own random state run for ``burn_in`` first. One row scatters by about 0.25 / √t at
    the classic values (rows are independent: average repeated rows for more precision).

    Args:
        theta: parameters (σ, ρ, β); any finite values.
        t: averaging time after the burn-in.
        burn_in: time from the random start before averaging.
        step: largest RK4 step.
        rng: seed or generator for the starting states.
    """
    theta = as_matrix(theta, 3, "theta")
    t, burn_in = _check_time(t, "t"), _check_time(burn_in, "burn_in", allow_zero=True)
    step = _check_time(step, "step")
    rng = np.random.default_rng(rng)
    state = _initial_states(theta, rng)
    if burn_in > 0:
        state = _integrate(state, theta, burn_in, step)
    v = rng.normal(size=state.shape)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    n = _n_steps(t, step)
    h = t / n
    log_growth = np.zeros(len(theta))
    for _ in range(n):
        k1, l1 = lorenz_rhs(state, theta), _tangent_rhs(state, v, theta)
        s2, v2 = state + 0.5 * h * k1, v + 0.5 * h * l1
        k2, l2 = lorenz_rhs(s2, theta), _tangent_rhs(s2, v2, theta)
        s3, v3 = state + 0.5 * h * k2, v + 0.5 * h * l2
        k3, l3 = lorenz_rhs(s3, theta), _tangent_rhs(s3, v3, theta)
        s4, v4 = state + h * k3, v + h * l3
        k4, l4 = lorenz_rhs(s4, theta), _tangent_rhs(s4, v4, theta)
        state = state + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        v = v + (h / 6.0) * (l1 + 2.0 * l2 + 2.0 * l3 + l4)
        norm = np.linalg.norm(v, axis=1)
        log_growth += np.log(norm)
        v /= norm[:, None]
    return log_growth / t


class Lorenz(Simulator):
    """Lorenz-63 observed as attractor points (D = 3) or snippets (D = 3 ``n_times``); d = 2.

    θ = (σ, ρ, β) with prior ``BoxUniform((9, 27, 2), (11, 33, 2.8))`` (chaotic throughout, see
    the module docstring). No tractable likelihood.

    Args:
        observation: ``"points"`` (one state from the invariant measure) or ``"snippets"``
            (``n_times`` states ``dt`` apart, time-major).
        n_times: states per snippet, an integer ≥ 2 (snippets only).
        dt: time between snippet states (snippets only); each dt is ⌈dt / STEP⌉ RK4 steps.
        noise: standard deviation of Gaussian observation noise added to every component, ≥ 0.
        burn_in: time run from the random initial state before the first observed state.

    Example:
        >>> sim = Lorenz(observation="snippets", n_times=4)
        >>> theta, x = sim.simulate(2, rng=0)
        >>> theta.shape, x.shape, sim.distance_to_manifold(x, theta).shape
        ((2, 3), (2, 12), (2,))
    """

    param_dim = 3
    param_names = ("sigma", "rho", "beta")
    manifold_dim = 2
    prior = BoxUniform((9.0, 27.0, 2.0), (11.0, 33.0, 2.8))

    def __init__(
        self,
        observation: str = "points",
        n_times: int = 10,
        dt: float = DT,
        noise: float = 0.0,
        burn_in: float = BURN_IN,
    ) -> None:
        if observation not in OBSERVATIONS:
            near = difflib.get_close_matches(str(observation), OBSERVATIONS, n=2, cutoff=0.0)
            raise InputError(
                f"observation: must be one of {OBSERVATIONS}, got {observation!r}; nearest: {near[0]!r}"
            )
        self.observation = observation
        self.n_times = check_count(n_times, "n_times", minimum=2)
        self.dt = _check_time(dt, "dt")
        ok = isinstance(noise, (int, float, np.integer, np.floating)) and not isinstance(noise, bool)
        if not ok or not np.isfinite(noise) or noise < 0:
            raise InputError(f"noise: expected a finite standard deviation >= 0 (state units), got {noise!r}")
        self.noise = float(noise)
        self.burn_in = _check_time(burn_in, "burn_in", allow_zero=True)
        self.data_dim = 3 if observation == "points" else 3 * self.n_times

    def __repr__(self) -> str:
        return (
            f"Lorenz(observation={self.observation!r}, n_times={self.n_times}, dt={self.dt}, "
            f"noise={self.noise}, burn_in={self.burn_in})"
        )

    def sample(self, theta: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Simulate one observation per θ row, (n, 3) or (3,) -> (n, D).

        Raises:
            InputError: θ of the wrong shape, with NaN, or outside the prior box.
        """
        rng = np.random.default_rng(rng)
        theta = check_theta(theta, self.prior)
        state = _on_attractor(theta, rng, self.burn_in)
        if self.observation == "points":
            x = state
        else:
            states = [state]
            for _ in range(self.n_times - 1):
                state = _integrate(state, theta, self.dt, STEP)
                states.append(state)
            x = np.concatenate(states, axis=1)
        if self.noise > 0:
            x = x + self.noise * rng.normal(size=x.shape)
        return x

    def sample_with_score(
        self, theta: np.ndarray, rng: np.random.Generator | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Not available: no sensible joint score exists (see the module docstring)."""
        raise NotImplementedError(
            "Lorenz has no joint score: without noise x is a deterministic function of θ and the "
            "latents (no density to differentiate); with noise the score carries the chaotic "
            "sensitivity ∂x/∂θ ~ exp(0.9 t) after the burn-in (~1e9), useless as a training target; "
            "train without score_weight"
        )

    def log_likelihood(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Not available: raises NotImplementedError (the invariant measure has no closed form)."""
        raise NotImplementedError(
            "Lorenz: the likelihood is intractable (the invariant measure of a chaotic attractor "
            "has no closed form); train a likelihood or posterior model on simulations instead, "
            "and check it by calibration"
        )

    def distance_to_manifold(self, x: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
        """Residual of the dynamics of snippets, (n, 3 n_times), (n, 3) or (3,) -> (n,).

        Each state k is integrated for one ``dt`` with the simulator's RK4 steps and compared with
        state k + 1; the result is the root mean square over the n_times - 1 transitions of the
        Euclidean mismatch, √(mean_k |Φ_dt(s_k) - s_{k+1}|²), in state units. It is 0 for
        noiseless snippets (up to rounding) and grows with the noise; it is a residual, not the
        Euclidean distance to the set of snippets.

        Raises:
            NotImplementedError: for ``observation="points"`` (the attractor has no closed form),
                or when ``theta`` is None (the manifold depends on θ).
            InputError: bad shapes, NaN, or θ outside the prior.
        """
        if self.observation == "points":
            raise NotImplementedError(
                "Lorenz(observation='points'): the attractor has no closed form, so the distance "
                "of a point to it is not defined; use observation='snippets', whose residual of "
                "the dynamics is available"
            )
        x = check_x(x, self.data_dim)
        if theta is None:
            raise NotImplementedError(
                "Lorenz: the manifold depends on θ; call distance_to_manifold(x, theta)"
            )
        theta = check_theta(theta, self.prior, len(x))
        states = x.reshape(len(x), self.n_times, 3)
        start = states[:, :-1].reshape(-1, 3)
        reached = _integrate(start, np.repeat(theta, self.n_times - 1, axis=0), self.dt, STEP)
        mismatch = reached.reshape(len(x), self.n_times - 1, 3) - states[:, 1:]
        return np.sqrt(np.mean(np.sum(mismatch**2, axis=2), axis=1))
