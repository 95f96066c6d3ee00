"""Typed configuration sections: checks of YAML values against dataclass annotations.

A config section is a frozen dataclass; :func:`build` makes one from a mapping (unknown fields are
named with the nearest allowed ones, missing required fields listed), :func:`check_fields`
checks every field against its annotation and its metadata (``min``, ``gt``, ``lt`` for numbers,
``min_len`` for lists and strings; integers are never booleans, numbers are finite). Every problem
raises ``ConfigError`` naming the field path, what was expected and what was got. YAML is read with
``yaml.safe_load`` only (:func:`read_yaml`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING
from pathlib import Path
from types import UnionType
from typing import Any, Literal, NoReturn, Union, get_args, get_origin, get_type_hints

import yaml

from mfinfer.errors import ConfigError

__all__ = ["build", "check", "check_fields", "choice", "describe", "nearest", "read_yaml", "unknown"]


def describe(hint: Any, plural: bool = False) -> str:
    """A type hint in words: ``list[list[float]]`` -> "a list of lists of finite numbers"."""
    if get_origin(hint) is list:
        return ("lists" if plural else "a list") + f" of {describe(get_args(hint)[0], plural=True)}"
    words = {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
             float: ("a finite number", "finite numbers"), str: ("a string", "strings")}
    if hint in words:
        return words[hint][plural]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"{hint.__name__}s" if plural else f"a {hint.__name__}"
    return "mappings" if plural else "a mapping"


_OPS = {"min": ">=", "gt": ">", "lt": "<"}


def _range_text(spec: Mapping[str, Any]) -> str:
    parts = [f"{op} {spec[key]}" for key, op in _OPS.items() if key in spec]
    return f" {' and '.join(parts)}" if parts else ""


def _in_range(value: float, spec: Mapping[str, Any]) -> bool:
    return (value >= spec.get("min", -math.inf) and value > spec.get("gt", -math.inf)
            and value < spec.get("lt", math.inf))


def _is_a(value: Any, hint: Any) -> bool:
    origin = get_origin(hint) or hint
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return isinstance(value, origin)


def check(value: Any, hint: Any, where: str, spec: Mapping[str, Any] | None = None) -> None:
    """Raise ``ConfigError`` at ``where`` unless ``value`` has type ``hint`` within ``spec``
    (``min``/``gt``/``lt`` for numbers, also inside lists; ``min_len`` for a list or string)."""
    spec = spec or {}
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return choice(value, args, where)
    if origin in (Union, UnionType):
        if value is None and type(None) in args:
            return
        (hint,) = [a for a in args if a is not type(None)]  # only X | None is used
        return check(value, hint, where, spec)
    if not _is_a(value, hint):
        raise ConfigError(f"{where}: expected {describe(hint)}{_range_text(spec)}, "
                          f"got {value!r} ({type(value).__name__})")
    if isinstance(value, list | str) and len(value) < spec.get("min_len", 0):
        raise ConfigError(f"{where}: expected a non-empty {describe(hint)[2:]}, got {value!r}")
    if isinstance(value, list) and args:
        inner = {k: v for k, v in spec.items() if k != "min_len"}
        for i, item in enumerate(value):
            check(item, args[0], f"{where}[{i}]", inner)
    elif hint in (int, float) and not _in_range(value, spec):
        raise ConfigError(f"{where}: expected {describe(hint)}{_range_text(spec)}, got {value!r}")


def check_fields(obj: Any, where: str) -> None:
    """Check every field of a config dataclass against its annotation and metadata."""
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        check(getattr(obj, f.name), hints[f.name], f"{where}.{f.name}" if where else f.name,
               f.metadata)


def nearest(name: Any, allowed: Sequence[str]) -> list[str]:
    """``allowed``, the names most like ``name`` first (for "did you mean" messages)."""
    near = difflib.get_close_matches(str(name), list(allowed), n=3, cutoff=0.0)
    return near + [a for a in allowed if a not in near]


def choice(value: Any, allowed: Sequence, where: str) -> None:
    """Raise ``ConfigError`` at ``where`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        near = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"{where}: must be one of {allowed}, got {value!r}{hint}")


def unknown(key: Any, allowed: Sequence[str], where: str, what: str = "unknown field") -> NoReturn:
    """Raise ``ConfigError`` for the field ``key`` at ``where``, listing ``allowed`` nearest first."""
    raise ConfigError(f"{where}.{key}: {what}; allowed: {nearest(key, allowed)} (nearest first)")


def build(cls: type, data: Any, where: str) -> Any:
    """Instantiate a config dataclass from a mapping, naming unknown fields with the nearest allowed
    ones and missing required fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {type(data).__name__} "
                          f"{data!r:.80}")
    fields = dataclasses.fields(cls)
    allowed = [f.name for f in fields]
    for key in data:
        if key not in allowed:
            unknown(key, allowed, where)
    missing = [f.name for f in fields if f.name not in data
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required field(s) {missing}; add them (see the "
                          f"attributes of mfinfer.config.{cls.__name__})")
    return cls(**data)


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document of ``path`` (``yaml.safe_load``), with errors naming the file and ``what``
    it should hold (e.g. ``"run configuration"``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: config file not found; pass the path of a YAML {what}")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; pass the path of a YAML {what} file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file ({err.reason} at byte {err.start}); expected "
                          f"a YAML {what}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{at}: {problem}; fix the syntax there") from None
