"""Typed configuration sections: checks of YAML values against dataclass annotations.

A config section is a frozen dataclass; :func:`build` makes one from a mapping (unknown fields are
named with the nearest allowed ones, missing required fields listed), :func:`check_fields`
checks every field against its annotation and its metadata (``min``, ``gt``, ``lt`` for numbers,
``min_len`` for lists and strings; integers are never booleans, numbers are finite). Every problem
raises ``ConfigError`` naming the field path, what was expected and what was got; values enter
messages through :func:`short` (bounded, so a huge value never makes a huge message).

YAML is read safely (:func:`read_yaml`): PyYAML's safe loader only, a file of at most
``MAX_CONFIG_BYTES``, and at most ``MAX_YAML_NODES`` values once anchors and aliases are expanded
(a "billion laughs" file of nested aliases is refused before anything walks it), nested at most
``MAX_YAML_DEPTH`` deep.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import MISSING
from pathlib import Path
from types import UnionType
from typing import Any, Literal, NoReturn, Union, get_args, get_origin, get_type_hints

import yaml

from mfinfer.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_COUNT", "MAX_THREADS", "MAX_YAML_DEPTH", "MAX_YAML_NODES", "build",
           "check", "check_fields", "choice", "describe", "nearest", "read_yaml", "short", "unknown"]

#: The largest config file read (configs are a few kB; this refuses a wrong or hostile file).
MAX_CONFIG_BYTES = 1 << 20
#: The most torch threads a config may ask for: far above any machine's cores, far below the
#: number that makes the OpenMP runtime abort (a typo such as ``threads: 1000000``).
MAX_THREADS = 1024
#: The largest count of simulations, events or samples a config may ask for: above any run that
#: fits in memory, so an extra zero or three fails here and not in an allocation.
MAX_COUNT = 10**9
#: The most values (scalars, lists, mappings) a config may hold with its aliases expanded.
MAX_YAML_NODES = 100_000
#: The deepest nesting of lists and mappings in a config.
MAX_YAML_DEPTH = 32

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 80, 80, 8, 8, 3


def short(value: Any) -> str:
    """``repr(value)``, bounded: long strings, lists and mappings are cut with ``...``."""
    return _REPR.repr(value)


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


_OPS = {"min": ">=", "gt": ">", "lt": "<", "max": "<="}


def _range_text(spec: Mapping[str, Any]) -> str:
    parts = [f"{op} {spec[key]}" for key, op in _OPS.items() if key in spec]
    return f" {' and '.join(parts)}" if parts else ""


def _in_range(value: float, spec: Mapping[str, Any]) -> bool:
    return (value >= spec.get("min", -math.inf) and value > spec.get("gt", -math.inf)
            and value < spec.get("lt", math.inf) and value <= spec.get("max", math.inf))


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
    (``min``/``gt``/``lt``/``max`` for numbers, also inside lists; ``min_len`` for a list or string)."""
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
                          f"got {short(value)} ({type(value).__name__})")
    if isinstance(value, list | str) and len(value) < spec.get("min_len", 0):
        raise ConfigError(f"{where}: expected a non-empty {describe(hint)[2:]}, got {short(value)}")
    if isinstance(value, list) and args:
        inner = {k: v for k, v in spec.items() if k != "min_len"}
        for i, item in enumerate(value):
            check(item, args[0], f"{where}[{i}]", inner)
    elif hint in (int, float) and not _in_range(value, spec):
        raise ConfigError(f"{where}: expected {describe(hint)}{_range_text(spec)}, got {short(value)}")


def check_fields(obj: Any, where: str) -> None:
    """Check every field of a config dataclass against its annotation and metadata."""
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        check(getattr(obj, f.name), hints[f.name], f"{where}.{f.name}" if where else f.name,
               f.metadata)


def nearest(name: Any, allowed: Sequence[str]) -> list[str]:
    """``allowed``, the names most like ``name`` first (for "did you mean" messages)."""
    near = difflib.get_close_matches(str(name)[:100], list(allowed), n=3, cutoff=0.0)
    return near + [a for a in allowed if a not in near]


def choice(value: Any, allowed: Sequence, where: str) -> None:
    """Raise ``ConfigError`` at ``where`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        near = difflib.get_close_matches(short(value).strip("'\""), [str(a) for a in allowed], n=1,
                                         cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"{where}: must be one of {allowed}, got {short(value)}{hint}")


def unknown(key: Any, allowed: Sequence[str], where: str, what: str = "unknown field") -> NoReturn:
    """Raise ``ConfigError`` for the field ``key`` at ``where``, listing ``allowed`` nearest first."""
    raise ConfigError(f"{where}.{short(key).strip(chr(39))}: {what}; allowed: {nearest(key, allowed)} "
                      "(nearest first)")


def build(cls: type, data: Any, where: str) -> Any:
    """Instantiate a config dataclass from a mapping, naming unknown fields with the nearest allowed
    ones and missing required fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {type(data).__name__} "
                          f"{short(data)}")
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


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses documents too big once aliases are expanded."""

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # refused before the scanner, whose work grows with the square of the flow nesting
        if self.flow_level >= MAX_YAML_DEPTH:
            raise _TooBig(f"nested more than {MAX_YAML_DEPTH} levels deep")
        super().fetch_flow_collection_start(token_class)

    def compose_document(self) -> Any:
        node = super().compose_document()
        _expanded_size(node, {}, set(), 0)
        return node


class _TooBig(Exception):
    pass


def _expanded_size(node: Any, sizes: dict[int, int], open_: set[int], depth: int) -> int:
    """The number of values under ``node`` with every alias expanded (memoised per node, so a
    nested-alias bomb is counted without being expanded); raises ``_TooBig``."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise _TooBig("an alias refers to a node that contains it (a recursive structure)")
    if depth > MAX_YAML_DEPTH:
        raise _TooBig(f"nested more than {MAX_YAML_DEPTH} levels deep")
    open_.add(id(node))
    children: list[Any] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    total = 1 + sum(_expanded_size(c, sizes, open_, depth + 1) for c in children)
    open_.discard(id(node))
    if total > MAX_YAML_NODES:
        raise _TooBig(f"more than {MAX_YAML_NODES} values once its anchors and aliases (&, *) are "
                      "expanded")
    sizes[id(node)] = total
    return total


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document of ``path`` (PyYAML's safe loader, bounded: see the module docstring),
    with errors naming the file and ``what`` it should hold (e.g. ``"run configuration"``)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: config file not found; pass the path of a YAML {what}")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; pass the path of a YAML {what} file")
    with open(path, "rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; expected a YAML {what} "
                          "(a few kB); pass the config file, not a data file")
    try:
        return yaml.load(raw.decode("utf-8"), Loader=_Loader)  # a SafeLoader subclass
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file ({err.reason} at byte {err.start}); expected "
                          f"a YAML {what}") from None
    except _TooBig as err:
        raise ConfigError(f"{path}: refused: {err}; expected a YAML {what} of plain values") from None
    except RecursionError:
        raise ConfigError(f"{path}: refused: nested too deeply to read; expected a YAML {what} of "
                          "plain values") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{at}: {short(problem)[1:-1]}; fix the syntax there") from None
