"""θ-dependent manifolds in inference and training (``ManifoldFlow(conditional_manifold=True)``).

- ``ModelLikelihood`` on a conditional-manifold M-flow, batched over walkers × events (and split
  into chunks), equals an unbatched loop of ``model.log_prob`` over every (θ, event) pair, and its
  injective-Jacobian term equals log det JᵀJ from autograd's full Jacobian of the decoder at θ;
- the M phase sees θ (the outer flow's context) and the sequential and alternating schedules both
  learn a manifold that moves with θ (a parabola shifted by θ).

float64 models throughout, so the comparisons hold to ~1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfinfer import ManifoldFlow
from mfinfer.inference import ModelLikelihood
from mfinfer.training import TrainConfig, train

SMALL = {"hidden_features": 16, "num_blocks": 1, "num_bins": 4}
D, d, P = 4, 2, 2
N_EVENTS, N_WALKERS = 7, 6


@pytest.fixture
def model(float64) -> ManifoldFlow:
    """A conditional-manifold M-flow with random (not near-identity) weights, float64."""
    torch.manual_seed(3)
    flow = ManifoldFlow(D, d, param_dim=P, conditional_manifold=True, outer_layers=2,
                        inner_layers=2, theta_loc=[10.0, 30.0], theta_scale=[1.0, 3.0], **SMALL)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return flow.eval()


@pytest.fixture
def events() -> tuple[np.ndarray, np.ndarray]:
    """(x (N_EVENTS, D), walkers θ (N_WALKERS, P)) around the θ map's centre."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N_EVENTS, D))
    theta = np.array([10.0, 30.0]) + rng.uniform(-1, 1, size=(N_WALKERS, P)) * [1.0, 3.0]
    return x, theta


def _autograd_log_det(model: ManifoldFlow, u: torch.Tensor, theta: torch.Tensor) -> float:
    """log det JᵀJ of the decoder at one u (d,) and θ (P,), J (D × d) by reverse-mode autograd."""
    J = torch.autograd.functional.jacobian(lambda v: model.decode(v[None], theta[None])[0], u)
    assert J.shape == (D, d)
    return float(torch.linalg.slogdet(J.T @ J).logabsdet)


def test_manifold_depends_on_theta(model, events):
    x, theta = events
    u0, u1 = (model.encode(x, t) for t in theta[:2])
    assert (u0 - u1).abs().max() > 1e-2  # a real θ dependence, else the test below proves little
    assert not model.caches_projection


@pytest.mark.parametrize("chunk", [1, N_EVENTS * 2 + 3, 16_384], ids=["per-row", "ragged", "one"])
def test_batched_likelihood_equals_unbatched_loop(model, events, chunk):
    x, theta = events
    like = ModelLikelihood(model, x, chunk=chunk)  # cache=True is refused for this model
    assert not like.cached
    batched = like(theta)  # the walkers × events batch, in chunks of `chunk` pairs
    assert batched.shape == (N_WALKERS,) and batched.dtype == np.float64
    loop = np.array([sum(float(model.log_prob(x[i:i + 1], t[None])[0]) for i in range(N_EVENTS))
                     for t in theta])
    np.testing.assert_allclose(batched, loop, rtol=0, atol=1e-10)
    # one θ row at a time (an emcee walker) gives the same numbers as the whole batch
    np.testing.assert_allclose([like(t[None])[0] for t in theta], batched, rtol=0, atol=1e-10)


def test_jacobian_term_matches_autograd(model, events):
    x, theta = events
    xt, tt = torch.as_tensor(x), torch.as_tensor(theta)
    for j, i in [(0, 0), (1, 3), (4, 6), (5, 2)]:
        u = model.encode(xt[i:i + 1], tt[j])
        ref = _autograd_log_det(model, u[0], tt[j])
        ours = float(model.log_det_jtj(u, tt[j])[0])
        assert ours == pytest.approx(ref, abs=1e-9)
        # the likelihood of this one pair = inner density − ½ log det JᵀJ (autograd's)
        pair = ModelLikelihood(model, x[i:i + 1])(theta[j][None])[0]
        assert pair == pytest.approx(float(model.inner_log_prob(u, tt[j])[0]) - 0.5 * ref, abs=1e-9)
    # at another θ the Jacobian term differs: it is evaluated per θ, not cached
    u = model.encode(xt[:1], tt[0])
    assert abs(_autograd_log_det(model, u[0], tt[0]) - _autograd_log_det(model, u[0], tt[1])) > 1e-4


def test_samples_lie_on_the_manifold_at_their_theta(model, events):
    _, theta = events
    x = model.sample(N_WALKERS, theta)  # θ goes through the θ map once, for h and for g
    np.testing.assert_allclose(model.project(x, theta), x, atol=1e-8, rtol=0)
    assert (model.project(x, theta[::-1].copy()) - x).abs().max() > 1e-3


# ---------------------------------------------------------------- training
def _parabolas(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Points on the parabola x₂ = θ + x₁² / 2 in R², θ ∈ [-1, 1], x₁ ~ N(0, 1): a 1-d manifold
    that moves with θ (a θ-independent manifold cannot fit it)."""
    theta = rng.uniform(-1.0, 1.0, size=(n, 1))
    s = rng.normal(size=n)
    return theta, np.stack([s, theta[:, 0] + 0.5 * s**2], axis=1)


def _context_weights(model: ManifoldFlow) -> list[torch.Tensor]:
    """The weights of the outer flow that multiply θ (the context layers of its ResidualNets)."""
    return [p.detach().clone() for name, p in model.outer.named_parameters() if "context" in name]


@pytest.mark.parametrize("schedule", ["sequential", "alternating"])
def test_conditional_manifold_trains(schedule):
    rng = np.random.default_rng(0)
    theta, x = _parabolas(2000, rng)
    torch.manual_seed(0)
    model = ManifoldFlow(2, 1, param_dim=1, conditional_manifold=True, outer_layers=3,
                         inner_layers=1, **SMALL)
    before = _context_weights(model)
    assert before, "the outer flow has no θ context layers"
    history = train(model, x, theta, TrainConfig(schedule=schedule, epochs=8, batch_size=100,
                                                 lr=1e-2, patience=None, progress=False))
    phases = [h["phases"] for h in history]
    assert ("M" in phases[0]) and ("D" in phases[-1])  # the M phase came first, the D phase ran
    # the M phase trained the θ-dependent part of the manifold
    assert any((a - b).abs().max() > 1e-3 for a, b in zip(before, _context_weights(model), strict=True))
    test_theta, test_x = _parabolas(500, np.random.default_rng(1))
    err_right = model.reconstruction_error(test_x, test_theta).mean().item()
    err_wrong = model.reconstruction_error(test_x, -test_theta).mean().item()  # offsets 2|θ| apart
    # at the right θ the learned manifold passes close to the parabola; at the mirrored θ it does not
    assert err_right < 0.15 and err_wrong > 3 * err_right
    assert np.isfinite(ModelLikelihood(model, test_x[:20])(np.array([[-0.5], [0.5]]))).all()
