"""mfinfer.parallel: local clusters that do not collide, and a clear error for a dead scheduler."""

from __future__ import annotations

import time
import warnings

import pytest

from mfinfer.errors import InputError
from mfinfer.parallel import dask_client

pytest.importorskip("dask.distributed")


def _square(v: int) -> int:
    return v * v


def test_two_local_clusters_at_once_run_quietly():
    """Two jobs on one machine (two campaigns, a run and a campaign) each get their own cluster; the
    second must not warn that the dashboard port 8787 is taken."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with dask_client(1, quiet=True) as first, dask_client(1, quiet=True) as second:
            assert first.submit(_square, 3).result() == 9
            assert second.submit(_square, 4).result() == 16
            assert len(first.nthreads()) == len(second.nthreads()) == 1
    assert not [w for w in caught if "8787" in str(w.message)]


def test_unreachable_scheduler_is_a_clear_error():
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"--scheduler tcp://127\.0\.0\.1:1: no dask scheduler answered"), \
            dask_client(scheduler="tcp://127.0.0.1:1"):
        pass
    assert time.perf_counter() - t0 < 60
