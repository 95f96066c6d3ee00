"""Models: the manifold density, its Jacobian term, normalisation, API and bad input."""

import math

import numpy as np
import pytest
import torch

from mfinfer.models import AmbientFlow, FOMFlow, ManifoldFlow, load_model, save_model
from mfinfer.models.jacobian import SingularJacobianError, jacobian, log_det_jtj

SMALL = dict(hidden_features=16, num_blocks=1)


def autograd_jacobian(fn, u):
    """Per-event reverse-mode Jacobians, (n, D, d): the reference for the forward-mode code."""
    return torch.stack([torch.autograd.functional.jacobian(lambda v: fn(v[None])[0], ui) for ui in u])


def reverse_jacobian(fn, u):
    """Reverse mode, one backward pass per output coordinate over the whole batch, (n, D, d)."""
    u = u.clone().requires_grad_(True)
    x = fn(u)
    rows = [torch.autograd.grad(x[:, i].sum(), u, retain_graph=True)[0] for i in range(x.shape[1])]
    return torch.stack(rows, 1)


@pytest.mark.parametrize("D,d", [(3, 2), (40, 14)])
def test_forward_mode_log_det_matches_autograd(float64, D, d):
    flow = ManifoldFlow(D, d, outer_layers=3, inner_layers=1, **SMALL)
    u = torch.randn(6, d)
    x, J = jacobian(flow.decode, u)
    J_ref = autograd_jacobian(flow.decode, u)
    assert torch.allclose(x, flow.decode(u), atol=1e-12)
    assert torch.allclose(J, J_ref, atol=1e-8, rtol=0)
    ref = torch.linalg.slogdet(J_ref.mT @ J_ref).logabsdet
    assert torch.allclose(log_det_jtj(J), ref, atol=1e-8, rtol=0)


def test_conditional_manifold_log_det(float64):
    flow = ManifoldFlow(4, 2, param_dim=1, conditional_manifold=True, outer_layers=2, inner_layers=1, **SMALL)
    u, theta = torch.randn(5, 2), torch.randn(5, 1)
    J_ref = torch.stack([
        torch.autograd.functional.jacobian(lambda v, t=t: flow.decode(v[None], t[None])[0], ui)
        for ui, t in zip(u, theta, strict=False)
    ])
    ref = torch.linalg.slogdet(J_ref.mT @ J_ref).logabsdet
    assert torch.allclose(flow.log_det_jtj(u, theta), ref, atol=1e-8)


def test_singular_jacobian_raises(float64):
    with pytest.raises(SingularJacobianError, match="singular"):
        log_det_jtj(torch.zeros(3, 4, 2))


def _integrate_on_manifold(flow, grid_1d, d):
    """∫ p(g(u)) sqrt(det JᵀJ) du on a grid in u, with J from autograd (independent of the model's)."""
    mesh = torch.meshgrid(*([grid_1d] * d), indexing="ij")
    u = torch.stack([m.flatten() for m in mesh], 1)
    x = flow.decode(u)
    with torch.no_grad():
        logp = flow.log_prob(x)
    J = reverse_jacobian(flow.decode, u)
    vol = 0.5 * torch.linalg.slogdet(J.mT @ J).logabsdet
    cell = (grid_1d[1] - grid_1d[0]) ** d
    return float(torch.exp(logp + vol).sum() * cell)


@pytest.mark.parametrize("D,d,n", [(2, 1, 2001), (3, 2, 101)])
def test_random_manifold_flow_is_normalised(float64, D, d, n):
    flow = ManifoldFlow(D, d, outer_layers=2, inner_layers=2, tail_bound=4.0, **SMALL)
    # the inner flow is the identity beyond its tail bound, so the density there is standard normal
    grid = torch.linspace(-9, 9, n)
    assert _integrate_on_manifold(flow, grid, d) == pytest.approx(1.0, abs=0.01)


def test_fom_reproduces_circle_density(float64):
    from nflows.transforms import PointwiseAffineTransform

    from mfinfer.registry import get_simulator

    sim = get_simulator("circle")
    fom = FOMFlow(sim, inner_layers=1, **SMALL)
    # replace the learned inner flow by the exact map phi -> (phi - pi/2) / (pi/4)
    fom.inner = PointwiseAffineTransform(shift=-2.0, scale=4 / math.pi)
    phi = torch.linspace(0.3, 2.8, 41)  # away from the wrapped tails (e^-20 there)
    x = torch.stack([torch.cos(phi), torch.sin(phi)], 1)
    ours = fom.log_prob(x).detach().numpy()
    exact = sim.log_likelihood(x.numpy(), np.zeros((len(x), 0)))
    np.testing.assert_allclose(ours, exact, atol=1e-6, rtol=0)


@pytest.mark.parametrize("encoder", [False, True])
def test_manifold_flow_api_shapes(encoder):
    flow = ManifoldFlow(5, 2, param_dim=3, encoder=encoder, outer_layers=2, inner_layers=2, **SMALL)
    theta = torch.zeros(3)
    x = flow.sample(7, theta)
    assert x.shape == (7, 5)
    assert flow.encode(x).shape == (7, 2)
    assert flow.project(x).shape == (7, 5)
    assert flow.log_prob(x, theta).shape == (7,)
    assert flow.log_prob(x, torch.zeros(7, 3)).shape == (7,)
    if not encoder:  # without an encoder, samples lie exactly on the manifold
        assert torch.allclose(flow.project(x), x, atol=1e-4)
        assert flow.log_prob(x, theta, mode="pie").shape == (7,)
    else:
        with pytest.raises(ValueError, match="encoder"):
            flow.log_prob(x, theta, mode="pie")


def test_pie_density_is_normalised_in_ambient_space(float64):
    flow = ManifoldFlow(2, 1, outer_layers=2, inner_layers=1, pie_epsilon=0.5, tail_bound=4.0, **SMALL)
    g = torch.linspace(-8, 8, 401)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    x = torch.stack([xx.flatten(), yy.flatten()], 1)
    with torch.no_grad():
        total = torch.exp(flow.log_prob(x, mode="pie")).sum() * (g[1] - g[0]) ** 2
    assert float(total) == pytest.approx(1.0, abs=0.01)


def test_ambient_flow_is_normalised(float64):
    flow = AmbientFlow(2, num_layers=2, tail_bound=4.0, **SMALL)
    g = torch.linspace(-9, 9, 301)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    with torch.no_grad():
        logp = flow.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1))
    assert float(torch.exp(logp).sum() * (g[1] - g[0]) ** 2) == pytest.approx(1.0, abs=0.01)


def test_save_load_round_trip(tmp_path):
    flow = ManifoldFlow(3, 2, param_dim=1, encoder=True, outer_layers=2, inner_layers=2, **SMALL)
    x = torch.randn(4, 3)
    save_model(flow, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert torch.equal(flow.log_prob(x, torch.zeros(1)), again.log_prob(x, torch.zeros(1)))
    with pytest.raises(FileNotFoundError, match=r"model.json"):
        load_model(tmp_path / "missing")


def test_bad_input_errors():
    flow = ManifoldFlow(3, 2, param_dim=1, outer_layers=1, inner_layers=1, **SMALL)
    with pytest.raises(ValueError, match=r"x: expected shape \(n, 3\), got \(4, 2\)"):
        flow.log_prob(torch.zeros(4, 2), torch.zeros(1))
    with pytest.raises(ValueError, match=r"theta: expected shape \(n, 1\), got \(4, 2\)"):
        flow.log_prob(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="conditional"):
        flow.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="mode"):
        flow.log_prob(torch.zeros(4, 3), torch.zeros(1), mode="bogus")
    with pytest.raises(ValueError, match="manifold_dim"):
        ManifoldFlow(3, 3)
    with pytest.raises(ValueError, match="unconditional"):
        AmbientFlow(2).log_prob(torch.zeros(1, 2), torch.zeros(1, 1))


def test_standardisation_ignores_gross_outliers_with_a_warning():
    """One corrupt row at 1e30 must not map every clean row to the same point."""
    x = torch.randn(500, 3, dtype=torch.float64) * torch.tensor([2.0, 30.0, 0.5]) + 7.0
    clean = AmbientFlow(3, num_layers=1, **SMALL).double()
    clean.fit_standardization(x)
    dirty = AmbientFlow(3, num_layers=1, **SMALL).double()
    with pytest.warns(UserWarning, match="1 of 501 training rows"):
        dirty.fit_standardization(torch.cat([x, torch.tensor([[7.0, 1e30, 7.0]], dtype=torch.float64)]))
    assert torch.equal(dirty.standardize.shift, clean.standardize.shift)
    assert torch.equal(dirty.standardize.scale, clean.standardize.scale)
    z = dirty.standardize(x)[0]
    assert z.std(0).min() > 0.9  # clean rows stay spread out


@pytest.mark.parametrize("inverse", [False, True])
def test_fast_spline_equals_nflows_spline(inverse, float64):
    """The mask-free spline gives nflows' outputs, log-dets and gradients, inside and outside the
    tail bound."""
    from nflows.transforms.splines import unconstrained_rational_quadratic_spline

    from mfinfer.models.spline import linear_tail_rqs

    torch.manual_seed(3)
    bins, scale = 10, 4.0
    x = (torch.randn(300, 4) * 3).requires_grad_()
    params = torch.randn(300, 4, 3 * bins - 1, requires_grad=True)
    ours = linear_tail_rqs(x, params, bins, scale, inverse=inverse, tail_bound=3.0)
    ref = unconstrained_rational_quadratic_spline(
        x, params[..., :bins] / scale, params[..., bins : 2 * bins] / scale, params[..., 2 * bins :],
        inverse=inverse, tails="linear", tail_bound=3.0)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    g_ours = torch.autograd.grad(sum(t.sum() for t in ours), (x, params))
    g_ref = torch.autograd.grad(sum(t.sum() for t in ref), (x, params))
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
