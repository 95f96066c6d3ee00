"""Input and output of event samples: ROOT files through uproot and awkward.

See :mod:`mfinfer.io.root`.
"""

from __future__ import annotations

from mfinfer.io.root import (
    CorruptFileError,
    EventSelection,
    MissingKeyError,
    read_events,
    read_user_events,
    write_events,
)

__all__ = [
    "CorruptFileError",
    "EventSelection",
    "MissingKeyError",
    "read_events",
    "read_user_events",
    "write_events",
]
