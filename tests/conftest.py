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
