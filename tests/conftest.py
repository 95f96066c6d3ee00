"""Shared fixtures: seeded RNGs, float64 where a test asks, and a guard on torch globals."""

import numpy as np
import pytest
import torch

# Small models run fastest on one thread, and one thread does not collapse when the 2 cores are shared.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_guard():
    torch.manual_seed(0)
    np.random.seed(0)
    dtype = torch.get_default_dtype()
    yield
    assert torch.get_default_dtype() == dtype, "a test changed torch's default dtype"


@pytest.fixture
def float64():
    """Run the test with torch's default dtype set to float64."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


#: The analytic test problem of the samplers: x_i ~ N(0.7, SIGMA²), i = 1..N_OBS, flat prior on
#: [-10, 10], so the posterior of the mean is N(mean(x), SIGMA² / N_OBS) (its tails far inside the box).
SIGMA = 1.5
N_OBS = 20


@pytest.fixture(scope="session")
def gauss1d():
    """(log_like, prior, x) of the analytic 1-d problem above."""
    from mfinfer import BoxUniform

    x = np.random.default_rng(42).normal(0.7, SIGMA, size=N_OBS)

    def log_like(theta: np.ndarray) -> np.ndarray:
        return -0.5 * np.sum((x[None, :] - theta[:, :1]) ** 2, axis=1) / SIGMA**2

    return log_like, BoxUniform((-10.0,), (10.0,)), x
