"""Input and output of event samples: ROOT files through uproot and awkward.

See :mod:`mfinfer.io.root` (mfinfer's own files) and :mod:`mfinfer.io.user_files` (a user's files:
trees, branch expressions, per-event collections); the branch expressions are checked and
evaluated by :mod:`mfinfer.io.expressions` (never by ``eval``); the reader settings of lepton files
(the config's ``events:`` section, presets ``nanoaod`` and ``cms-tutorial``) are
:mod:`mfinfer.io.events`. Training samples in a user's files (the config's ``simulations:``
section) are :mod:`mfinfer.io.simulations` (the section, its file checks, the writer) and
:mod:`mfinfer.io.sample_store` (chunked reading into a content-keyed cache of memory-mapped arrays).
"""

from __future__ import annotations

from mfinfer.io.events import PRESETS, EventsConfig, read_lepton_events
from mfinfer.io.root import CorruptFileError, InputError, MissingKeyError, read_events, write_events
from mfinfer.io.user_files import EventSelection, SelectedEvents, read_selection, read_user_events

__all__ = [
    "PRESETS",
    "CorruptFileError",
    "EventSelection",
    "EventsConfig",
    "InputError",
    "MissingKeyError",
    "SelectedEvents",
    "read_events",
    "read_lepton_events",
    "read_selection",
    "read_user_events",
    "write_events",
]
