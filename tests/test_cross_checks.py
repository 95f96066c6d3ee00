"""Cross-checks against independent references, each of which kills a mutation the other tests
let survive: the spline coupling against nflows' own layer on the same state dict (its softmax
scale), the SVD fallback of log det JᵀJ against slogdet of an autograd Jacobian, and the HPD rank
convention at ranks other than N/2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nflows import transforms as nt
from nflows.distributions import StandardNormal
from nflows.flows import Flow as NflowsFlow
from nflows.nn.nets import ResidualNet
from nflows.utils import create_alternating_binary_mask

from mfinfer.calibration.ranks import coverage, hpd_levels, rank_statistics
from mfinfer.models import ManifoldFlow
from mfinfer.models.jacobian import log_det_jtj
from mfinfer.models.spline import RQSplineCoupling


# ------------------------------------------------------------------ the coupling against nflows
def _couplings(hidden: int, context: int) -> tuple[nt.Transform, nt.Transform]:
    """Our coupling and nflows' with the same (randomised) state dict."""
    def make(cls):
        return cls(mask=create_alternating_binary_mask(4, even=True),
                   transform_net_create_fn=lambda n_in, n_out: ResidualNet(
                       n_in, n_out, hidden, context_features=context or None, num_blocks=1),
                   num_bins=6, tails="linear", tail_bound=3.0)

    ours, ref = make(RQSplineCoupling), make(nt.PiecewiseRationalQuadraticCouplingTransform)
    state = {k: torch.randn_like(v) * 0.5 if v.is_floating_point() else v
             for k, v in ref.state_dict().items()}
    ref.load_state_dict(state)
    ours.load_state_dict(state)  # the same keys
    return ours, ref


@pytest.mark.parametrize(("hidden", "context"), [(16, 0), (9, 2)])
def test_coupling_equals_nflows_on_the_same_state_dict(hidden, context, float64):
    torch.manual_seed(0)
    ours, ref = _couplings(hidden, context)
    x = torch.randn(200, 4) * 2  # some beyond the tail bound
    c = torch.randn(200, context) if context else None
    for direction in ("forward", "inverse"):
        (y, ladj), (y_ref, ladj_ref) = getattr(ours, direction)(x, c), getattr(ref, direction)(x, c)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ladj, ladj_ref, rtol=1e-10, atol=1e-10)
    log_prob = NflowsFlow(ours, StandardNormal([4])).log_prob(x, c)
    log_prob_ref = NflowsFlow(ref, StandardNormal([4])).log_prob(x, c)
    torch.testing.assert_close(log_prob, log_prob_ref, rtol=1e-10, atol=1e-10)
    assert (ladj_ref.abs() > 1e-3).float().mean() > 0.5  # the spline is far from the identity


# ------------------------------------------------------------------ the SVD fallback of log det JᵀJ
def _autograd_jacobians(fn, u: torch.Tensor) -> torch.Tensor:
    """J (n, D, d) of a row-wise map, one reverse-mode Jacobian per row (independent of
    mfinfer.models.jacobian's forward-mode one)."""
    return torch.stack([torch.autograd.functional.jacobian(lambda v: fn(v[None])[0], row) for row in u])


def test_log_det_svd_fallback_equals_slogdet_of_autograd_jacobian(float64, monkeypatch):
    torch.manual_seed(1)
    model = ManifoldFlow(data_dim=3, manifold_dim=2, param_dim=0, outer_layers=2, inner_layers=1,
                         hidden_features=8, num_blocks=1).eval()
    for p in model.parameters():  # away from the identity initialisation
        p.data += 0.3 * torch.randn_like(p)
    u = torch.randn(6, 2)
    jac = _autograd_jacobians(lambda v: model.decode(v), u)  # (6, 3, 2)
    sign, expected = torch.linalg.slogdet(jac.mT @ jac)
    assert (sign > 0).all()

    cholesky_ex = torch.linalg.cholesky_ex

    def failing(gram, **kwargs):  # Cholesky "fails" on rows 1 and 4: those take the SVD path
        chol, info = cholesky_ex(gram, **kwargs)
        info = info.clone()
        info[[1, 4]] = 1
        return chol, info

    torch.testing.assert_close(log_det_jtj(jac), expected, rtol=1e-9, atol=1e-9)  # Cholesky path
    monkeypatch.setattr(torch.linalg, "cholesky_ex", failing)
    torch.testing.assert_close(log_det_jtj(jac), expected, rtol=1e-9, atol=1e-9)  # the fallback
    all_fail = lambda g, **kw: (g, torch.ones(len(g), dtype=torch.int32))  # noqa: E731
    monkeypatch.setattr(torch.linalg, "cholesky_ex", all_fail)
    torch.testing.assert_close(log_det_jtj(jac), expected, rtol=1e-9, atol=1e-9)  # all rows


# ------------------------------------------------------------------ the HPD rank convention
def _hpd_rank(log_probs: list[float], at_theta: float) -> int:
    n = len(log_probs)
    samples, theta = np.zeros((n, 1)), np.zeros(1)
    return rank_statistics(samples, np.asarray(log_probs), theta, at_theta, reference=theta,
                           scale=np.ones(1))["hpd_rank"]


@pytest.mark.parametrize(("log_probs", "at_theta", "rank", "inside", "outside"), [
    # θ at the mode, denser than every sample: in every HPD region
    ([-1.0, -2.0, -3.0, -4.0], 0.0, 4, [0.01, 0.5], []),
    # θ in the far tail: in no region short of the whole space
    ([-1.0, -2.0, -3.0, -4.0], -9.0, 0, [], [0.5, 0.99]),
    # denser than 1 of 4 samples only: credibility level 0.75
    ([-1.0, -2.0, -3.0, -4.0], -3.5, 1, [0.8, 0.9], [0.5, 0.7]),
    # denser than 3 of 4: level 0.25
    ([-1.0, -2.0, -3.0, -4.0], -1.5, 3, [0.3, 0.5], [0.1, 0.2]),
    # ties count as not less dense (strict <): 1 of 5
    ([-1.0, -2.0, -2.0, -2.0, -3.0], -2.0, 1, [0.9], [0.7]),
])
def test_hpd_rank_and_coverage_away_from_the_middle(log_probs, at_theta, rank, inside, outside):
    got = _hpd_rank(log_probs, at_theta)
    assert got == rank
    n = len(log_probs)
    assert hpd_levels(np.array([got]), n)[0] == pytest.approx(1 - rank / n)
    assert coverage(np.array([got]), n, inside).tolist() == [1.0] * len(inside)
    assert coverage(np.array([got]), n, outside).tolist() == [0.0] * len(outside)


def test_hpd_coverage_of_an_exact_gaussian_posterior_is_nominal_at_asymmetric_levels():
    """θ ~ N(0, 1) and N exact posterior samples: coverage c at every level c (0.1 and 0.9 tell a
    reversed convention, which gives 1 - c, from the right one)."""
    rng = np.random.default_rng(0)
    n_obs, n = 4000, 200
    theta = rng.standard_normal(n_obs)
    samples = rng.standard_normal((n_obs, n))
    ranks = np.array([_hpd_rank(list(-0.5 * s**2), -0.5 * t**2) for s, t in zip(samples, theta, strict=True)])
    levels = [0.1, 0.3, 0.9]
    got = coverage(ranks, n, levels)
    np.testing.assert_allclose(got, levels, atol=0.03)  # binomial noise ~ 0.008 at 4000
