"""Seeds the docstring examples, which the test run executes (``--doctest-modules`` on ``mfinfer/``,
see ``pyproject.toml``): each example starts from the same torch and numpy state, on one thread."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_doctests() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
