"""dask clients for mfinfer's parallel jobs: seeds of a run, calibration tasks, Pythia chunks.

Every parallel job runs single-threaded tasks in worker processes: a local cluster on this
machine (``workers``), or the workers of a running scheduler (``scheduler``, an address such as
``tcp://host:8786``; start one with ``dask scheduler`` and ``dask worker ADDRESS``).

Before a client connects to a ``tcp://`` address, :func:`probe_scheduler` checks within
``PROBE_TIMEOUT_S`` that what answers there greets like a dask scheduler (its first message is
a length-prefixed frame of plausible size), so another service on that port is a clear
``InputError`` and not a client that reads its bytes as a frame length. Tasks are submitted with
``TASK_RETRIES`` retries: a task whose worker dies (killed, out of memory) is rerun on another one
(dask's ``allowed-failures``), and one that fails with an error on a worker (e.g. a worker that
could not start cleanly) is retried; mfinfer's tasks write their results atomically and
idempotently, so a rerun is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Iterator
from typing import Any

from mfinfer.errors import InputError

__all__ = ["CONNECT_TIMEOUT_S", "PROBE_TIMEOUT_S", "TASK_RETRIES", "WORKER_TIMEOUT_S", "dask_client",
           "local_cluster", "probe_scheduler"]

#: Seconds to wait for a scheduler to answer, and for its first worker.
CONNECT_TIMEOUT_S, WORKER_TIMEOUT_S = 10, 60
#: Seconds within which a scheduler must accept a connection and send its greeting.
PROBE_TIMEOUT_S = 5.0
#: How often a failed task is retried (``Client.submit(retries=...)``).
TASK_RETRIES = 3
_MAX_GREETING = 1 << 20  # a dask handshake is a few hundred bytes


def probe_scheduler(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise ``InputError`` unless a dask scheduler answers at ``address`` (``tcp://host:port`` or
    ``host:port``; other protocols are left to dask) within ``timeout`` seconds."""
    scheme, _, rest = address.rpartition("://")
    if scheme not in ("", "tcp"):
        return
    host, _, port = rest.rpartition(":")
    fix = "start one with `dask scheduler` and pass the address it prints (tcp://HOST:PORT)"
    if not host or not port.isdigit():
        raise InputError(f"--scheduler {address}: expected an address tcp://HOST:PORT; {fix}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        raise InputError(f"--scheduler {address}: nothing answered like a dask scheduler within "
                         f"{timeout:g} s; {fix}") from None
    except OSError as err:
        raise InputError(f"--scheduler {address}: no dask scheduler answered ({err.strerror or err}); "
                         f"{fix}") from None
    size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
    if not 0 < size <= _MAX_GREETING:
        raise InputError(f"--scheduler {address}: the service there is not a dask scheduler (its "
                         f"first bytes {head[:8]!r} are not a dask greeting); {fix}")


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
        probe_scheduler(scheduler)
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
