"""Properties that pin down details the rest of the suite does not see.

- densities stay normalised when the model carries a fitted (non-trivial) input standardisation;
- early stopping leaves the model with its best-validation weights, not the last epoch's;
- the box-uniform prior is a normalised density with -inf outside its box;
- the learning rate follows the cosine schedule, stepped once per batch over the whole segment.
"""

import math

import numpy as np
import pytest
import torch

from mfinfer.models import AmbientFlow, ManifoldFlow
from mfinfer.priors import BoxUniform
from mfinfer.training import TrainConfig, train
from mfinfer.training.data import split

TINY = {"hidden_features": 8, "num_blocks": 1}
MEAN, SCALE = torch.tensor([3.0, -20.0], dtype=torch.float64), torch.tensor([5.0, 40.0], dtype=torch.float64)


def _wide_data(n: int = 2000, seed: int = 1) -> torch.Tensor:
    """Gaussian data with nonzero mean and scales 5 and 40, so the fitted standardisation is far
    from the identity (its log-det, -log(5·40) per event, is large)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g, dtype=torch.float64) * SCALE + MEAN


def _grid(model, n: int = 400, width: float = 8.0):
    """A 2-D grid ±width fitted scales around the fitted mean, and the area of one cell."""
    shift, scale = model.standardize.shift, model.standardize.scale
    axes = [torch.linspace(shift[i] - width * scale[i], shift[i] + width * scale[i], n, dtype=torch.float64)
            for i in range(2)]
    xx, yy = torch.meshgrid(*axes, indexing="ij")
    cell = (axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0])
    return torch.stack([xx.ravel(), yy.ravel()], 1), cell.item()


def _fitted(model):
    model = model.double()
    model.fit_standardization(_wide_data())
    scale = model.standardize.scale
    assert torch.all((scale > 4) & (scale < 50)) and model.standardize.shift.abs().min() > 1, (
        "the fitted standardisation must be far from the identity for this test to mean anything"
    )
    return model


def test_ambient_flow_with_fitted_standardization_is_normalised():
    model = _fitted(AmbientFlow(2, num_layers=1, **TINY))
    points, cell = _grid(model)
    with torch.no_grad():
        density = model.log_prob(points).exp()
    integral = density.sum().item() * cell
    assert integral == pytest.approx(1.0, rel=0.02), f"∫ p_AF(x) dx = {integral}, expected 1"


def test_pie_density_with_fitted_standardization_is_normalised():
    # the full D-dimensional PIE density (off-manifold width ε in standardised units)
    model = _fitted(ManifoldFlow(2, 1, outer_layers=1, inner_layers=1, pie_epsilon=0.3, **TINY))
    points, cell = _grid(model)
    with torch.no_grad():
        density = model.log_prob(points, mode="pie").exp()
    integral = density.sum().item() * cell
    assert integral == pytest.approx(1.0, rel=0.02), f"∫ p_PIE(x) dx = {integral}, expected 1"


def test_mflow_manifold_density_with_fitted_standardization_integrates_to_one_along_the_manifold():
    # The manifold density includes -½ log det(JᵀJ) of the decoder, which with standardisation
    # carries the fitted scale; integrated against arc length along the learned curve it gives 1.
    model = _fitted(ManifoldFlow(2, 1, outer_layers=1, inner_layers=1, **TINY))
    u = torch.linspace(-12.0, 12.0, 4001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        curve = model.decode(u)
        assert torch.allclose(model.encode(curve), u, atol=1e-8), "decode is not a chart inverse"
        density = model.log_prob(curve).exp()
    arc = (curve[1:] - curve[:-1]).norm(dim=1)
    assert arc.sum() > 10 * SCALE.min(), "the curve should span many fitted scales"
    integral = (0.5 * (density[1:] + density[:-1]) * arc).sum().item()  # trapezoid rule
    assert integral == pytest.approx(1.0, rel=0.02), f"∫ p_M(x) ds = {integral}, expected 1"


def test_early_stopping_restores_the_best_validation_weights():
    # A large learning rate on a tiny training set: validation gets worse after the first epoch,
    # so patience stops the segment and the best (early) weights must be restored.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2)) * [5.0, 40.0] + [3.0, -20.0]
    model = AmbientFlow(2, num_layers=1, **TINY).double()
    cfg = TrainConfig(epochs=12, batch_size=10, lr=0.1, validation_fraction=0.5, patience=3, progress=False)
    history = train(model, x, config=cfg)
    vals = [r["val"] for r in history]
    best = min(vals)
    assert best < vals[-1] - 1e-3, f"scenario is vacuous: no epoch after the best one was worse ({vals})"
    assert len(vals) < cfg.epochs, f"patience should have stopped training early ({vals})"

    _, val_idx = split(len(x), cfg.validation_fraction, cfg.seed)
    with torch.no_grad():
        final = -model.log_prob(torch.as_tensor(x[val_idx.numpy()])).mean().item()
    assert final == pytest.approx(best, rel=1e-9, abs=1e-9), (
        f"final validation loss {final} is not the best epoch's {best} (history {vals})"
    )
    assert final < vals[-1]


def test_box_uniform_is_a_normalised_density_and_minus_inf_outside():
    prior = BoxUniform((-1, 0.5), (2, 3))
    # midpoint rule on a grid whose cell edges fall on the box edges, over a larger box
    step = 0.05
    gx = -2.0 + step * (np.arange(100) + 0.5)  # [-2, 3]
    gy = -0.5 + step * (np.arange(90) + 0.5)  # [-0.5, 4]
    xx, yy = np.meshgrid(gx, gy, indexing="ij")
    points = np.stack([xx.ravel(), yy.ravel()], 1)
    log_p = prior.log_prob(points)
    integral = np.exp(log_p).sum() * step**2
    assert integral == pytest.approx(1.0, rel=1e-9), f"∫ p(θ) dθ = {integral}, expected 1"
    # Monte Carlo over the same larger box: E_box[p] · area(box) = 1
    rng = np.random.default_rng(0)
    mc = rng.uniform((-2.0, -0.5), (3.0, 4.0), size=(200_000, 2))
    estimate = np.exp(prior.log_prob(mc)).mean() * (5.0 * 4.5)
    assert estimate == pytest.approx(1.0, rel=0.02), f"Monte-Carlo ∫ p(θ) dθ = {estimate}"

    outside = np.array([[-1.01, 1.0], [2.01, 1.0], [0.0, 0.49], [0.0, 3.01], [5.0, 5.0]])
    assert np.all(prior.log_prob(outside) == -np.inf)
    inside = prior.log_prob(np.array([[0.0, 1.0], [-0.99, 2.99]]))
    assert np.all(np.isfinite(inside)) and inside[0] == inside[1]


def test_learning_rate_follows_the_cosine_schedule_per_batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(230, 2))
    cfg = TrainConfig(epochs=3, batch_size=50, lr=2e-3, validation_fraction=0.25, patience=None,
                      progress=False)
    train_idx, _ = split(len(x), cfg.validation_fraction, cfg.seed)
    n_batches = math.ceil(len(train_idx) / cfg.batch_size)
    assert n_batches > 1
    total = cfg.epochs * n_batches
    model = AmbientFlow(2, num_layers=1, **TINY)
    history = train(model, x, config=cfg)
    assert len(history) == cfg.epochs
    for epoch, record in enumerate(history):
        t = (epoch + 1) * n_batches
        expected = cfg.lr / 2 * (1 + math.cos(math.pi * t / total))
        assert record["lr_nll"] == pytest.approx(expected, rel=1e-9, abs=1e-15), (
            f"epoch {epoch}: lr {record['lr_nll']}, cosine schedule gives {expected} "
            f"after {t} of {total} steps"
        )
