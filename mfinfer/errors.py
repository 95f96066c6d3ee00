"""The exceptions mfinfer raises on purpose; every one derives from ``MfinferError``.

Each also derives from the built-in exception a Python user would expect (``ValueError`` for bad
values, ``OSError`` for unreadable files, ``KeyError`` for missing keys), so ``except ValueError``
keeps working. Messages name the argument, field or file, what was expected, what was got, and the fix.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CorruptFileError",
    "InputError",
    "MfinferError",
    "MissingKeyError",
    "NonFiniteLossError",
    "SingularJacobianError",
]


class MfinferError(Exception):
    """Base of every error mfinfer raises deliberately (the CLI prints these without a traceback)."""


class InputError(MfinferError, ValueError):
    """An argument has the wrong shape, dtype or value (NaN, empty, outside the prior...)."""


class ConfigError(MfinferError, ValueError):
    """A config field is missing, unknown, of the wrong type or outside the allowed values."""


class CorruptFileError(MfinferError, OSError):
    """A file exists but cannot be read as what it should be (truncated, corrupt, wrong format)."""


class MissingKeyError(MfinferError, KeyError):
    """A tree, branch or object is not in a file; the message lists what is, nearest first."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class SingularJacobianError(MfinferError, ValueError):
    """JᵀJ is singular: the decoder is not injective at these points."""


class NonFiniteLossError(MfinferError, FloatingPointError):
    """The training loss became NaN or inf; training stops instead of continuing silently."""
