"""Input and output of event samples: ROOT files through uproot and awkward.

See :mod:`mfinfer.io.root`; the branch expressions of :func:`read_user_events` are checked and
evaluated by :mod:`mfinfer.io.expressions` (never by ``eval``).
"""

from __future__ import annotations

from mfinfer.io.root import (
    CorruptFileError,
    EventSelection,
    InputError,
    MissingKeyError,
    read_events,
    read_user_events,
    write_events,
)

__all__ = [
    "CorruptFileError",
    "EventSelection",
    "InputError",
    "MissingKeyError",
    "read_events",
    "read_user_events",
    "write_events",
]
