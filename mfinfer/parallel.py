"""dask clients for mfinfer's parallel jobs: seeds of a run, calibration tasks, Pythia chunks.

Every parallel job runs single-threaded tasks in worker processes: a local cluster on this
machine (``workers``), or the workers of a running scheduler (``scheduler``, an address such as
``tcp://host:8786``; start one with ``dask scheduler`` and ``dask worker ADDRESS``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from mfinfer.errors import InputError

__all__ = ["CONNECT_TIMEOUT_S", "WORKER_TIMEOUT_S", "dask_client", "local_cluster"]

#: Seconds to wait for a scheduler to answer, and for its first worker.
CONNECT_TIMEOUT_S, WORKER_TIMEOUT_S = 10, 60


def local_cluster(workers: int, *, quiet: bool = False) -> Any:
    """A ``dask.distributed.LocalCluster`` of ``workers`` single-threaded worker processes on
    127.0.0.1, without a dashboard; its HTTP port is picked free, so two jobs at once do not
    warn about port 8787. ``quiet`` shows only errors of the cluster's own logging."""
    from dask.distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=":0", scheduler_kwargs={"dashboard": False},
                        silence_logs=logging.ERROR if quiet else logging.WARNING)


@contextlib.contextmanager
def dask_client(workers: int = 1, scheduler: str | None = None, *, quiet: bool = False) -> Iterator[Any]:
    """A ``dask.distributed.Client`` of the scheduler at ``scheduler`` (checked to answer and to
    have a worker), or of a new :func:`local_cluster` of ``workers`` processes, closed on exit.

    Raises:
        InputError: the scheduler does not answer, or no worker joins it.
    """
    from dask.distributed import Client

    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, ValueError) as err:
            raise InputError(f"--scheduler {scheduler}: no dask scheduler answered within "
                             f"{CONNECT_TIMEOUT_S} s ({' '.join(str(err).split())[:200]}); start one "
                             "with `dask scheduler` and pass the address it prints") from None
        with client:
            try:
                client.wait_for_workers(1, timeout=WORKER_TIMEOUT_S)
            except TimeoutError:
                raise InputError(f"--scheduler {scheduler}: no worker joined within "
                                 f"{WORKER_TIMEOUT_S} s; start some with `dask worker "
                                 f"{scheduler}`") from None
            yield client
        return
    cluster = local_cluster(workers, quiet=quiet)
    client = Client(cluster)
    try:
        yield client
    finally:  # a worker slow to exit is killed by its nanny: no news, however it logs it
        nanny = logging.getLogger("distributed.nanny")
        old = nanny.level
        nanny.setLevel(logging.ERROR)
        try:
            client.close()
            cluster.close()
        finally:
            nanny.setLevel(old)
