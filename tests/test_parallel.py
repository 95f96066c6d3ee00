"""mfinfer.parallel: local clusters that do not collide, a task rerun when its worker dies, and a
clear error for a dead scheduler."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import pytest

from mfinfer.errors import InputError
from mfinfer.parallel import TASK_RETRIES, dask_client

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


def _die_once(marker: Path, v: int) -> tuple[int, int]:
    """Kill this worker process the first time (as the OOM killer would), answer the second."""
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return v * v, os.getpid()


def test_a_task_whose_worker_dies_is_rerun(tmp_path):
    """A worker killed mid-task (out of memory, a lost node) costs that task a rerun, not the job:
    the cluster's nanny restarts the worker and the scheduler reruns the task, as the campaigns'
    ``retries=TASK_RETRIES`` submissions rely on."""
    marker = tmp_path / "died"
    with dask_client(1, quiet=True) as client:
        future = client.submit(_die_once, marker, 7, pure=False, retries=TASK_RETRIES)
        value, pid = future.result(timeout=120)
    assert value == 49
    assert marker.exists() and int(marker.read_text()) != pid  # answered by a new worker process


def test_unreachable_scheduler_is_a_clear_error():
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"--scheduler tcp://127\.0\.0\.1:1: no dask scheduler answered"), \
            dask_client(scheduler="tcp://127.0.0.1:1"):
        pass
    assert time.perf_counter() - t0 < 60
